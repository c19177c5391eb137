"""What a rule is: a small class fed each event with the session state before it."""

from __future__ import annotations

from typing import Any, ClassVar

from rtproxy.check.finding import Finding
from rtproxy.check.options import Options
from rtproxy.check.state import SessionState
from rtproxy.protocol.events import shown_type

__all__ = ["Rule"]


class Rule:
    """One check. Subclasses set the class attributes and override :meth:`feed` /
    :meth:`finish`; both return a list of findings (or None).

    ``types``: the GA event types (beta names are mapped) the rule is fed, or None
    for every event. ``feed`` gets the event, its type, its JSON without audio
    (None when not JSON, or for ``input_audio_buffer.append``, which is never
    parsed: use ``ev.audio_bytes``) and the state before the event.
    """

    code: ClassVar[str]
    name: ClassVar[str]
    """kebab-case name (SARIF ``name``)."""
    severity: ClassVar[str]
    """The default severity; single findings may be milder or stronger."""
    title: ClassVar[str]
    types: ClassVar[frozenset[str] | None] = None
    meaning: ClassVar[str] = ""
    why: ClassVar[str] = ""
    fix: ClassVar[str] = ""
    sources: ClassVar[tuple[str, ...]] = ()
    """Public issues and pull requests the rule comes from (../shared/realtime-bugs.md)."""

    def __init__(self, options: Options) -> None:
        self.options = options

    def wants(self, typ: str | None, ctype: str | None, from_client: bool) -> bool:
        """Whether events of this type from this side are fed to the rule (asked once per
        type and side): by default, those in :attr:`types`."""
        return self.types is None or (ctype is not None and ctype in self.types)

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        return None

    def finish(self, st: SessionState) -> list[Finding] | None:
        return None

    def at(
        self,
        index: int | None,
        t: float,
        etype: str | None,
        message: str,
        related: tuple[int, ...] | list[int] = (),
        severity: str | None = None,
    ) -> Finding:
        """A finding of this rule at message ``index``."""
        rel = tuple(sorted({r for r in related if r is not None and r != index}))
        shown = shown_type(etype) if isinstance(etype, str) else etype
        return Finding(self.code, severity or self.severity, self.title, message, t, index, shown, rel)

    def on(self, ev: Any, message: str, related: tuple[int, ...] | list[int] = (), severity: str | None = None) -> Finding:
        """A finding at event ``ev``."""
        return self.at(ev.index, ev.t, ev.type, message, related, severity)

    @classmethod
    def explain_text(cls) -> str:
        lines = [f"{cls.code} {cls.name}: {cls.title} (default severity: {cls.severity})", ""]
        for head, body in (("What it means", cls.meaning), ("Why it matters", cls.why), ("How to fix it", cls.fix)):
            if body:
                lines += [f"{head}:", *("  " + ln for ln in body.strip().splitlines()), ""]
        if cls.sources:
            lines += ["Seen in (public issues):", *(f"  {src}" for src in cls.sources)]
        return "\n".join(lines).rstrip() + "\n"


def q(value: Any, n: int = 80) -> str:
    """A value from the recording, quoted and cut to ``n`` characters."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > n:
        text = text[: n - 1] + "…"
    return f"'{text}'"


def ts(t: float | None) -> str:
    return "?" if t is None else f"{t:.3f} s"
