# Fit actuar::cm() to every design of a long-format CSV (columns design, kind, sector,
# unit, risk, period, y, w) and write one CSV of results: design, what, i, value.
# kind: bs_unbiased, bs_iterative (one level), hier, hier_ohlsson and hier_iterative
# (cm(~sector + sector:risk)), hier3 (cm(~sector + sector:unit + sector:unit:risk)),
# hache (regression on time = 1..T, hache.origin), hache_quad (regformula ~ time + I(time^2)). Risk (and unit) ids must be unique and
# increasing in sector-major order, so that actuar's node order is the sorted order.
# Used by tests/test_actuar_crosscheck.py.
suppressPackageStartupMessages(library(actuar))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
rows <- list()
emit <- function(design, what, value)
    rows[[length(rows) + 1L]] <<- data.frame(design = design, what = what,
                                             i = seq_along(value), value = as.vector(value))
wide <- function(g, keys) {
    T <- max(g$period)
    units <- unique(g[order(g$risk), keys, drop = FALSE])
    idx <- match(g$risk, units$risk)
    Y <- W <- matrix(NA_real_, nrow(units), T)
    Y[cbind(idx, g$period)] <- g$y
    W[cbind(idx, g$period)] <- g$w
    data.frame(units, y = Y, w = W)
}
for (g in split(d, d$design)) {
    des <- g$design[1]; kind <- g$kind[1]; T <- max(g$period)
    keys <- switch(kind, hier = , hier_ohlsson = , hier_iterative = c("sector", "risk"), hier3 = c("sector", "unit", "risk"), "risk")
    df <- wide(g, keys)
    rng <- sprintf("ratios = y.1:y.%d, weights = w.1:w.%d", T, T)
    call <- switch(kind,
        bs_unbiased  = sprintf("cm(~risk, df, %s, tol = 1e-13, maxit = 100000)", rng),
        bs_iterative = sprintf("cm(~risk, df, %s, method = 'iterative', tol = 1e-13, maxit = 100000)", rng),
        hier         = sprintf("cm(~sector + sector:risk, df, %s)", rng),
        hier_ohlsson = sprintf("cm(~sector + sector:risk, df, %s, method = 'Ohlsson')", rng),
        hier_iterative = sprintf("cm(~sector + sector:risk, df, %s, method = 'iterative', tol = 1e-13, maxit = 100000)", rng),
        hier3        = sprintf("cm(~sector + sector:unit + sector:unit:risk, df, %s)", rng),
        hache        = sprintf("cm(~risk, df, %s, regformula = ~time, regdata = data.frame(time = 1:%d), tol = 1e-13, maxit = 100000)", rng, T),
        hache_quad   = sprintf("cm(~risk, df, %s, regformula = ~time + I(time^2), regdata = data.frame(time = 1:%d), tol = 1e-13, maxit = 100000)", rng, T))
    fit <- suppressWarnings(eval(parse(text = call)))
    if (startsWith(kind, "hache")) {
        emit(des, "between", fit$iterative[[1]])
        emit(des, "within", fit$iterative[[2]])
        emit(des, "collective", fit$means[[1]])
        emit(des, "coefficients", sapply(fit$adj.models, coef))
        emit(des, "premium", predict(fit, newdata = data.frame(time = T + 1)))
    } else if (startsWith(kind, "hier")) {
        L <- length(keys)
        est <- if (kind == "hier_iterative") fit$iterative else fit$unbiased
        emit(des, "between", est[1:L])
        emit(des, "within", est[L + 1])
        emit(des, "collective", fit$means[[1]])
        p <- predict(fit)
        for (l in seq_len(L - 1)) emit(des, paste0("premium_", keys[l]), p[[l]])
        emit(des, "premium", p[[L]])
    } else {
        est <- if (kind == "bs_unbiased") fit$unbiased else fit$iterative
        emit(des, "between", est[1])
        emit(des, "within", est[2])
        emit(des, "collective", fit$means[[1]])
        emit(des, "Z", fit$cred)
        emit(des, "premium", predict(fit))
    }
}
write.csv(do.call(rbind, rows), args[2], row.names = FALSE)
