"""Simulators reproduce their truth on large samples (issue 2).

Each test draws one large portfolio, computes the classical moment estimators by hand (the
formulas of FORMULAS.md, written out here independently of bayescred.credibility) and asserts
they lie within 4 standard errors of the truth; the standard errors are the usual large-sample
ones (chi-square for mean squares; delta method / sandwich otherwise). Budget: < 10 s.
"""

import numpy as np
import pandas as pd
import pytest

from bayescred.datasets import simulate

K = 4.0  # standard errors allowed


def within(est, truth, se):
    assert abs(est - truth) < K * se, f"{est} vs {truth} (SE {se})"


def test_seed_is_required_and_reproducible():
    with pytest.raises(TypeError):
        simulate.buhlmann_straub()  # seed is keyword-only and required
    with pytest.raises(ValueError, match="explicit seed"):
        simulate.buhlmann_straub(seed=None)
    a = simulate.buhlmann_straub(seed=7)
    b = simulate.buhlmann_straub(seed=np.random.default_rng(7))
    pd.testing.assert_frame_equal(a.data, b.data)
    assert not simulate.buhlmann_straub(seed=8).data.equals(a.data)
    for make in (simulate.hierarchical, simulate.hachemeister, simulate.poisson_gamma, simulate.crossed):
        pd.testing.assert_frame_equal(make(seed=3).data, make(seed=3).data)


def test_buhlmann_straub_recovers_truth():
    J, T, m, tau2, sigma2 = 3000, 5, 80.0, 64.0, 100.0
    sim = simulate.buhlmann_straub(J, T, collective=m, between=tau2, within=sigma2, seed=1)
    d = sim.data
    assert list(d.columns) == ["risk", "period", "weight", "loss"] and len(d) == J * T
    assert d.weight.between(0.5, 1.5).all()
    assert sim.truth == {"collective": m, "between": tau2, "within": sigma2, "k": sigma2 / tau2}
    w = d.groupby("risk").weight.sum().to_numpy()
    xj = (d.weight * d.loss).groupby(d.risk).sum().to_numpy() / w
    # sigma^2: Σ w (X - X_j)^2 / Σ (T_j - 1) (seed 004 eq. 3.22); exactly σ² χ²_df / df
    dev = d.loss - d.risk.map(pd.Series(xj, index=np.arange(1, J + 1)))
    s2 = (d.weight * dev**2).sum() / (J * (T - 1))
    within(s2, sigma2, sigma2 * np.sqrt(2 / (J * (T - 1))))
    # Var ε = σ²/w, not σ² (errata E23): E[w_t (X_t - X_j)²] = σ² (1 - w_t/w_j), checked
    # separately on the light and the heavy rows
    share = 1 - d.weight / d.risk.map(pd.Series(w, index=np.arange(1, J + 1)))
    for part in (d.weight < 1, d.weight >= 1):
        est = (d.weight * dev**2)[part].sum() / share[part].sum()
        within(est, sigma2, sigma2 * np.sqrt(2 * (share[part] ** 2).sum()) / share[part].sum())
    # m: X_∘∘, Var = Σ w_j² (τ² + σ²/w_j) / w_••²
    x = (w * xj).sum() / w.sum()
    within(x, m, np.sqrt((w**2 * (tau2 + sigma2 / w)).sum()) / w.sum())
    # tau^2: unbiased (seed 004 eq. 3.23); SE from Var((X_j - m)^2) = 2 (τ² + σ²/w_j)^2
    t2 = ((w * (xj - x) ** 2).sum() - (J - 1) * s2) / (w.sum() - (w**2).sum() / w.sum())
    within(t2, tau2, np.sqrt(2 * ((tau2 + sigma2 / w) ** 2).sum()) / J)
    # the realised risk means are the truth behind the data
    assert sim.effects.index.name == "risk" and len(sim.effects) == J
    within(sim.effects["mean"].var(), tau2, tau2 * np.sqrt(2 / (J - 1)))
    # unbalanced periods and the balanced (unweighted) Bühlmann case
    unb = simulate.buhlmann_straub(3, [1, 2, 4], weights=None, seed=2).data
    assert unb.groupby("risk").size().tolist() == [1, 2, 4] and (unb.weight == 1).all()
    assert unb.period.tolist() == [1, 1, 2, 1, 2, 3, 4]


