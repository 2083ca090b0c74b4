"""The base of the probes' report kinds: each member is (classification, severity)."""

from __future__ import annotations

import enum


class RecordKind(enum.Enum):
    """A kind of report; subclasses list members as (classification, severity)."""

    _value_: tuple[str, int]

    @property
    def classification(self) -> str:
        return self.value[0]

    @property
    def severity(self) -> int:
        return self.value[1]
