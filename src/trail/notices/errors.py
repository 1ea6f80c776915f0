"""The errors of notices; they live in :mod:`trail.errors` (one exception tree)."""

from trail.errors import BatchBusy as BatchBusy
from trail.errors import ChannelError as ChannelError
from trail.errors import DeliveryFailed as DeliveryFailed
from trail.errors import LedgerError as LedgerError
from trail.errors import NoticeError as NoticeError
from trail.errors import NoticeSpecError as NoticeSpecError
from trail.errors import RenderError as RenderError
from trail.errors import ResolverError as ResolverError