def test_hierarchical_recovers_truth():
    S, J, T = 300, 8, 4
    omega2, tau2, sigma2, m = 100.0, 50.0, 400.0, 100.0
    sim = simulate.hierarchical((S, J), T, collective=m, between=(omega2, tau2), within=sigma2, seed=11)
    d = sim.data
    assert list(d.columns) == ["sector", "risk", "period", "weight", "loss"] and len(d) == S * J * T
    assert d.groupby("risk").sector.nunique().max() == 1 and d.risk.nunique() == S * J
    assert sim.truth["between"] == {"sector": omega2, "risk": tau2}
    # FORMULAS.md §3 unbiased estimators, computed here from the raw rows
    r = d.assign(wx=d.weight * d.loss).groupby(["sector", "risk"])[["weight", "wx"]].sum()
    r["x"] = r.wx / r.weight
    dev = d.loss.to_numpy() - r.x.loc[list(zip(d.sector, d.risk))].to_numpy()
    s2 = (d.weight * dev**2).sum() / (S * J * (T - 1))
    within(s2, sigma2, sigma2 * np.sqrt(2 / (S * J * (T - 1))))
    share = 1 - d.weight.to_numpy() / r.weight.loc[list(zip(d.sector, d.risk))].to_numpy()
    for part in (d.weight < 1, d.weight >= 1):  # Var ε = σ²/w on light and heavy rows alike
        est = (d.weight * dev**2)[part].sum() / share[part].sum()
        within(est, sigma2, sigma2 * np.sqrt(2 * (share[part] ** 2).sum()) / share[part].sum())
    ws = r.weight.groupby("sector").sum()
    xbar = (r.weight * r.x).groupby("sector").sum() / ws
    between_risk = (r.weight * (r.x - xbar.reindex(r.index.get_level_values(0)).to_numpy()) ** 2).sum()
    denom = (ws - (r.weight**2).groupby("sector").sum() / ws).sum()
    t2 = (between_risk - s2 * S * (J - 1)) / denom
    wbar = r.weight.mean()
    within(t2, tau2, np.sqrt(2 / (S * (J - 1))) * (tau2 + sigma2 / wbar))
    z = r.weight / (r.weight + s2 / t2)
    q = z.groupby("sector").sum()
    b = (z * r.x).groupby("sector").sum() / q
    bbar = (q * b).sum() / q.sum()
    o2 = ((q * (b - bbar) ** 2).sum() - (S - 1) * t2) / (q.sum() - (q**2).sum() / q.sum())
    within(o2, omega2, np.sqrt(2 / (S - 1)) * (omega2 + tau2 / q.mean()))
    within((q * b).sum() / q.sum(), m, np.sqrt((omega2 + tau2 / q.mean()) / S))
    # effects: inner units indexed by risk with their sector; level means per level
    assert list(sim.effects.columns) == ["sector", "mean"] and len(sim.truth["level_means"]["sector"]) == S
    within(sim.truth["level_means"]["sector"].var(), omega2, omega2 * np.sqrt(2 / (S - 1)))


def test_hierarchical_three_levels():
    sim = simulate.hierarchical((2, 3, 4), 2, between=(1, 1, 1), levels=("region", "sector", "risk"), seed=5)
    d = sim.data
    assert list(d.columns[:3]) == ["region", "sector", "risk"]
    assert d.sector.nunique() == 6 and d.risk.nunique() == 24 and len(d) == 48
    assert d.groupby("sector").region.nunique().max() == 1 and d.groupby("risk").sector.nunique().max() == 1


def test_hachemeister_recovers_truth():
    J, T = 4000, 12
    beta = np.array([1500.0, 30.0])
    U = np.array([[20000.0, -1500.0], [-1500.0, 600.0]])
    sigma2 = 5.0e7
    sim = simulate.hachemeister(J, T, collective=beta, between=U, within=sigma2, seed=21)
    d = sim.data
    assert list(d.columns) == ["risk", "period", "weight", "loss"] and len(d) == J * T
    # per-risk WLS B_j and σ̂_j² (seed 004 eqs 3.28-3.29), in closed form for Q = [1, t]
    t, y, w = (d[c].to_numpy(float).reshape(J, T) for c in ("period", "loss", "weight"))
    M = np.empty((J, 2, 2))
    M[:, 0, 0], M[:, 0, 1], M[:, 1, 1] = w.sum(1), (w * t).sum(1), (w * t * t).sum(1)
    M[:, 1, 0] = M[:, 0, 1]
    B = np.linalg.solve(M, np.stack([(w * y).sum(1), (w * t * y).sum(1)], axis=1)[..., None])[..., 0]
    resid = y - B[:, [0]] - B[:, [1]] * t
    s2 = ((w * resid**2).sum(1) / (T - 2)).mean()
    within(s2, sigma2, sigma2 * np.sqrt(2 / (T - 2) / J))
    # moment estimator of U (Halliwell, seed 003 Appendix D; FORMULAS.md §4):
    # E[sample cov of B_j] = U + mean_j σ² M_j⁻¹
    C = s2 * np.linalg.inv(M).mean(0)
    V = np.cov(B.T)
    U_hat = V - C
    for a in range(2):
        within(B[:, a].mean(), beta[a], np.sqrt(V[a, a] / J))
        for b in range(2):
            within(U_hat[a, b], U[a, b], np.sqrt((V[a, a] * V[b, b] + V[a, b] ** 2) / J))
    # the realised coefficients
    assert list(sim.effects.columns) == ["intercept", "slope"]
    np.testing.assert_allclose(np.cov(sim.effects.to_numpy().T), U, rtol=0.15)


