"""Run folders as transactions: written whole or not at all, verified before they are read.

A run is written into a fresh hidden sibling of its folder (``.NAME.partial-XXXX``) and
swapped into place only when every file is on disk; ``manifest.json``, written last, lists
each file with its size and SHA-256. The swap exchanges the two folders in one atomic
``renameat2(RENAME_EXCHANGE)`` (Linux), so at every instant the folder is either the previous
complete run or the new one; elsewhere the old folder is renamed aside, the new one renamed
in, and the old one deleted (an interrupted swap is undone by the next writer).

A lock file beside the folder (``.NAME.lock``, ``fcntl.flock``; the kernel releases it when
the process dies) refuses a second writer. Nothing is written through a symbolic link: files
are created new in the private partial folder, and a folder holding a link fails
verification. Every problem is a :class:`~bayescred.errors.RunFolderError` in one sentence.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import RunFolderError

MANIFEST = "manifest.json"
FORMAT = "bayescred-run/1"
# what a run folder may hold; an existing --out folder holding anything else is never replaced
ARTEFACTS = frozenset({
    MANIFEST, "spec.toml", "posterior.nc", "classical_table.csv", "eb_premiums.csv", "eb_components.csv",
    "compare_premiums.csv", "compare_variance_components.csv", "compare_credibility.csv",
    "reference_checks.csv", "eb.json", "timings.json", "report.html",
})


def _sibling(out: Path, kind: str) -> Path:
    return out.parent / f".{out.name}.{kind}"


def _fail(out: Path, what: str, exc: OSError) -> RunFolderError:
    return RunFolderError(f"cannot {what} {out}: {exc.strerror or exc}")


# ------------------------------------------------------------------- writing
def check_writable(out: Path) -> Path:
    """Refuse, before any work, an out folder this process cannot create or replace."""
    out = Path(os.path.abspath(out))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _fail(out.parent, "create the folder", exc) from None
    if not os.access(out.parent, os.W_OK | os.X_OK, effective_ids=True):
        raise RunFolderError(f"cannot write into {out.parent} (permission denied): choose a writable --out")
    probe = _sibling(out, f"probe-{secrets.token_hex(4)}")  # what permissions do not tell: a read-only disk
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise RunFolderError(f"cannot write into {out.parent} ({exc.strerror}): choose a writable --out") from None
    if out.is_symlink():
        raise RunFolderError(f"{out} is a symbolic link: give a real folder as --out (runs are never written through links)")
    if out.exists():
        if not out.is_dir():
            raise RunFolderError(f"{out} exists and is not a folder: choose another --out")
        if not os.access(out, os.W_OK | os.X_OK, effective_ids=True):
            raise RunFolderError(f"{out} is read-only: the new run could not replace it; choose a writable --out")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in ARTEFACTS or p.is_dir() and not p.is_symlink())
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise RunFolderError(f"{out} exists and holds files that are not part of a bayescred run ({shown}): "
                                 "it is not replaced; choose an empty or new --out")
    return out


@contextmanager
def lock(out) -> Iterator[Path]:
    """Hold the lock of run folder ``out`` (checked writable first); refuse if another process holds it."""
    out = check_writable(out)
    path = _sibling(out, "lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise _fail(path, "create the lock file", exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderError(f"another bayescred process is writing {out} (its lock {path.name} is held): "
                                 "wait for it to finish or choose another --out") from None
        _recover(out)
        yield out
    finally:
        os.close(fd)


def _recover(out: Path) -> None:
    """Under the lock: undo a swap interrupted between its two renames; drop leftover partials."""
    asides = sorted(out.parent.glob(f".{out.name}.old-*"))
    if not os.path.lexists(out) and asides:
        os.rename(asides.pop(), out)
    for stale in [*asides, *out.parent.glob(f".{out.name}.partial-*")]:
        shutil.rmtree(stale, ignore_errors=True)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _entry(path: Path) -> dict:
    return {"size": path.stat().st_size, "sha256": _digest(path)}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically: a new file beside it (never through a link), then
    renamed over it, so a link at ``path`` is replaced, not followed."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise RunFolderError(f"{path} is a folder, not a file to write")
    tmp = path.parent / f".{path.name}.partial-{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise _fail(path, "write", exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_in(new: Path, out: Path) -> None:
    if not os.path.lexists(out):
        os.rename(new, out)
    elif _exchange(new, out):  # ``new`` now holds the previous run (what is left: the next writer's)
        shutil.rmtree(new, ignore_errors=True)
    else:
        aside = _sibling(out, f"old-{secrets.token_hex(4)}")
        os.rename(out, aside)
        os.rename(new, out)
        shutil.rmtree(aside, ignore_errors=True)
    dir_fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _seal(folder: Path, known: dict | None = None) -> None:
    """Write the manifest (last): every file's size and SHA-256 (``known``: entries already verified)."""
    files = {}
    for path in sorted(folder.iterdir()):
        mode = path.lstat().st_mode
        if not stat.S_ISREG(mode):
            raise RunFolderError(f"{path} is not a plain file; a run folder holds plain files only")
        _fsync(path)
        files[path.name] = (known or {}).get(path.name) or _entry(path)
    from . import __version__

    manifest = json.dumps({"format": FORMAT, "bayescred": __version__, "files": files}, indent=1)
    fd = os.open(folder / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(manifest)
        fh.flush()
        os.fsync(fh.fileno())


def commit(out: Path, fill: Callable[[Path], None], *, keep: dict | None = None) -> Path:
    """Build a run in a fresh sibling folder (``fill(folder)`` writes its files), seal it with its
    manifest and swap it into place at ``out``. Call it holding :func:`lock`. ``keep``: files of the
    current folder (name -> verified manifest entry) hard-linked into the new one unchanged."""
    out = Path(os.path.abspath(out))
    new = _sibling(out, f"partial-{secrets.token_hex(4)}")
    try:
        os.mkdir(new, 0o777)
    except OSError as exc:
        raise _fail(out.parent, "write into", exc) from None
    try:
        for name in keep or {}:
            try:
                os.link(out / name, new / name, follow_symlinks=False)
            except OSError:  # a file system without hard links
                shutil.copy2(out / name, new / name, follow_symlinks=False)
        fill(new)
        _seal(new, keep)
        _swap_in(new, out)
    except OSError as exc:  # a full disk, a quota: the previous run stays
        shutil.rmtree(new, ignore_errors=True)
        raise RunFolderError(f"could not write the run into {out} ({exc.strerror or exc}); "
                             "the folder holds the previous run, unchanged") from exc
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    return out


# ------------------------------------------------------------------- reading
def verify(folder, *, regenerate: frozenset[str] = frozenset()) -> dict:
    """Check a run folder against its manifest; return the manifest's file entries.

    Refuses (RunFolderError, one sentence) a missing folder, a missing or unreadable manifest,
    a listed file that is missing, not a plain file (a symbolic link), or whose size or SHA-256
    differ. Files in ``regenerate`` (about to be rebuilt) may be missing or differ.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RunFolderError(f"{folder} is not a run folder: no such folder; run `bayescred fit` first")
    hint = "run `bayescred fit` again to rebuild it"
    try:
        text = (folder / MANIFEST).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunFolderError(f"{folder} is not a complete run folder: it has no {MANIFEST} (the run was interrupted, "
                             f"or written by an older bayescred); {hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{folder} is damaged: {MANIFEST} cannot be read ({exc}); {hint}") from None
    try:
        manifest = json.loads(text)
        files = manifest["files"]
        ok = manifest.get("format") == FORMAT and isinstance(files, dict) and all(
            isinstance(e, dict) and isinstance(e.get("size"), int) and isinstance(e.get("sha256"), str)
            for e in files.values())
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise RunFolderError(f"{folder} is damaged: {MANIFEST} is not a bayescred run manifest; {hint}")
    for path in folder.iterdir():
        if path.is_symlink():
            raise RunFolderError(f"{folder} is damaged: {path.name} is a symbolic link, which no run writes; "
                                 "remove it or run `bayescred fit` again")
    for name, entry in files.items():
        path = folder / name
        if name != os.path.basename(name) or name in ("", ".", ".."):
            raise RunFolderError(f"{folder} is damaged: {MANIFEST} names a path outside the folder ({name!r})")
        if not path.is_file():
            if name in regenerate:
                continue
            raise RunFolderError(f"{folder} is incomplete: {name} is missing; {hint}")
        if name in regenerate:
            continue
        size = path.stat().st_size
        if size != entry["size"]:
            raise RunFolderError(f"{folder} is damaged: {name} has {size} bytes where its manifest says "
                                 f"{entry['size']}; {hint}")
        if _digest(path) != entry["sha256"]:
            raise RunFolderError(f"{folder} is damaged: {name} does not match its SHA-256 in {MANIFEST}; {hint}")
    return files
