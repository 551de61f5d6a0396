# REML fits of the crossed model y ~ 1 + (1|f) + (1|g) + (1|f:g) (weights w) with lme4, one
# per design of a long CSV (design, f, g, y, w). Writes design, what, i, value where what is
# a variance component (f, g, f:g, residual), "collective" or "premium" (cells in sorted
# f-major order). Used by tests/test_actuar_crosscheck.py.
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$f <- factor(d$f); d$g <- factor(d$g)
rows <- list()
emit <- function(design, what, value)
    rows[[length(rows) + 1L]] <<- data.frame(design = design, what = what,
                                             i = seq_along(value), value = as.vector(value))
for (x in lapply(split(d, d$design), droplevels)) {
    fit <- lmer(y ~ 1 + (1 | f) + (1 | g) + (1 | f:g), data = x, weights = w, REML = TRUE,
                control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5)))
    vc <- as.data.frame(VarCorr(fit))
    for (k in seq_len(nrow(vc))) emit(x$design[1], vc$grp[k], vc$vcov[k])
    emit(x$design[1], "collective", fixef(fit))
    cells <- expand.grid(g = levels(x$g), f = levels(x$f))[, c("f", "g")]
    emit(x$design[1], "premium", predict(fit, newdata = cells))
}
write.csv(do.call(rbind, rows), args[2], row.names = FALSE)
