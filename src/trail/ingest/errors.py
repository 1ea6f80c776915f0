"""The consumer loop's exceptions; they live in :mod:`trail.errors` (one exception tree)."""

from trail.errors import NoCommittedOffset as NoCommittedOffset
from trail.errors import OffsetOutOfRange as OffsetOutOfRange
from trail.errors import StoppedWhileFailing as StoppedWhileFailing
from trail.errors import WriteFailed as WriteFailed
from trail.errors import WriteTimeout as WriteTimeout
