"""Subpackages that are also their main function: ``bc.lmm(formula, data)`` fits a model and
``import bayescred.lmm`` (or ``bayescred.lmm.model``) gives the subpackage, the same object.

The module's class is switched to :class:`CallableModule` (module ``__class__`` assignment,
Python ≥ 3.5) by :func:`make_callable` at the end of the subpackage; calling it calls the
function of the same name, and ``inspect.signature`` (IPython's ``?``) shows that function's
signature.
"""

from __future__ import annotations

import inspect
import sys
import types


class CallableModule(types.ModuleType):
    # a property, not a method: calling the module calls the function itself, with no frame of
    # ours between, so a warning's stacklevel still points at the user's line
    __call__ = property(lambda self: self.__function__)


def make_callable(module_name: str) -> None:
    """Make ``module_name`` call its function of the same last name."""
    module = sys.modules[module_name]
    function = getattr(module, module_name.rpartition(".")[2])
    module.__class__ = CallableModule
    module.__function__ = function
    module.__signature__ = inspect.signature(function)
