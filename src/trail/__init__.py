"""trail: an event-sourced audit trail for operations on personal information.

The public entry points are :class:`trail.sdk.Client` for services and the ``trail``
command line for the security team.
"""

__version__ = "0.1.0"
