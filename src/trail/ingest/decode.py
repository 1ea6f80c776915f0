"""Moved to :mod:`trail.events.wire` (the acceptance rule for wire bytes belongs to the event contract)."""

from trail.events.wire import Rejected as Rejected
from trail.events.wire import decode as decode
