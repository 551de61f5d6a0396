"""The report says what matters first (issue 14): the plug-in vs posterior interval figure and
the understatement sentence open the page, the banner names every diagnostic problem, and a
run whose sampler had problems ends `bayescred fit` with exit status 5 and a line saying so.

The runs here come from a user's CSV that is not in the catalogue: a simulated Bühlmann–Straub
portfolio written to disk and named by the spec's [data] table (no reference values).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred import cli, runner
from bayescred.report import coverage, diagnostics, hyper_names

SPEC = """name = "my_portfolio"
title = "My own portfolio"
model = "buhlmann_straub"

[data]
file = "my_losses.csv"

[arguments]
group = "risk"
response = "loss"
weight = "weight"

[sampler]
draws = {draws}
tune = {tune}
chains = 2
random_seed = 7
"""


def _user_run(tmp_path, draws: int, tune: int, n_risks: int = 7):
    """A saved run of a simulated portfolio read from a user CSV (no reference values)."""
    sim = bc.datasets.simulate.buhlmann_straub(n_risks=n_risks, n_periods=5, seed=20261202)
    sim.data.to_csv(tmp_path / "my_losses.csv", index=False)
    spec = tmp_path / "mine.toml"
    spec.write_text(SPEC.format(draws=draws, tune=tune))
    return runner.run_spec(spec, out=tmp_path / "run", progress=lambda *_: None)


class _Outline(HTMLParser):
    """Tags in document order with their ids, and the text of elements with an id."""

    def __init__(self):
        super().__init__()
        self.tags, self.text, self._open = [], {}, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs.get("id"), attrs.get("class")))
        if tag not in ("img", "meta", "br"):
            self._open.append(attrs.get("id"))

    def handle_endtag(self, tag):
        if tag not in ("img", "meta", "br") and self._open:
            self._open.pop()

    def handle_data(self, data):
        for key in self._open:
            if key:
                self.text[key] = self.text.get(key, "") + data


def _outline(text: str) -> _Outline:
    parser = _Outline()
    parser.feed(text)
    return parser


def _after_title(outline: _Outline) -> list:
    tags = [t for t in outline.tags if t[0] not in ("html", "head", "meta", "title", "style", "body")]
    h1 = next(i for i, t in enumerate(tags) if t[0] == "h1")
    return tags[h1 + 1:]


@pytest.fixture(scope="module")
def few_draws(tmp_path_factory):
    """A deliberately under-sampled run (40 draws, 40 tuning steps): diagnostics must complain."""
    return _user_run(tmp_path_factory.mktemp("few"), draws=40, tune=40)


def test_first_screen_is_the_figure_then_the_sentence(few_draws):
    text = (few_draws.out / "report.html").read_text()
    outline = _outline(text)
    after = _after_title(outline)
    assert after[0][:2] == ("section", "first-screen")
    assert after[1][:2] == ("figure", "understatement") and after[2][0] == "img"
    sentence = outline.text["understatement-sentence"]
    # the figure says which intervals it compares, with their kind and probability
    assert "plug-in EBLUP ± z·conditional SD (90% normal) vs posterior 90% equal-tailed interval" in text
    # the sentence: this run's median narrowing, measured here, in plain words
    tab = few_draws.comparison.premiums
    z = 1.6448536269514722
    share = float((1 - 2 * z * tab["cond_sd"] / (tab["post_upper"] - tab["post_lower"])).median())
    word = "narrower" if share > 0 else "wider"
    assert f"on median {abs(100 * share):.0f}% {word} than the posterior's 90% equal-tailed intervals" in sentence
    # 7 risks: the study's nearest J is 5 (log scale), Bühlmann–Straub conditional SD 0.740, Bayes 0.893
    assert coverage.nearest("buhlmann_straub", 7).n_risks == 5
    assert "With 5 risks, nominal 90% plug-in intervals covered the true premium 74% of the time" in sentence
    assert "the studied number nearest to 7" in sentence and "posterior intervals 89%" in sentence
    assert not re.search(r"\w+_\w+", sentence), f"a code name in prose: {sentence}"


def test_coverage_table_matches_the_published_study():
    """The shipped figures are benchmarks/RESULTS.md's (Bühlmann–Straub and Hachemeister rows)."""
    assert coverage.COVERAGE["buhlmann_straub"][10]["cond_sd"] == 0.829
    assert coverage.COVERAGE["hachemeister"][100]["bayes"] == 0.897
    assert coverage.nearest("hachemeister", 60).n_risks == 100   # log distance: 60 is nearer 100 than 30
    assert coverage.nearest("hierarchical", 10).analogue


def test_banner_lists_every_problem_the_diagnostics_show(few_draws):
    text = (few_draws.out / "report.html").read_text()
    outline = _outline(text)
    banners = [t for t in outline.tags if t[2] == "fail"]
    assert banners, "40 draws per chain must give a 'Sampler problems' banner"
    banner = re.search(r'<div class="fail">Sampler problems: (.*?)</div>', text, re.S).group(1)
    assert text.count("Sampler problems: ") == 2  # the first screen and the diagnostics section
    assert text.index(banner) < text.index('id="understatement-sentence"') + 5000  # on the first screen
    post, hyper = few_draws.posterior, hyper_names(few_draws.posterior)
    summary = diagnostics.summary(post, hyper)
    found_any = False
    for col, words in (("ess_bulk", "bulk ESS below 400"), ("ess_tail", "tail ESS below 400")):
        low = summary.index[summary[col] < 400]
        if len(low):
            found_any = True
            assert words in banner and all(str(v) in banner for v in low)
    if (summary["r_hat"] > 1.01).any():
        found_any = True
        assert "R-hat above 1.01" in banner
    if int(diagnostics.divergences(post).sum()):
        assert "divergent transitions" in banner
    p = diagnostics.rank_p_values(post, hyper)
    for var in p.index[p < 0.01]:
        assert f"{var} (p = " in banner
    loo = diagnostics.loo_table(post)
    k, good = loo[2], loo[4]
    assert good == pytest.approx(min(1 - 1 / np.log10(2 * 40), 0.7))  # ArviZ's threshold for 80 draws
    if (k > good).any():  # the same threshold as the Pareto k table below
        assert f"Pareto k above {good:.2g} for {int((k > good).sum())} of {len(k)} risks" in banner
        assert f"{good:.2g} &lt; k &lt;= 1 (bad)" in text
    assert found_any, "40 draws per chain should leave ESS below 400"
    # LOO explained at the level of risks, and ArviZ's warnings not hidden
    assert "each observation of the log-likelihood is a whole risk" in text
    assert "Sampler healthy" not in text