def test_poisson_gamma_recovers_truth():
    J, T, m, lam = 5000, 5, 0.1, 0.4
    sim = simulate.poisson_gamma(J, T, collective=m, between=lam, exposure=(1.0, 50.0),
                                 factors={"zone": [0.0, 0.5]}, seed=31)
    d = sim.data
    assert list(d.columns) == ["risk", "period", "zone", "exposure", "claims"] and len(d) == J * T
    assert sim.truth["k"] == pytest.approx(1 / (lam * m))
    e = d.groupby("risk").exposure.sum().to_numpy()
    y = d.groupby("risk").claims.sum().to_numpy().astype(float)
    zone = d.groupby("risk").zone.first().to_numpy()
    mu = m * e * np.exp(np.where(zone == 2, 0.5, 0.0))  # E[claims_i | zone] (E u = 1)
    # overall level: Σy/Σμ = 1, Var Σy = Σμ + λ Σμ²
    within(y.sum() / mu.sum(), 1.0, np.sqrt(mu.sum() + lam * (mu**2).sum()) / mu.sum())
    # zone relativity exp(0.5), delta method on the two zone totals
    tot = {z: (y[zone == z].sum(), mu[zone == z]) for z in (1, 2)}
    ratio = (tot[2][0] / e[zone == 2].sum()) / (tot[1][0] / e[zone == 1].sum())
    se_log = np.sqrt(sum((mz.sum() + lam * (mz**2).sum()) / mz.sum() ** 2 for _, mz in tot.values()))
    within(np.log(ratio), 0.5, se_log)
    # λ: E[(y - μ)² - y] = λ μ² (moment estimator), sandwich SE
    a = (y - mu) ** 2 - y
    lam_hat = a.sum() / (mu**2).sum()
    within(lam_hat, lam, np.sqrt(((a - lam_hat * mu**2) ** 2).sum()) / (mu**2).sum())
    # given the frailty, counts are Poisson: dispersion Σ(y - μu)²/Σμu = 1
    mu_t = (d.exposure * m * np.exp(np.where(d.zone == 2, 0.5, 0.0)) * d.risk.map(sim.effects.u)).to_numpy()
    r = (d.claims.to_numpy() - mu_t) ** 2
    within(r.sum() / mu_t.sum(), 1.0, np.sqrt(((r - mu_t) ** 2).sum()) / mu_t.sum())
    within(sim.effects.u.mean(), 1.0, np.sqrt(lam / J))
    np.testing.assert_allclose(sim.effects.frequency, m * sim.effects.relativity * sim.effects.u)


def test_crossed_recovers_truth():
    a, b, n = 300, 300, 2
    s1, s2_, s12, sigma2, m = 1000.0, 2500.0, 400.0, 2000.0, 250.0
    sim = simulate.crossed((a, b), n, collective=m, between=(s1, s2_), interaction=s12, within=sigma2, seed=41)
    d = sim.data
    assert list(d.columns) == ["status", "experience", "payment"] and len(d) == a * b * n
    assert sim.truth["between"] == {"status": s1, "experience": s2_, "status:experience": s12}
    # balanced two-way random ANOVA with interaction; E[MS] = σ² + nσ₁₂² + bnσ₁² etc.
    y = d.payment.to_numpy().reshape(a, b, n)
    yij, yi, yj, yy = y.mean(2), y.mean((1, 2)), y.mean((0, 2)), y.mean()
    ms_a = b * n * ((yi - yy) ** 2).sum() / (a - 1)
    ms_b = a * n * ((yj - yy) ** 2).sum() / (b - 1)
    ms_ab = n * ((yij - yi[:, None] - yj[None, :] + yy) ** 2).sum() / ((a - 1) * (b - 1))
    ms_e = ((y - yij[..., None]) ** 2).sum() / (a * b * (n - 1))
    e_a, e_b, e_ab = sigma2 + n * s12 + b * n * s1, sigma2 + n * s12 + a * n * s2_, sigma2 + n * s12
    df_ab = (a - 1) * (b - 1)
    within(ms_e, sigma2, sigma2 * np.sqrt(2 / (a * b * (n - 1))))
    within((ms_ab - ms_e) / n, s12, np.sqrt(2 * e_ab**2 / df_ab + 2 * sigma2**2 / (a * b * (n - 1))) / n)
    within((ms_a - ms_ab) / (b * n), s1, np.sqrt(2 * e_a**2 / (a - 1) + 2 * e_ab**2 / df_ab) / (b * n))
    within((ms_b - ms_ab) / (a * n), s2_, np.sqrt(2 * e_b**2 / (b - 1) + 2 * e_ab**2 / df_ab) / (a * n))
    within(yy, m, np.sqrt(e_a / (a * b * n) + e_b / (a * b * n)))
    # cell means of the effects table are the truth; random cell sizes; no interaction
    assert sim.effects.index.names == ["status", "experience"]
    small = simulate.crossed((3, 4), (5, 9), interaction=0.0, seed=42)
    assert small.data.groupby(["status", "experience"]).size().between(5, 9).all()
    assert (small.effects.c == 0).all() and len(small.effects) == 12
    assert (small.data.groupby(["status", "experience"]).size() == small.effects.n).all()
