"""Identity tests: with the variance components fixed, every classical credibility premium
equals the BLUP of the corresponding linear mixed model, computed here in closed form on
the dense observation-level matrices (FORMULAS §8.2; seed 000_5e44464b038263f5.txt line 45,
card X20): V = Z G Z′ + R, β̂ = (X′V⁻¹X)⁻¹X′V⁻¹y, û = G Z′V⁻¹(y − Xβ̂). Agreement 1e-10.
"""

import numpy as np
import pandas as pd
import pytest
import scipy.linalg

import bayescred as bc

REL = 1e-10


def gls_blup(y, X, Zd, G, R, beta=None):
    """Dense GLS + BLUP; with ``beta`` given (known collective) only û."""
    V = Zd @ G @ Zd.T + R
    Vi = np.linalg.inv(V)
    if beta is None:
        beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    u = G @ Zd.T @ Vi @ (y - X @ beta)
    return beta, u


def indicator(codes):
    """Observation × level incidence matrix, levels in sorted order (rows of ``codes`` may
    be tuples of labels, joined with '|')."""
    codes = np.asarray(codes)
    keys = ["|".join(map(str, r)) for r in codes] if codes.ndim == 2 else list(codes)
    labels, inv = np.unique(np.asarray(keys), return_inverse=True)
    out = np.zeros((len(inv), len(labels)))
    out[np.arange(len(inv)), inv.ravel()] = 1.0
    return out


def one_level(seed):
    rng = np.random.default_rng(seed)
    rows = []
    for j in range(7):
        u = rng.normal(0, 2)
        for t in range(rng.integers(1, 7)):
            w = rng.uniform(0.2, 5)
            rows.append((j, t, 5 + u + rng.normal(0, 1 / np.sqrt(w)), w))
    return pd.DataFrame(rows, columns=["risk", "period", "y", "w"])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_buhlmann_straub_premium_is_blup(seed):
    data = one_level(seed)
    tau2, sigma2 = 3.7, 1.9
    fit = bc.credibility.buhlmann_straub(data, group="risk", response="y", weight="w", between=tau2, within=sigma2)
    y, Zd = data["y"].to_numpy(), indicator(data["risk"].to_numpy())
    X = np.ones((len(y), 1))
    beta, u = gls_blup(y, X, Zd, tau2 * np.eye(Zd.shape[1]), sigma2 * np.diag(1 / data["w"].to_numpy()))
    np.testing.assert_allclose(fit.table["premium"], beta[0] + u, rtol=REL)
    assert fit.structure["collective"] == pytest.approx(beta[0], rel=REL)
    # known collective m (inhomogeneous credibility) = BLUP with β fixed at m
    known = bc.credibility.buhlmann_straub(data, group="risk", response="y", weight="w", between=tau2,
                                           within=sigma2, collective=4.0)
    _, u = gls_blup(y, X, Zd, tau2 * np.eye(Zd.shape[1]), sigma2 * np.diag(1 / data["w"].to_numpy()), beta=[4.0])
    np.testing.assert_allclose(known.table["premium"], 4.0 + u, rtol=REL)


def nested(seed, depth):
    rng = np.random.default_rng(seed)
    rows = []
    for a in range(3):
        for b in range(rng.integers(2, 4)):
            for c in range(rng.integers(2, 4) if depth == 3 else 1):
                for t in range(rng.integers(1, 5)):
                    w = rng.uniform(0.5, 3)
                    rows.append((f"A{a}", b, c, t, 10 + rng.normal(0, 3) + rng.normal(0, 1 / np.sqrt(w)), w))
    return pd.DataFrame(rows, columns=["a", "b", "c", "t", "y", "w"])


@pytest.mark.parametrize("depth", [2, 3])
def test_hierarchical_premium_is_blup(depth):
    data = nested(10 + depth, depth)
    levels = ["a", "b", "c"][:depth]
    var = {"a": 2.5, "b": 1.2, "c": 0.7}
    sigma2 = 1.6
    fit = bc.credibility.hierarchical(data, levels=levels, response="y", weight="w",
                                      between={k: var[k] for k in levels}, within=sigma2)
    y = data["y"].to_numpy()
    blocks = [indicator(data[levels[: i + 1]].astype(str).to_numpy()) for i in range(depth)]
    Zd = np.hstack(blocks)
    G = np.diag(np.concatenate([np.full(b.shape[1], var[levels[i]]) for i, b in enumerate(blocks)]))
    beta, u = gls_blup(y, np.ones((len(y), 1)), Zd, G, sigma2 * np.diag(1 / data["w"].to_numpy()))
    assert fit.structure["collective"] == pytest.approx(beta[0], rel=REL)
    # premium of each node at level i = β̂ + the node's and its ancestors' effects; each
    # observation row carries its own node's premium, so compare row by row
    offsets = np.cumsum([0] + [b.shape[1] for b in blocks])
    for i, level in enumerate(levels):
        row_premium = beta[0] + sum(blocks[k] @ u[offsets[k]:offsets[k + 1]] for k in range(i + 1))
        table = fit.levels[level]
        keys = [tuple(r) for r in data[levels[: i + 1]].to_numpy()] if i else list(data[levels[0]])
        np.testing.assert_allclose(table["premium"].loc[keys].to_numpy(), row_premium, rtol=REL)


