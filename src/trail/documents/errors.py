"""The errors of rendering documents; they live in :mod:`trail.errors` (one exception tree)."""

from trail.errors import DocumentError as DocumentError
from trail.errors import MissingElementError as MissingElementError
