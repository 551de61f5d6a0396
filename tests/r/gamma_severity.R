# Gamma severity credibility in R, independently of bayescred: the exact marginal log-likelihood
# (docs/formulas.md §12) written from the cells, maximised by nlminb over (log nu, log mu, log phi)
# (phi = 1/(alpha - 2)), polished by optim(BFGS); plus actuar::cm(~risk) with the claim counts as
# weights for the classical premiums. Input CSV: design, risk, period, n (claims), x (average
# claim). Output CSV: design, what, i, value. Used by tests/test_gamma_severity.py.
suppressPackageStartupMessages(library(actuar))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
rows <- list()
emit <- function(design, what, value)
    rows[[length(rows) + 1L]] <<- data.frame(design = design, what = what,
                                             i = seq_along(value), value = as.vector(value))
loglik <- function(nu, alpha, beta, g) {
    per_cell <- g$n * nu * log(g$n * g$x) - log(g$x) - lgamma(g$n * nu)
    N <- tapply(g$n, g$risk, sum); S <- tapply(g$n * g$x, g$risk, sum)
    sum(per_cell) + sum(alpha * log(beta) - lgamma(alpha) + lgamma(alpha + nu * N) - (alpha + nu * N) * log(beta + S))
}
natural <- function(th) {
    nu <- exp(th[1]); mu <- exp(th[2]); alpha <- 2 + exp(-th[3])
    c(nu = nu, alpha = alpha, beta = mu * (alpha - 1) / nu)
}
for (g in split(d, d$design)) {
    des <- g$design[1]
    g <- g[order(g$risk, g$period), ]
    f <- function(th) { p <- natural(th); -loglik(p[["nu"]], p[["alpha"]], p[["beta"]], g) }
    mu0 <- sum(g$n * g$x) / sum(g$n)
    fit <- nlminb(c(0, log(mu0), 0), f, control = list(rel.tol = 1e-15, eval.max = 5000, iter.max = 2000))
    fit2 <- optim(fit$par, f, method = "BFGS", control = list(reltol = 1e-15, maxit = 10000))
    th <- if (fit2$value < fit$objective) fit2$par else fit$par
    p <- natural(th)
    emit(des, "loglik", -f(th))
    emit(des, "nu", p[["nu"]]); emit(des, "alpha", p[["alpha"]]); emit(des, "collective", exp(th[2]))
    N <- tapply(g$n, g$risk, sum); S <- tapply(g$n * g$x, g$risk, sum)
    emit(des, "premium", p[["nu"]] * (p[["beta"]] + S) / (p[["alpha"]] + p[["nu"]] * N - 1))
    # the log-likelihood at a fixed point: nu = 0.5, alpha = 7, beta = 3 mu0
    emit(des, "loglik_fixed", loglik(0.5, 7, 3 * mu0, g))
    # classical: Bühlmann–Straub on the average claims with claim-count weights
    T <- max(g$period); risks <- sort(unique(g$risk))
    X <- W <- matrix(NA_real_, length(risks), T)
    X[cbind(match(g$risk, risks), g$period)] <- g$x
    W[cbind(match(g$risk, risks), g$period)] <- g$n
    wide <- data.frame(risk = risks, x = X, w = W)
    cmfit <- eval(parse(text = sprintf("cm(~risk, wide, ratios = x.1:x.%d, weights = w.1:w.%d)", T, T)))
    emit(des, "bs_premium", predict(cmfit))
    emit(des, "bs_between", cmfit$unbiased[1]); emit(des, "bs_within", cmfit$unbiased[2])
}
write.csv(do.call(rbind, rows), args[2], row.names = FALSE)