@pytest.mark.parametrize("centering", ["origin", "global", "group"])
def test_hachemeister_coefficients_are_blup(centering):
    rng = np.random.default_rng(42)
    rows = []
    for j in range(6):
        b = [100 + rng.normal(0, 10), 3 + rng.normal(0, 1)]
        for t in np.sort(rng.choice(np.arange(1, 11), rng.integers(4, 11), replace=False)):
            w = rng.uniform(1, 10)
            rows.append((j, float(t), b[0] + b[1] * t + rng.normal(0, 8 / np.sqrt(w)), w))
    data = pd.DataFrame(rows, columns=["risk", "time", "y", "w"])
    U = np.array([[90.0, -4.0], [-4.0, 1.3]])
    sigma2 = 55.0
    fit = bc.credibility.hachemeister(data, group="risk", time="time", response="y", weight="w",
                                      centering=centering, between=U, within=sigma2, structure="correlated")
    t0 = fit.centre.loc[data["risk"]].to_numpy()
    Q = np.column_stack([np.ones(len(data)), data["time"].to_numpy() - t0])
    ind = indicator(data["risk"].to_numpy())
    Zd = np.hstack([ind * Q[:, [0]], ind * Q[:, [1]]])  # columns: intercepts of all risks, then slopes
    J = ind.shape[1]
    G = np.kron(U, np.eye(J))
    beta, u = gls_blup(data["y"].to_numpy(), Q, Zd, G, sigma2 * np.diag(1 / data["w"].to_numpy()))
    np.testing.assert_allclose(fit.structure["collective"], beta, rtol=REL)
    np.testing.assert_allclose(fit.table["cred_intercept"], beta[0] + u[:J], rtol=REL)
    np.testing.assert_allclose(fit.table["cred_slope"], beta[1] + u[J:], rtol=REL)
    # credibility matrix A_j = G Z_j′ V_j⁻¹ Z_j (FORMULAS §8.2)
    for j in range(J):
        rows_j = data["risk"].to_numpy() == j
        Qj, wj = Q[rows_j], data["w"].to_numpy()[rows_j]
        Vj = Qj @ U @ Qj.T + sigma2 * np.diag(1 / wj)
        np.testing.assert_allclose(fit.A[j], U @ Qj.T @ np.linalg.solve(Vj, Qj), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("interaction", [True, False])
def test_crossed_premium_is_blup_from_raw_rows(interaction):
    rng = np.random.default_rng(5)
    I, J = 3, 4
    a, b, c = rng.normal(0, 3, I), rng.normal(0, 2, J), rng.normal(0, 1, (I, J))
    rows = []
    for i in range(I):
        for j in range(J):
            for _ in range(rng.integers(1, 8)):
                w = rng.uniform(0.5, 2)
                rows.append((f"s{i}", f"e{j}", 50 + a[i] + b[j] + c[i, j] + rng.normal(0, 2 / np.sqrt(w)), w))
    data = pd.DataFrame(rows, columns=["f", "g", "y", "w"])
    comps = {"f": 6.0, "g": 3.5, "f:g": 0.8 if interaction else 0.0}
    sigma2 = 3.3
    fit = bc.credibility.crossed(data, factors=["f", "g"], response="y", weight="w", between=comps, within=sigma2,
                                 interaction=interaction)
    A, B = indicator(data["f"].to_numpy()), indicator(data["g"].to_numpy())
    C = indicator(data[["f", "g"]].to_numpy())
    Zd = np.hstack([A, B, C])  # without interaction its variance is 0, so C drops out of V
    G = scipy.linalg.block_diag(comps["f"] * np.eye(I), comps["g"] * np.eye(J), comps["f:g"] * np.eye(I * J))
    y = data["y"].to_numpy()
    beta, u = gls_blup(y, np.ones((len(y), 1)), Zd, G, sigma2 * np.diag(1 / data["w"].to_numpy()))
    assert fit.structure["collective"] == pytest.approx(beta[0], rel=REL)
    cell = beta[0] + u[:I][:, None] + u[I:I + J][None, :] + u[I + J:].reshape(I, J)
    np.testing.assert_allclose(fit.table["premium"].to_numpy().reshape(I, J), cell, rtol=REL)
    # the interaction effect is Z_c (ȳ_c − m̂ − â_i − b̂_j), Z_c = w_c σ_ab² / (w_c σ_ab² + σ²)
    Zc = fit.table["Z"].to_numpy().reshape(I, J)
    ybar = fit.table["mean"].to_numpy().reshape(I, J)
    np.testing.assert_allclose(u[I + J:].reshape(I, J), Zc * (ybar - beta[0] - u[:I][:, None] - u[I:I + J][None, :]),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fit.effects["f"], u[:I], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fit.effects["g"], u[I:I + J], rtol=1e-9, atol=1e-12)
    # cell summaries (means, weights, pooled within SS) give the same premiums
    cells = data.assign(wy=data["w"] * data["y"]).groupby(["f", "g"]).agg(w=("w", "sum"), wy=("wy", "sum"))
    cells["y"] = cells["wy"] / cells["w"]
    summary = bc.credibility.crossed(cells.reset_index(), factors=["f", "g"], response="y", weight="w",
                                     within_ss=1.0, within_df=1.0, between=comps, within=sigma2,
                                     interaction=interaction)
    np.testing.assert_allclose(summary.table["premium"], fit.table["premium"], rtol=REL)
