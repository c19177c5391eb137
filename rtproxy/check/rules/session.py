"""The session: config rejected (RT009), protocol dialect (RT010), expiry and idle
timeout (RT011), the connection and every other error (RT017)."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Iterator

from rtproxy.check.finding import Finding
from rtproxy.check.rules.base import Rule, q
from rtproxy.check.state import SessionState, d, error_fields, num, s, sid
from rtproxy.check.vocab import BETA_ONLY_SERVER, CLIENT_TYPES, GA_ONLY_SERVER, SERVER_TYPES

__all__ = ["SessionUpdateRejected", "ProtocolDialect", "SessionExpiry", "ConnectionAndErrors"]

#: Unknown event types reported one by one (one finding each); events of any further
#: type, or of a type name longer than MAX_UNKNOWN_TYPE_CHARS, are counted in one more.
MAX_UNKNOWN_TYPES = 200
MAX_UNKNOWN_TYPE_CHARS = 200
_KEPT = 10
"""Events kept per unknown type (the first is the finding's, the next ones related)."""

_NOT_COMPARED = ("model", "id", "object", "expires_at", "client_secret", "type", "format", "tracing")


def _leaves(v: Any, path: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    if isinstance(v, dict) and v and depth < 8:
        for k, x in v.items():
            yield from _leaves(x, f"{path}.{k}", depth + 1)
    elif isinstance(v, list) and v and depth < 8 and all(isinstance(x, dict) for x in v):
        for i, x in enumerate(v):
            yield from _leaves(x, f"{path}[{i}]", depth + 1)
    else:
        yield path, v


def _get(root: Any, path: str) -> Any:
    """The value at ``session.a.b[0].c`` in ``{"session": root}``; ... when absent."""
    cur = root
    for part in path.replace("[", ".[").split(".")[1:]:
        if part.startswith("["):
            try:
                idx = int(part[1:-1])
            except ValueError:
                return ...
            if not isinstance(cur, list) or idx >= len(cur):
                return ...
            cur = cur[idx]
        else:
            if not isinstance(cur, dict) or part not in cur:
                return ...
            cur = cur[part]
    return cur


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
    return bool(a == b)


def _voice(sess: dict[str, Any]) -> Any:
    v = d(d(sess.get("audio")).get("output")).get("voice", ...)
    return sess.get("voice", ...) if v is ... else v


class SessionUpdateRejected(Rule):
    code = "RT009"
    name = "session-update-rejected"
    severity = "error"
    title = "session.update rejected or not applied"
    types = frozenset({"session.update", "transcription_session.update", "session.updated",
                       "transcription_session.updated", "error"})
    meaning = """
A session.update the server rejected: an error whose param starts with
"session." (or that names the update by event_id, or follows it with no
session.updated in between), shown with the value asked for and the one in
force. Also an update never acknowledged (warning), a voice change after
assistant audio (cannot_update_voice, warning), and fields session.updated
reports differently from what was asked (info).
"""
    why = """
A rejected update leaves the session on its defaults: default instructions, no
tools, the default voice and format, and the app keeps going as if it had
worked.
"""
    fix = """
Fix the field the error names (GA sessions need session.type; beta fields such
as session.voice or session.input_audio_format are unknown to GA); check every
session.updated; change the voice only before any assistant audio.
"""
    sources = ("TanStack/ai #586", "mastra-ai/mastra PR #16941", "community 1380750, 1028638",
               "davidmigloz/langchain_dart #643", "RageAgainstThePixel/com.openai.unity #427",
               "openai/openai-agents-python #1661", "openai/openai-python #2607")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.pending: OrderedDict[int, tuple[Any, str | None, dict[str, Any]]] = OrderedDict()
        """The updates not acknowledged yet, by event index (oldest first)."""

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        o = d(obj)
        if ctype in ("session.update", "transcription_session.update"):
            sess = d(o.get("session"))
            self.pending[ev.index] = (ev, sid(o.get("event_id")), sess)
            v = _voice(sess)
            if v is not ... and st.effective is not None and st.audio_out_ms > 0:
                cur = _voice(st.effective)
                if cur is not ... and not _same(v, cur):
                    return [self.on(ev, f"voice change to {q(v)} (in force: {q(cur)}) after "
                                        f"{st.audio_out_ms / 1000:.1f} s of assistant audio: the server refuses it "
                                        "(cannot_update_voice)", severity="warning")]
            return None
        if ctype in ("session.updated", "transcription_session.updated"):
            if not self.pending:
                return None
            upd, _, asked = self.pending.popitem(last=False)[1]
            eff = d(o.get("session"))
            diffs = []
            for path, want in _leaves(asked, "session"):
                if any(path.endswith("." + k) or f".{k}." in path or f".{k}[" in path for k in _NOT_COMPARED):
                    continue
                got = _get(eff, path)
                if got is not ... and not _same(want, got):
                    diffs.append(f"{path}: asked {q(want, 40)}, in force {q(got, 40)}")
            if diffs:
                more = f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else ""
                return [self.on(ev, f"session.updated does not report what #{upd.index} asked: "
                                    + "; ".join(diffs[:3]) + more, [upd.index], "info")]
            return None
        err = error_fields(obj)
        if not self.pending:
            return None
        param = err.get("param") or ""
        code = err.get("code") or ""
        cause = st.cause_of(err)
        hit = None
        if cause is not None:
            hit = self.pending.get(cause[0])
        elif param.startswith("session") or code == "cannot_update_voice" or (
                st.last_client is not None and st.last_client[1] in ("session.update", "transcription_session.update")):
            hit = self.pending[next(reversed(self.pending))]
        if hit is None:
            return None
        del self.pending[hit[0].index]
        if "format" in param:
            return None  # RT006 reports refused formats
        st.explain(ev.index)
        upd, _, asked = hit
        detail = ""
        if param.startswith("session"):
            want = _get(asked, param)
            have = _get(st.effective, param) if st.effective is not None else ...
            detail = (f"; asked {param} = {q(want, 60) if want is not ... else '(not sent)'}, in force: "
                      f"{q(have, 60) if have is not ... else '(not set)'}")
        return [self.at(upd.index, upd.t, upd.type,
                        f"session.update rejected (error #{ev.index} {code or err.get('type') or '?'}"
                        f"{' param=' + param if param else ''}: {q(err.get('message'), 120)}){detail}; the session "
                        "runs on its previous config", [ev.index])]

    def finish(self, st: SessionState) -> list[Finding] | None:
        return [self.on(ev, "session.update never acknowledged: no session.updated or error followed",
                        severity="warning") for ev, _, _ in self.pending.values()]


class ProtocolDialect(Rule):
    code = "RT010"
    name = "protocol-dialect"
    severity = "warning"
    title = "beta shape against the GA API, mixed dialects, unknown event types"
    types = None
    meaning = """
The handshake sent OpenAI-Beta (refused by the GA API with
beta_api_shape_disabled and close 4000: error); a server mixing beta and GA
event names, or a beta-shaped session.update sent to a GA server; event types
neither protocol defines (one finding per type), messages that are not JSON
events, and binary frames.
"""
    why = """
Clients listening for one dialect's names miss the other's (a bot waiting for
response.audio.delta stays silent on GA's response.output_audio.delta);
unknown types break strict clients and validators.
"""
    fix = """
Drop the OpenAI-Beta header and use GA names and session shapes
(session.type, audio.input.format objects); make the client accept unknown
event types and log them.
"""
    sources = ("api7/aisix PR #1061", "langwatch/scenario #602", "TanStack/ai #586",
               "openai/openai-node PR #1661 (#1641)", "NousResearch/hermes-agent PR #100766",
               "mastra-ai/mastra #16762, PR #16763", "vllm-project/vllm-omni PR #7339", "openai/openai-python #2698",
               "richiejp/VoxInput #22", "BerriAI/litellm PR #30570, #30581")

    _BETA_SESSION_KEYS = ("input_audio_format", "output_audio_format", "modalities", "input_audio_transcription",
                          "max_response_output_tokens")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.unknown: dict[tuple[str, str], tuple[list[Any], list[int]]] = {}
        """(side, type) -> (its first events, [how many])."""
        self.other_unknown: tuple[list[Any], list[int]] | None = None
        """Events of unknown types past MAX_UNKNOWN_TYPES (or with very long names)."""
        self.not_json: list[Any] = []
        self.binary: list[Any] = []
        self.beta_at: Any = None
        self.ga_at: Any = None
        self.beta_update: Any = None
        self.ga_session = False
        self.beta_error: Any = None
        self.last_bad_client: int | None = None

    def wants(self, typ: str | None, ctype: str | None, from_client: bool) -> bool:
        if typ is None:
            return True
        if from_client:
            return typ not in CLIENT_TYPES or typ == "session.update"
        return typ not in SERVER_TYPES or typ in ("session.created", "session.updated", "error")

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        typ = ev.type
        client = ev.side == "client"
        if typ is None:
            (self.binary if not ev.is_text else self.not_json).append(ev)
            if client:
                self.last_bad_client = ev.index
            return None
        if client:
            if typ not in CLIENT_TYPES:
                self._unknown("client", typ, ev)
                self.last_bad_client = ev.index
            elif typ == "session.update" and obj is not None:
                sess = d(obj.get("session"))
                if any(k in sess for k in self._BETA_SESSION_KEYS) and self.beta_update is None:
                    self.beta_update = ev
            return None
        if typ not in SERVER_TYPES:
            self._unknown("server", typ, ev)
        elif typ in ("session.created", "session.updated") and obj is not None:
            sess = d(obj.get("session"))
            if isinstance(sess.get("audio"), dict) or "output_modalities" in sess:
                self.ga_session = True
        elif typ == "error":
            err = error_fields(obj)
            if err.get("code") == "beta_api_shape_disabled":
                st.explain(ev.index)
                self.beta_error = ev
                hdr = st.handshake.header("OpenAI-Beta") if st.handshake is not None else None
                why = f" (the handshake sent OpenAI-Beta: {q(hdr)})" if hdr else ""
                return [self.on(ev, f"the GA API refuses the beta protocol: beta_api_shape_disabled{why}",
                                severity="error")]
            cause = st.cause_of(err)
            ci = cause[0] if cause else (st.last_client[0] if st.last_client else None)
            if ci is not None and ci == self.last_bad_client and (
                    err.get("param") == "type" or err.get("code") in ("invalid_json", "binary_not_supported")
                    or "Invalid value" in (err.get("message") or "")):
                st.explain(ev.index)
        return None

    def _unknown(self, side: str, typ: str, ev: Any) -> None:
        held = self.unknown.get((side, typ))
        if held is None:
            if len(self.unknown) < MAX_UNKNOWN_TYPES and len(typ) <= MAX_UNKNOWN_TYPE_CHARS:
                held = self.unknown[(side, typ)] = ([], [0])
            else:
                held = self.other_unknown = self.other_unknown or ([], [0])
        evs, n = held
        if len(evs) < _KEPT:
            evs.append(ev)
        n[0] += 1

    def finish(self, st: SessionState) -> list[Finding] | None:
        out = []
        for (side, typ), first in st.first_of.items():
            if side == "server" and typ in BETA_ONLY_SERVER:
                self.beta_at = self.beta_at or first
            elif side == "server" and typ in GA_ONLY_SERVER:
                self.ga_at = self.ga_at or first
        for (side, typ), (evs, (n,)) in self.unknown.items():
            out.append(self.on(evs[0], f"{side} event type {q(typ)} is in neither the GA nor the beta protocol"
                                       + (f" ({n} times)" if n > 1 else ""),
                               [e.index for e in evs[1:_KEPT]]))
        if self.other_unknown is not None:
            evs, (n,) = self.other_unknown
            out.append(self.on(evs[0], f"{n} more event(s) of types in neither the GA nor the beta protocol (past "
                                       f"the first {MAX_UNKNOWN_TYPES} such types, or with names over "
                                       f"{MAX_UNKNOWN_TYPE_CHARS} characters), the first {evs[0].side} "
                                       f"{q(evs[0].type)}", [e.index for e in evs[1:_KEPT]]))
        for evs, what in ((self.not_json, "text message(s) that are not JSON events"),
                          (self.binary, "binary message(s): the API speaks JSON text frames")):
            if evs:
                out.append(self.on(evs[0], f"{len(evs)} {what}", [e.index for e in evs[1:10]]))
        if self.beta_at is not None and self.ga_at is not None:
            out.append(self.on(self.beta_at if self.beta_at.index > self.ga_at.index else self.ga_at,
                               f"the server mixes beta ({self.beta_at.type}, #{self.beta_at.index}) and GA "
                               f"({self.ga_at.type}, #{self.ga_at.index}) event names",
                               [self.beta_at.index, self.ga_at.index]))
        ga = self.ga_at is not None or self.ga_session
        if self.beta_update is not None and ga:
            out.append(self.on(self.beta_update, "beta-shaped session.update (input_audio_format, modalities...) "
                                                 "sent to a GA server"))
        hdr = st.handshake.header("OpenAI-Beta") if st.handshake is not None else None
        c = st.close
        if c is not None and c.code == 4000 and self.beta_error is None:
            out.append(self.at(None, c.t if c.t is not None else st.end_t, None,
                               f"closed with 4000 {q(c.reason or '')}"
                               + (f" (the handshake sent OpenAI-Beta: {q(hdr)})" if hdr else ""), severity="error"))
        elif hdr and self.beta_error is None:
            out.append(self.at(None, 0.0, None, f"the handshake sent OpenAI-Beta: {q(hdr)}; the GA API refuses "
                                                "beta-shaped sessions", severity="warning" if ga else "info"))
        return out


class SessionExpiry(Rule):
    code = "RT011"
    name = "session-expiry"
    severity = "warning"
    title = "session expired; idle timeout fired"
    types = frozenset({"error", "input_audio_buffer.timeout_triggered", "response.created"})
    meaning = """
The server ended the session at its maximum duration (error session_expired,
close 1001 from the server), reported with the session's age and expires_at;
an idle timeout (input_audio_buffer.timeout_triggered, info) and the response
it caused.
"""
    why = """
Sessions have a maximum duration (15, 30, now 60 minutes); an app that does
not reconnect just stops. An idle-timeout response is not a user turn.
"""
    fix = """
Watch expires_at and reconnect (restoring the conversation) before it; do not
count idle-timeout responses as user turns.
"""
    sources = ("openai/openai-realtime-api-beta #23, #83", "twilio-samples/speech-assistant-openai-realtime-api-python #10",
               "fuwei007/OpenAIIOSRealtimeAPIDemo #4", "twilio-samples/live-translation-openai-realtime-api #15",
               "pollen-robotics/reachy_mini_conversation_app #134", "openai/openai-agents-js #1278",
               "pipecat-ai/pipecat #3170", "livekit/agents #1252", "openai/openai-agents-python PR #1505")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.expired: Any = None
        self.idle: list[Any] = []
        self.idle_resp: dict[int, int] = {}

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        if ctype == "input_audio_buffer.timeout_triggered":
            self.idle.append(ev)
            return None
        if ctype == "response.created":
            if self.idle and self.idle[-1].index not in self.idle_resp:
                self.idle_resp[self.idle[-1].index] = ev.index
            return None
        err = error_fields(obj)
        if err.get("code") == "session_expired" or "maximum duration" in (err.get("message") or ""):
            st.explain(ev.index)
            self.expired = ev
            return [self.on(ev, f"session expired after {st.session_age(ev.t) / 60:.1f} min"
                                + self._expires(st) + f": {q(err.get('message'), 100)}")]
        return None

    def _expires(self, st: SessionState) -> str:
        started = st.effective and num(st.effective.get("expires_at"))
        return f" (expires_at {st.expires_at:.0f})" if st.expires_at is not None and started is not None else ""

    def finish(self, st: SessionState) -> list[Finding] | None:
        out = []
        for ev in self.idle:
            r = self.idle_resp.get(ev.index)
            out.append(self.on(ev, "idle timeout fired (timeout_triggered)" + (
                f"; it caused the response at #{r}: not a user turn" if r is not None else ""),
                [r] if r is not None else [], "info"))
        c = st.close
        if c is not None and c.code == 1001 and c.by == "server" and self.expired is None:
            t = c.t if c.t is not None else st.end_t
            out.append(self.at(None, t, None, f"the server closed with 1001 (going away) {q(c.reason or '')} after "
                                              f"{st.session_age(t) / 60:.1f} min: session expiry?"))
        return out


class ConnectionAndErrors(Rule):
    code = "RT017"
    name = "connection-and-errors"
    severity = "warning"
    title = "refused upgrade, abnormal close, unexplained error events"
    types = frozenset({"error"})
    meaning = """
An upgrade the server refused (401/403... with the body's error code: error),
a close from the server with a code other than 1000/1001, a recording cut
short (info), and every error event no other rule accounts for (with its code
and the client event it names).
"""
    why = """
Errors the app does not log are the usual reason a voice agent "just stops";
a refused upgrade means no session at all.
"""
    fix = """
Log every error event with its event_id and the client event it names; for
401/403 check the key, project and model access.
"""
    sources = ("PROTOCOL.md (upgrade refused, close 4000)", "livekit/agents PR #2967")

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        if ev.index in st.explained:
            return None
        err = error_fields(obj)
        cause = st.cause_of(err)
        what = " ".join(x for x in (err.get("type"), err.get("code")) if x) or "error"
        if err.get("param"):
            what += f" param={err['param']}"
        by = f"; caused by #{cause[0]} {cause[1]}" if cause else ""
        return [self.on(ev, f"{what}: {q(err.get('message'), 160)}{by}", [cause[0]] if cause else [])]

    def finish(self, st: SessionState) -> list[Finding] | None:
        out = []
        hs = st.handshake
        if hs is not None and hs.status is not None and hs.status != 101:
            body = hs.response_body or b""
            code = msg = None
            try:
                e = d(d(json.loads(body)).get("error"))
                code, msg = s(e.get("code")), s(e.get("message"))
            except (ValueError, UnicodeDecodeError, RecursionError):
                pass
            text = f"upgrade refused: HTTP {hs.status} {hs.reason or ''}".rstrip()
            if code or msg:
                text += f", {code or '?'}: {q(msg or '', 120)}"
            elif body:
                text += f", body {q(body.decode('utf-8', 'replace'), 120)}"
            if hs.status in (401, 403):
                text += " (check the key, the project and access to the model)"
            out.append(self.at(None, 0.0, None, text, severity="error"))
        c = st.close
        if c is not None:
            t = c.t if c.t is not None else st.end_t
            if c.by == "server" and c.code not in (None, 1000, 1001, 1009, 4000):
                out.append(self.at(None, t, None, f"the server closed with {c.code} {q(c.reason or '')}"))
            if c.error:
                out.append(self.at(None, t, None, f"the connection ended with an error: {q(c.error, 160)}"))
        if st.cut_short:
            out.append(self.at(None, st.end_t, None, "the recording was cut short (the recorder stopped mid-session)",
                               severity="info"))
        return out
