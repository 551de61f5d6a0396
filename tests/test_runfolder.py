"""Run folders are transactions (issue 10): manifest, atomic swap, lock, no writing through links.

Reproduces the run-folder items under "Measured" in issue 10: two fits into one folder, a
truncated posterior.nc accepted by `bayescred report`, a read-only out folder refused only
after fitting, a report.html symlink written through, a "$" in a risk label crashing the
report; and the fault test: `save` killed with SIGKILL at random points, twenty times.
"""

import hashlib
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

import bayescred.runner as runner
from bayescred import runfolder
from bayescred.cli import main
from bayescred.errors import RunFolderError
from bayescred.report import report
from bayescred.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "models" / "buhlmann.toml"
DOLLAR = "$\\frac{$ class "  # unbalanced mathtext: matplotlib raised ValueError on it


# ------------------------------------------------------------------- folder mechanics, no fitting
def _fill(texts):
    def fill(folder):
        for name, text in texts.items():
            (folder / name).write_text(text)
    return fill


def test_commit_writes_a_manifest_that_verify_checks(tmp_path):
    out = tmp_path / "run"
    with runfolder.lock(out):
        runfolder.commit(out, _fill({"spec.toml": "a", "eb.json": "{}"}))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"]["spec.toml"] == {
        "size": 1, "sha256": "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"}  # sha256(b"a")
    assert set(runfolder.verify(out)) == {"spec.toml", "eb.json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.lock", "run"]  # no partial left


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "posterior.nc").write_bytes(b"x" * 10), "posterior.nc has 10 bytes where its manifest says 20"),
    (lambda f: (f / "posterior.nc").write_bytes(b"y" * 20), "posterior.nc does not match its SHA-256"),
    (lambda f: (f / "posterior.nc").unlink(), "is incomplete: posterior.nc is missing"),
    (lambda f: (f / "manifest.json").unlink(), "has no manifest.json"),
    (lambda f: (f / "manifest.json").write_text("{"), "not a bayescred run manifest"),
    (lambda f: (f / "manifest.json").write_text('{"format": "bayescred-run/1", "files": {"../x": '
                                                '{"size": 1, "sha256": "a"}}}'), "names a path outside"),
    (lambda f: (f / "report.html").symlink_to(f.parent / "elsewhere.html"), "report.html is a symbolic link"),
])
def test_verify_refuses_a_damaged_folder_in_one_sentence(tmp_path, damage, message):
    out = tmp_path / "run"
    with runfolder.lock(out):
        runfolder.commit(out, _fill({"posterior.nc": "p" * 20, "spec.toml": "s"}))
    damage(out)
    with pytest.raises(RunFolderError, match=message) as info:
        runfolder.verify(out)
    assert "\n" not in str(info.value)


def test_a_failed_write_leaves_the_previous_run_whole(tmp_path):
    out = tmp_path / "run"
    with runfolder.lock(out):
        runfolder.commit(out, _fill({"spec.toml": "old"}))

    def half(folder):
        (folder / "spec.toml").write_text("new")
        raise OSError(28, "No space left on device")

    with runfolder.lock(out), pytest.raises(RunFolderError, match="No space left on device.*previous run, unchanged"):
        runfolder.commit(out, half)
    runfolder.verify(out)
    assert (out / "spec.toml").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.lock", "run"]


def test_a_second_writer_is_refused_by_the_lock(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from bayescred import runfolder\n"
         f"with runfolder.lock({str(out)!r}):\n    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderError, match="another bayescred process is writing .*run"):
            with runfolder.lock(out):
                pass
    finally:
        holder.communicate("", timeout=60)
    with runfolder.lock(out):  # released with the process
        pass


def test_a_folder_that_is_not_a_run_is_never_replaced(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    with pytest.raises(RunFolderError, match=r"holds files that are not part of a bayescred run \(thesis.tex\)"):
        runfolder.check_writable(tmp_path / "mine")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="exists and is not a folder"):
        runfolder.check_writable(tmp_path / "file")
    (tmp_path / "link").symlink_to(tmp_path / "mine")
    with pytest.raises(RunFolderError, match="is a symbolic link"):
        runfolder.check_writable(tmp_path / "link")
    with pytest.raises(RunFolderError, match="cannot (write into|create the folder) /proc"):
        runfolder.check_writable(Path("/proc/bayescred-run"))
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"


def test_write_text_replaces_a_link_and_leaves_its_target_alone(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "report.html").symlink_to(victim)
    runfolder.write_text(tmp_path / "report.html", "<html/>")
    assert victim.read_text() == "precious"
    assert not (tmp_path / "report.html").is_symlink() and (tmp_path / "report.html").read_text() == "<html/>"


# ------------------------------------------------------------------- with a real (fast) run
def _dollar_labels(spec, data_dir=None):
    data = _load_data(spec, data_dir)
    return data.assign(**{"class": DOLLAR + data["class"].astype(str)})


_load_data = runner.open_data  # what a run fits (load_data: its pandas rows, for the report)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One fast Bühlmann run whose risk labels hold mathtext ("$\\frac{$ class 1"), saved."""
    out = tmp_path_factory.mktemp("runs") / "base"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "open_data", _dollar_labels)
        run = runner.run_spec(SPEC, out=out, fast=True, progress=lambda *_: None)
    return run


