"""The web console (DESIGN.md §10): server-rendered pages under ``/console/`` of the API process,
behind the same tokens, roles and access log as the API."""

from trail.console.app import create_console

__all__ = ["create_console"]