@pytest.mark.parametrize("which", ["trace_figure", "rank_figure"])
def test_trace_and_rank_panels_do_not_overlap(few_draws, which):
    """Each panel's box with its tick labels, axis labels and title is clear of its neighbours'
    (arviz-plots' default figure size overlapped them: issue 14)."""
    import itertools

    post = few_draws.posterior
    fig = getattr(diagnostics, which)(post, hyper_names(post))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [ax.get_tightbbox(renderer) for ax in fig.axes if ax.get_visible() and ax.axison]
    assert len(boxes) >= 5
    overlapping = [(i, j) for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2) if a.overlaps(b)]
    assert not overlapping, f"panels {overlapping} overlap"


def test_provenance_section(few_draws):
    text = (few_draws.out / "report.html").read_text()
    data = pd.read_csv(few_draws.out.parent / "my_losses.csv")
    import hashlib

    assert hashlib.sha256(data.to_csv(index=False).encode()).hexdigest() in text
    assert "collective ~ Normal(" in text and "between_sd ~ HalfNormal(" in text  # priors from the model
    assert "tuning steps per chain</th><td>40" in text.replace("\n", "")
    for pkg in ("bayescred", "pymc", "arviz", "numpy"):
        assert f"<th>{pkg}</th>" in text
    assert '<div class="scroll"><table>' in text  # wide tables scroll instead of overflowing


def test_fit_exit_status_5_and_last_line_on_sampler_problems(capsys):
    """Two chains that disagree: R-hat far above 1.01 and divergences -> status 5, last line."""
    import xarray as xr

    rng = np.random.default_rng(3)
    coords = {"chain": [0, 1], "draw": np.arange(300)}
    between = rng.gamma(5.0, size=(2, 300)) + np.array([[0.0], [10.0]])
    div = np.zeros((2, 300), bool)
    div[0, :3] = True
    tree = xr.DataTree.from_dict({
        "posterior": xr.Dataset({"between": (("chain", "draw"), between)}, coords=coords),
        "sample_stats": xr.Dataset({"diverging": (("chain", "draw"), div),
                                    "energy": (("chain", "draw"), rng.normal(size=(2, 300)))}, coords=coords)})
    assert cli._fit_status(SimpleNamespace(posterior=tree, ok=True)) == cli.EXIT_SAMPLER == 5
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("SAMPLER PROBLEMS") and "3 divergent transitions" in last and "R-hat above 1.01" in last
    healthy = tree.copy()
    healthy["posterior"] = xr.Dataset({"between": (("chain", "draw"), rng.gamma(5.0, size=(2, 300)))}, coords=coords)
    healthy["sample_stats"] = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((2, 300), bool))}, coords=coords)
    assert cli._fit_status(SimpleNamespace(posterior=healthy, ok=False)) == cli.EXIT_MISSED


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed (apt-get install chromium)")
def test_screenshot_of_a_user_csv_report_shows_the_figure_first(tmp_path):
    from PIL import Image

    run = _user_run(tmp_path, draws=300, tune=300, n_risks=12)
    page = (run.out / "report.html").resolve()
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"]
    subprocess.run(["chromium", *flags, f"--screenshot={shot}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert image.shape[:2] == (900, 1280)
    assert image.std() > 10, "the screenshot is blank"
    # the figure's interval lines (matplotlib's tab:red and tab:blue, colours nothing else on the
    # page uses) lie in the first screen, one pair of lines per risk
    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=int)

    def near(colour):
        return (np.abs(rgb - np.array(colour)).max(axis=-1) <= 12)

    red, blue = near((214, 39, 40)), near((31, 119, 180))
    assert red.sum() > 500 and blue.sum() > 500, "the interval figure is not on the first screen"
    red_rows = np.flatnonzero(red.any(axis=1))
    assert red_rows.max() - red_rows.min() > 12 * 20, "fewer interval rows than the 12 risks"
    # and in the rendered DOM it is the first element after the title
    dom = subprocess.run(["chromium", *flags, "--dump-dom", page.as_uri()],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    after = _after_title(_outline(dom))
    assert after[0][:2] == ("section", "first-screen") and after[1][:2] == ("figure", "understatement")


def test_banner_never_calls_a_run_with_problems_healthy():
    only_loo = str(diagnostics.banner(["Pareto k above 0.7 for 1 of 5 risks (influential)"]))
    assert "healthy" not in only_loo and "Model check: Pareto k above 0.7" in only_loo and 'class="warn"' in only_loo
    both = str(diagnostics.banner(["3 divergent transitions", "Pareto k above 0.7 for 1 of 5 risks"]))
    assert both.startswith('<div class="fail">Sampler problems: 3 divergent transitions.') and "Model check" in both
    assert 'class="ok">Sampler healthy' in str(diagnostics.banner([]))