def test_dollar_in_a_risk_label_is_text_in_the_report(base):
    text = (base.out / "report.html").read_text()
    assert "$\\frac{$ class 1" in text and text.count("data:image/png;base64,") >= 5
    runfolder.verify(base.out)


def test_report_refuses_a_truncated_posterior(base, tmp_path, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in base.out.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    with open(copy / "posterior.nc", "r+b") as fh:
        fh.truncate((copy / "posterior.nc").stat().st_size // 2)
    assert main(["report", str(copy)]) == 6
    err = capsys.readouterr().err
    assert "is damaged: posterior.nc has" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(RunFolderError):
        report(copy, out=tmp_path / "elsewhere.html")
    assert not (tmp_path / "elsewhere.html").exists()


def test_symlinked_report_is_not_written_through(base, tmp_path, capsys):
    victim = tmp_path / "victim.html"
    victim.write_text("not yours")
    link = base.out / "report.html"
    link.unlink()
    link.symlink_to(victim)
    assert main(["report", str(base.out)]) == 6  # a folder with a link is refused ...
    assert "report.html is a symbolic link" in capsys.readouterr().err
    runner.save(base, base.out)  # ... and a new run into it replaces the link, not its target
    assert victim.read_text() == "not yours"
    assert not link.is_symlink() and link.stat().st_size > 0 and runfolder.verify(base.out)


def test_report_rebuilds_in_place_under_the_manifest(base):
    before = runfolder.verify(base.out)
    (base.out / "report.html").unlink()
    assert main(["report", str(base.out)]) == 0
    after = runfolder.verify(base.out)
    assert after["posterior.nc"] == before["posterior.nc"] and (base.out / "report.html").is_file()


def test_a_second_fit_into_a_busy_folder_is_refused_before_fitting(base):
    before = runfolder.verify(base.out)
    with runfolder.lock(base.out):  # a first fit is writing the folder
        res = subprocess.run([sys.executable, "-m", "bayescred", "fit", str(SPEC), "--out", str(base.out), "--fast"],
                             capture_output=True, text=True, cwd=ROOT, timeout=300,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 6, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"bayescred fit: error: another bayescred process is writing {base.out} (its lock .base.lock is held): "
        "wait for it to finish or choose another --out"]
    assert "[2/6]" not in res.stdout and "Traceback" not in res.stderr
    assert runfolder.verify(base.out) == before  # nothing mixed in


def _nobody():
    import pwd

    return pwd.getpwnam("nobody").pw_uid


def test_read_only_out_folder_is_refused_before_fitting(monkeypatch):
    tmp_path = Path(tempfile.mkdtemp(prefix="bayescred-ro-"))  # /tmp: reachable by an ordinary user
    monkeypatch.setattr(runner, "open_data", _no_fit)
    try:
        _refused_read_only(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _no_fit(*args, **kwargs):
    raise AssertionError("fitting started")


def _refused_read_only(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    out = shared / "run"
    out.mkdir()
    for folder, mode in ((tmp_path, 0o755), (shared, 0o777), (out, 0o555)):
        folder.chmod(mode)
    spec = load_spec(SPEC)  # read while still root: the clone may sit in a folder only its owner reads (mktemp -d)
    as_root = os.geteuid() == 0
    if as_root:  # root writes anywhere: be an ordinary user for the check
        os.seteuid(_nobody())
    try:
        start = time.perf_counter()
        with pytest.raises(RunFolderError, match=f"{out} is read-only"):
            runner.run_spec(spec, out=out, fast=True, progress=lambda *_: None)
        elapsed = time.perf_counter() - start
    finally:
        if as_root:
            os.seteuid(0)
    print(f"read-only out folder refused after {elapsed * 1000:.0f} ms")
    assert elapsed < 2, f"refused after {elapsed:.1f} s"


# ------------------------------------------------------------------- fault test
# The writer: one process loads a saved run once and forks a child per trial that saves it
# (trial number in timings.json). The HTML report is stood in for by the saved report's bytes,
# written the same way, so that a save takes a fraction of a second and twenty fit in the test.
CHILD = textwrap.dedent("""
    import importlib, json, os, sys, time
    from types import SimpleNamespace
    from pathlib import Path
    import bayescred.runner as runner
    from bayescred import runfolder
    from bayescred.report import _load_run

    base, out = Path(sys.argv[1]), Path(sys.argv[2])
    loaded = _load_run(base)
    eb = SimpleNamespace(to_dict=lambda: json.loads((base / "eb.json").read_text()))
    page = (base / "report.html").read_text()
    importlib.import_module("bayescred.report").write_report = lambda run, path: runfolder.write_text(path, page)
    print("ready", flush=True)
    for line in sys.stdin:                       # "save I": fork a writer of trial I
        trial = int(line.split()[1])
        pid = os.fork()
        if pid == 0:
            run = runner.Run(loaded.spec, loaded.data, loaded.classical, eb, loaded.eb_summary, loaded.posterior,
                             loaded.comparison, loaded.checks, {"trial": trial})
            start = time.perf_counter()
            runner.save(run, out)
            print(f"saved {time.perf_counter() - start}", flush=True)
            os._exit(0)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"status {status}", flush=True)
""")


def _lines(proc) -> queue.Queue:
    """The writer's lines, queued by a thread as they come. (select() on the pipe under a
    buffered reader missed a line that arrived with the one before it: it sat in the buffer
    while select() waited on the empty pipe, and a loaded machine timed out.)"""
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    return lines


def _read(lines: queue.Queue, prefix, timeout=120):
    try:
        line = lines.get(timeout=timeout).strip()
    except queue.Empty:
        raise AssertionError(f"no '{prefix}' from the writer within {timeout} s") from None
    assert line.startswith(prefix), line
    return line[len(prefix):].strip()


def _trial(out: Path):
    return json.loads((out / "timings.json").read_text())["trial"]


def _complete(folder: Path) -> bool:
    """Judged without bayescred: every file of a run present and as its manifest says."""
    try:
        files = json.loads((folder / "manifest.json").read_text())["files"]
    except (OSError, ValueError, KeyError):
        return False
    if set(files) != runfolder.ARTEFACTS - {"manifest.json"}:
        return False
    for name, entry in files.items():
        path = folder / name
        if path.is_symlink() or not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            return False
    return True


def _accepted(folder: Path) -> bool:
    try:
        runfolder.verify(folder)
    except RunFolderError:
        return False
    return True


TRIALS = 20


def test_sigkill_during_save_leaves_the_previous_or_the_new_run(base, tmp_path):
    """SIGKILL at random points of saving, 20 times: the folder is always a complete run (the
    previous or the new one) and `bayescred report` accepts exactly the complete folders."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MPLBACKEND": "Agg"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(base.out), str(out)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    rng = random.Random(20261202)
    lines = _lines(proc)
    try:
        _read(lines, "ready")
        durations = []
        for trial in range(3):  # uninterrupted saves: how long one takes
            proc.stdin.write(f"save {trial}\n")
            proc.stdin.flush()
            _read(lines, "pid")
            durations.append(float(_read(lines, "saved")))
            assert _read(lines, "status") == "0"
        current, outcomes, refused = 2, [], 0
        for trial in range(3, 3 + TRIALS):  # kill points: stratified at random over twice a save
            proc.stdin.write(f"save {trial}\n")
            proc.stdin.flush()
            pid = int(_read(lines, "pid"))
            time.sleep(2 * max(durations) * (trial - 3 + rng.random()) / TRIALS)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            while not lines.get(timeout=120).startswith("status"):
                pass
            assert _complete(out) and _accepted(out)  # always a complete run ...
            now = _trial(out)
            assert now in (current, trial), f"trial {trial}: folder holds run {now}, expected {current} or {trial}"
            outcomes.append("new" if now == trial else "previous")
            current = now
            for partial in tmp_path.glob(".out.*-*"):  # ... and what a killed writer left is judged alike
                assert _accepted(partial) == _complete(partial), partial
                refused += not _accepted(partial)
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    print(f"{TRIALS} kills over a {max(durations):.2f} s save: folder kept the previous run {outcomes.count('previous')}"
          f" times, held the new run {outcomes.count('new')} times; {refused} half-written folders refused")
    assert outcomes.count("previous") >= 3 and outcomes.count("new") >= 3, outcomes
    assert refused >= 1  # some kills left a half-written folder behind, and it was refused
    assert main(["report", str(out), "--out", str(tmp_path / "final.html")]) == 0


def test_report_of_a_saved_run_object_keeps_the_manifest_true(base):
    """bc.report(run) for a saved Run rewrites its folder's report.html in a transaction too."""
    assert report(base) == base.out / "report.html"
    runfolder.verify(base.out)
