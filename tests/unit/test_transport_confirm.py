"""What counts as a delivered record: an acknowledgement with an offset (pure logic over the
shape of kafka-python's record futures)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trail.sdk.transport import unconfirmed


@dataclass
class Answer:
    """The fields of kafka-python's ``FutureRecordMetadata`` the transport reads."""

    is_done: bool = True
    offset: int | None = 0
    exception: BaseException | None = None

    def failed(self) -> bool:
        return self.exception is not None

    @property
    def value(self) -> Any:
        return None if self.exception is not None else type("Meta", (), {"offset": self.offset})()


def test_records_with_offsets_are_confirmed() -> None:
    assert unconfirmed([Answer(offset=0), Answer(offset=1), Answer(offset=7)]) is None


def test_an_answer_without_an_offset_is_not_a_confirmation() -> None:
    """kafka-python turns DUPLICATE_SEQUENCE_NUMBER into a success with offset -1 for every
    record of the batch; the transport sends them again instead of taking the broker's word."""
    why = unconfirmed([Answer(offset=4), Answer(offset=-1)])
    assert why is not None and "without an offset" in why


def test_late_and_refused_records_are_not_confirmed() -> None:
    assert unconfirmed([Answer(offset=1), Answer(is_done=False)]) == "broker did not acknowledge in time"
    why = unconfirmed([Answer(exception=TimeoutError())])
    assert why is not None and "TimeoutError" in why
