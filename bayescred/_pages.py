"""numpy's transparent-huge-page hint off while large arrays are written once and read a few
times (``small_pages``): the posterior's per-risk draws (``bayescred.sampling``) and the
uncertainty algebra of ``ranef()`` and ``predict()`` (``bayescred.lmm.uncertainty``)."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def small_pages():
    """numpy asks Linux for huge pages (``madvise``) for every large array; where the kernel
    then compacts memory synchronously at a fault (``transparent_hugepage/defrag`` = madvise,
    the default of many distributions), each 2 MB fault on a fragmented machine waits for it.
    Measured on this project's machine (benchmarks/RESULTS.md): the 1,000-risk Bühlmann's exact
    per-risk draws took 1.2-1.4 s in any process that followed another large one, 0.15 s in
    small pages; ``ranef()`` on InstEval 7.0-7.5 s, 2.3 s in small pages. The hint is numpy's
    process-wide switch (also the ``NUMPY_MADVISE_HUGEPAGE`` environment variable), restored on
    exit; without numpy's private setter nothing changes."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:  # pragma: no cover - a numpy without the switch
        yield
        return
    previous = _set_madvise_hugepage(False)
    try:
        yield
    finally:
        _set_madvise_hugepage(previous)
