"""Marginal likelihoods of the credibility models, each written once for numpy and pytensor."""
