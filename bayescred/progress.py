"""Progress bars for long work (bootstrap, profiling, coverage study), with rich.

Shown on standard error when it is a terminal, silent otherwise (pipes, log files, tests).
The environment variable ``BAYESCRED_PROGRESS`` overrides the guess: ``1`` always shows the
bar (drawn as on a terminal), ``0`` never does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    """Whether progress is shown: ``BAYESCRED_PROGRESS`` if set, else stderr is a terminal."""
    flag = os.environ.get("BAYESCRED_PROGRESS", "").strip().lower()
    if flag in ("1", "true", "yes", "on"):
        return True
    if flag in ("0", "false", "no", "off"):
        return False
    return sys.stderr.isatty()


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over ``items`` with a rich progress bar on stderr when :func:`enabled`."""
    if not enabled():
        yield from items
        return
    from rich.console import Console
    from rich import progress as rich_progress

    console = Console(file=sys.stderr, force_terminal=True)
    yield from rich_progress.track(items, description=description, total=total, console=console, transient=True)
