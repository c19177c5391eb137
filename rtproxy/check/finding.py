"""A finding: one problem a rule saw in a recording, at an event. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Finding", "SEVERITIES", "severity_rank"]

#: Severities, weakest first.
SEVERITIES = ("info", "warning", "error")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def severity_rank(severity: str) -> int:
    """0 info, 1 warning, 2 error (ValueError for anything else)."""
    try:
        return _RANK[severity]
    except KeyError:
        raise ValueError(f"severity is one of {', '.join(SEVERITIES)}, not {severity!r}") from None


@dataclass(frozen=True, slots=True)
class Finding:
    """What a rule found. ``t`` is seconds since the handshake; ``event_index`` the
    0-based index of the message that shows the problem (as ``show --json`` orders
    them), None when it is the handshake or the close; ``related`` the indices of
    the other messages involved."""

    code: str
    severity: str
    title: str
    message: str
    t: float
    event_index: int | None
    event_type: str | None
    related: tuple[int, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "title": self.title,
            "message": self.message,
            "t": round(self.t, 6),
            "event_index": self.event_index,
            "event_type": self.event_type,
            "related": list(self.related),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(
            d["code"], d["severity"], d["title"], d["message"], float(d["t"]),
            d.get("event_index"), d.get("event_type"), tuple(d.get("related") or ()),
        )

    @property
    def sort_key(self) -> tuple[float, int, str]:
        return (self.t, -1 if self.event_index is None else self.event_index, self.code)
