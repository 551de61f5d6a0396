"""The marginal likelihoods of the credibility models, each written once for numpy and
pytensor (docs/formulas.md §2-§8, §12): ``gaussian`` (nested, regression and crossed
credibility: the Bayes potential, lme4's REML/ML criteria, the exact conditional distribution
of the risk effects), ``negbin`` (Poisson–gamma) and ``gamma`` (Gamma severity). Import
the module you need: none is loaded with the package."""
