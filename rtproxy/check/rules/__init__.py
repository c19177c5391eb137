"""The rules of ``rtproxy check``, one small class each (see docs/CHECK.md)."""

from __future__ import annotations

from rtproxy.check.rules.audio import (
    AudioFormatMismatch,
    BargeInWithoutTruncate,
    CommitTooShort,
    Echo,
    MessageSize,
    SpeechNeverStopped,
    TruncateAudio,
)
from rtproxy.check.rules.base import Rule
from rtproxy.check.rules.items import AssistantAudioHistory, DuplicateEvent, UnannouncedItem, UserTranscription
from rtproxy.check.rules.responses import ActiveResponse, CancelNotActive, ResponseLifecycle, ResponseOutcome
from rtproxy.check.rules.session import ConnectionAndErrors, ProtocolDialect, SessionExpiry, SessionUpdateRejected
from rtproxy.check.rules.tools import ToolCallAnswer, ToolContinuation
from rtproxy.check.rules.values import BadValues

__all__ = ["Rule", "RULES", "RUN_ORDER", "rule"]

#: Every rule, by code.
RULES: dict[str, type[Rule]] = {
    r.code: r
    for r in sorted(
        (ActiveResponse, TruncateAudio, BargeInWithoutTruncate, CancelNotActive, CommitTooShort,
         AudioFormatMismatch, ToolCallAnswer, ToolContinuation, SessionUpdateRejected, ProtocolDialect,
         SessionExpiry, ResponseOutcome, ResponseLifecycle, UserTranscription, MessageSize, UnannouncedItem,
         ConnectionAndErrors, BadValues, Echo, SpeechNeverStopped, AssistantAudioHistory, DuplicateEvent),
        key=lambda r: r.code,
    )
}

#: The order rules are fed in: RT017 last, so it sees which errors the others explained.
RUN_ORDER: tuple[type[Rule], ...] = tuple(r for c, r in RULES.items() if c != "RT017") + (RULES["RT017"],)


def rule(code: str) -> type[Rule]:
    """The rule with this code (KeyError if none)."""
    return RULES[code.strip().upper()]
