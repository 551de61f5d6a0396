"""The catalogue: one entry per credibility model, the single definition that the runner, the
spec schema, the report, the comparison and the studies read (nothing else dispatches on a
model's name).

Each module of this package that does not start with an underscore defines one model as
``ENTRY`` (a :class:`~bayescred.catalogue._entry.Entry`); adding a module adds the model.
``get(name)`` returns an entry, ``names()`` lists them.
"""

from __future__ import annotations

import pkgutil
from importlib import import_module

from ..errors import SpecError
from ._entry import ARMS, EBSummary, Entry, Study

__all__ = ["ARMS", "EBSummary", "Entry", "Study", "get", "names", "entries", "for_posterior"]

_ENTRIES: dict[str, Entry] = {}


def _discover() -> dict[str, Entry]:
    if not _ENTRIES:
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
            if not info.name.startswith("_"):
                entry = import_module(f"{__name__}.{info.name}").ENTRY
                _ENTRIES[entry.name] = entry
    return _ENTRIES


def names() -> tuple[str, ...]:
    """The catalogue's model names, sorted."""
    return tuple(_discover())


def entries() -> list[Entry]:
    return list(_discover().values())


def get(name: str) -> Entry:
    """The entry of model ``name``; a :class:`SpecError` listing the models if there is none."""
    found = _discover().get(name)
    if found is None:
        raise SpecError(f"unknown model {name!r}; the catalogue has {', '.join(names())}")
    return found


def for_posterior(posterior) -> Entry | None:
    """The entry whose factory produced ``posterior`` (None for factories outside the catalogue)."""
    factory = posterior["posterior"].attrs.get("bayescred_factory")
    return _discover().get(factory)
