"""One exception tree, in one module, drawn whole."""

from __future__ import annotations

import importlib
import pkgutil

import trail
from trail import errors


def _all_trail_modules() -> None:
    for info in pkgutil.walk_packages(trail.__path__, "trail."):
        importlib.import_module(info.name)


def _subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _subclasses(sub)
    return out


def test_every_trail_error_is_defined_in_the_errors_module() -> None:
    """No package defines an exception of its own: every TrailError lives in trail.errors."""
    _all_trail_modules()
    elsewhere = sorted(
        f"{c.__module__}.{c.__qualname__}" for c in _subclasses(errors.TrailError) if c.__module__ != "trail.errors"
    )
    assert elsewhere == []


def test_the_tree_in_the_docstring_names_every_class() -> None:
    """The tree drawn in trail.errors' docstring names every exception class the module defines."""
    assert errors.__doc__ is not None
    defined = {name for name, obj in vars(errors).items() if isinstance(obj, type) and issubclass(obj, Exception)}
    missing = sorted(
        name for name in defined if f" {name} " not in errors.__doc__ and f"{name}\n" not in errors.__doc__
    )
    assert missing == []
