"""Deferred imports for the command line, so short commands start fast."""

from __future__ import annotations

import importlib
from typing import Any


class _Lazy:
    """Stands for a module, or one of its attributes, until first used."""

    def __init__(self, module: str, attribute: str | None) -> None:
        self._module = module
        self._attribute = attribute
        self._target: Any = None

    def _resolve(self) -> Any:
        if self._target is None:
            module = importlib.import_module(self._module)
            self._target = getattr(module, self._attribute) if self._attribute else module
        return self._target

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolve(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve()(*args, **kwargs)


def lazy(module: str, attribute: str | None = None) -> Any:
    """A proxy that imports `module` (and takes `attribute` from it) on first use."""
    return _Lazy(module, attribute)
