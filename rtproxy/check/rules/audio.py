"""Audio: truncates (RT002), barge-in (RT003), commits (RT005), formats and rates (RT006),
message size (RT015), echo (RT019), VAD turns that never end (RT020)."""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from rtproxy.check.finding import Finding
from rtproxy.check.rules.base import Rule, q
from rtproxy.check.state import Item, SessionState, d, error_fields, num, s, sid
from rtproxy.protocol.formats import AudioFormat, audio_format_from_session, parse_format

__all__ = ["TruncateAudio", "BargeInWithoutTruncate", "CommitTooShort", "AudioFormatMismatch",
           "MessageSize", "Echo", "SpeechNeverStopped"]


def _fmt(f: AudioFormat | None) -> str:
    if f is None:
        return "?"
    return f"{f.codec} {f.rate} Hz" if f.codec == "pcm16" else f.codec


class TruncateAudio(Rule):
    code = "RT002"
    name = "bad-truncate"
    severity = "error"
    title = "conversation.item.truncate past the audio received, before any, or of the wrong item"
    types = frozenset({"conversation.item.truncate", "error"})
    meaning = """
A conversation.item.truncate whose audio_end_ms is past the assistant audio
the client had received for that item and content part (decoded bytes in the
output format in force), or that truncates an item with no audio yet (0 ms,
before the first delta), an item that is not assistant audio (a user message,
a function call), or an item the session never announced. Also a truncate
that cuts an item whose audio finished playing long before (no interruption:
it removes audio the user heard). Joined to the server's error when one
follows ("Audio content of N ms is already shorter than M ms",
unsupported_content_type).
"""
    why = """
The server refuses the truncate, keeps the whole assistant text, and the model
believes it said what the user never heard (it repeats itself or contradicts
the user); a truncate of a non-audio item has killed agents.
"""
    fix = """
Compute audio_end_ms from the audio actually played (bytes played / bytes per
ms of the output format), never from wall-clock time, clamp it to the audio
received, and truncate only the item currently playing; skip the truncate when
no audio has been played yet.
"""
    sources = ("twilio-samples/speech-assistant-openai-realtime-api-python #45", "openclaw/openclaw #138592, PR #125502",
               "pipecat-ai/pipecat PR #931, #2106", "openai/openai-agents-python #2370, PR #2374, #2385, PR #4122",
               "livekit/agents #1016, #1050, PR #6158 (fixes #6157), PR #6249")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.open: dict[int, tuple[Any, str, list[int], list[int]]] = {}
        self.last: int | None = None

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        o = d(obj)
        if ctype == "error":
            err = error_fields(obj)
            msg = err.get("message") or ""
            if not ("already shorter than" in msg or err.get("code") == "unsupported_content_type"
                    or "can be truncated" in msg or (err.get("param") or "").startswith("audio_end_ms")):
                return None
            cause = st.cause_of(err)
            ti = cause[0] if cause and cause[1] == "conversation.item.truncate" else self.last
            st.explain(ev.index)
            if ti is not None and ti in self.open:
                self.open[ti][3].append(ev.index)
                return None
            return [self.on(ev, f"the server refused a truncate: {q(msg, 160)}", [ti] if ti is not None else [])]
        if obj is None:
            return None
        self.last = ev.index
        iid = sid(o.get("item_id"))
        end = num(o.get("audio_end_ms"))
        ci = o.get("content_index", 0)
        ci = ci if isinstance(ci, int) and not isinstance(ci, bool) else 0
        it = st.items.get(iid or "")
        problem = self._problem(it, iid, ci, end, ev.t)
        if problem is None:
            return None
        rel = [it.index] if it is not None and it.announced else []
        if problem[1] != self.severity:
            return [self.on(ev, problem[0], rel, problem[1])]
        self.open[ev.index] = (ev, problem[0], rel, [])
        return None

    def _problem(self, it: Item | None, iid: str | None, ci: int, end: float | None, t: float) -> tuple[str, str] | None:
        if iid is None:
            return ("truncate without an item_id", "error")
        if it is None:
            return (f"truncate of item {iid}, which this session never announced (a stale or wrong item_id)", "error")
        if it.kind not in (None, "message") or it.role not in (None, "assistant"):
            what = it.kind if it.kind != "message" else f"{it.role} message"
            return (f"truncate of item {iid}, a {what}: only assistant audio can be truncated", "error")
        if end is None:
            return None  # a bad audio_end_ms is RT018's
        got = it.audio_ms.get(ci, 0.0)
        if got == 0.0:
            return (f"truncate of item {iid} at {end:g} ms before any audio was received for it "
                    f"(content_index {ci})", "error")
        if end > got + self.options.truncate_tolerance_ms:
            return (f"truncate of item {iid} at {end:g} ms, {end - got:.0f} ms past the {got:.0f} ms of audio "
                    f"received", "error")
        if (it.play_end is not None and t - it.play_end > self.options.stale_truncate_s
                and end < got - self.options.truncate_tolerance_ms):
            return (f"truncate of item {iid} at {end:g} ms, {t - it.play_end:.1f} s after its {got:.0f} ms of "
                    "audio finished playing: no interruption, it cuts audio the user heard", "warning")
        return None

    def finish(self, st: SessionState) -> list[Finding] | None:
        out = []
        for ev, msg, rel, errs in self.open.values():
            if errs:
                msg += f"; refused by the server (error #{errs[0]})"
            out.append(self.on(ev, msg, rel + errs))
        return out


class BargeInWithoutTruncate(Rule):
    code = "RT003"
    name = "barge-in-without-truncate"
    severity = "warning"
    title = "barge-in without truncate"
    types = frozenset({"input_audio_buffer.speech_started", "conversation.item.truncate", "response.cancel",
                       "output_audio_buffer.clear"})
    meaning = """
The server detected user speech (input_audio_buffer.speech_started) while
assistant audio of a response was still arriving, or still playing (audio
received minus the wall time since it started), and the client sent no
conversation.item.truncate, response.cancel or output_audio_buffer.clear after
it (before the next speech_started).
"""
    why = """
The server's context keeps the whole answer while the user heard only part
of it, or stale audio keeps playing over the user. With interrupt_response the
server cancels generation, but only a truncate tells it what was heard.
"""
    fix = """
On speech_started: stop playback, then send conversation.item.truncate with
the item_id playing and audio_end_ms = the audio actually played.
"""
    sources = ("openai/openai-agents-python #2009", "espressif/esp-webrtc-solution #20", "openclaw/openclaw PR #137006")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.pending: tuple[Any, Item, float, float] | None = None
        self.found: list[Finding] = []

    def _close(self) -> None:
        if self.pending is not None:
            ev, it, played, got = self.pending
            self.found.append(self.on(ev, f"user speech started while item {it.id} was playing ({played:.0f} ms of "
                                          f"{got:.0f} ms played); no truncate or cancel followed",
                                      [it.first_audio_index] if it.first_audio_index is not None else []))
            self.pending = None

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        if ctype != "input_audio_buffer.speech_started":
            self.pending = None
            return None
        self._close()
        t = ev.t
        for it in reversed(st.audio_items):
            arriving = not it.audio_done and it.response_id in st.open
            playing = it.play_end is not None and it.play_end > t + 0.05
            if (arriving or playing) and it.first_audio_t is not None:
                got = it.total_audio_ms
                played = min(got, (t - it.first_audio_t) * 1000.0)
                self.pending = (ev, it, played, got)
                break
        return None

    def finish(self, st: SessionState) -> list[Finding] | None:
        self._close()
        return self.found


class CommitTooShort(Rule):
    code = "RT005"
    name = "commit-too-short"
    severity = "error"
    title = "input_audio_buffer.commit of an empty or too short buffer"
    types = frozenset({"input_audio_buffer.commit", "error"})
    meaning = """
A client input_audio_buffer.commit with less than min_commit_ms (100 ms) of
audio appended since the last commit, clear or server commit (bytes to ms in
the input format in force). Joined to input_audio_buffer_commit_empty.
"""
    why = """
The server refuses it ("buffer too small. Expected at least 100ms of audio"),
so the user's turn is lost; with server VAD the server has already committed
the buffer, and a manual commit right after always fails.
"""
    fix = """
Commit only when at least 100 ms were appended since the last commit; with
server VAD let the server commit; after a reconnect, do not commit before
appending.
"""
    sources = ("betalgo/openai #674", "openai/openai-agents-js #748")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.open: dict[int, list[Any]] = {}
        self.last: int | None = None

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        if ctype == "input_audio_buffer.commit":
            self.last = ev.index
            if st.input_ms < self.options.min_commit_ms:
                self.open[ev.index] = [ev, f"commit of {st.input_ms:.1f} ms of input audio (the server needs at least "
                                           f"{self.options.min_commit_ms:g} ms)", []]
            return None
        err = error_fields(obj)
        if err.get("code") != "input_audio_buffer_commit_empty" and "buffer too small" not in (err.get("message") or ""):
            return None
        st.explain(ev.index)
        cause = st.cause_of(err)
        ci = cause[0] if cause else self.last
        if ci in self.open:
            self.open[ci][2].append(ev.index)  # type: ignore[index]
            return None
        return [self.on(ev, f"the server refused a commit: {q(err.get('message'), 160)}", [ci] if ci is not None else [])]

    def finish(self, st: SessionState) -> list[Finding] | None:
        out = []
        for ev, msg, errs in self.open.values():
            if errs:
                msg += f"; refused (error #{errs[0]} input_audio_buffer_commit_empty)"
            out.append(self.on(ev, msg, errs))
        return out


class AudioFormatMismatch(Rule):
    code = "RT006"
    name = "audio-format"
    severity = "warning"
    title = "audio format asked vs reported, bad rate, or audio at the wrong rate"
    types = frozenset({"session.update", "session.updated", "transcription_session.update",
                       "transcription_session.updated", "input_audio_buffer.append", "error"})
    meaning = """
An audio format asked for in session.update that session.updated does not
report; a PCM rate other than 24000 Hz; a format name the protocol does not
define (it is silently ignored); a format changed after audio already flowed
in that direction; input audio appended at a byte rate that does not fit the
format (16 kHz sent as 24 kHz plays at 2/3 of real time: cumulative append
audio ms against wall time over continuous streaming); PCM16 appends with an
odd number of bytes.
"""
    why = """
A wrong format or rate gives static, chipmunk or slowed audio, corrupted
transcripts and a model that stops responding; format errors are often
silent (the server keeps pcm16).
"""
    fix = """
Send the format the audio really is in, in every session.update (SDK
defaults leak audio/pcm into G.711 sessions), resample to 24 kHz for
audio/pcm, and check session.updated echoes what you asked for.
"""
    sources = ("openai/openai-realtime-api-beta #18, #8", "Azure-Samples/aoai-realtime-audio-sdk #126, #95",
               "openai/openai-agents-js PR #1366, PR #1700", "antoinedc/MantaUI PR #1196",
               "BerriAI/litellm PR #40617, #40563", "openai/openai-agents-python #1941")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.asked: deque[tuple[Any, AudioFormat | None, AudioFormat | None]] = deque()
        self.odd: list[Any] = []
        self.seg_start: float | None = None
        self.seg_first: int | None = None
        self.seg_last_t = 0.0
        self.seg_ms = 0.0
        self.seg_last_ms = 0.0
        self.total_ms = 0.0
        self.total_s = 0.0
        self.first_seg: int | None = None
        self.seg_fmt: AudioFormat | None = None

    def _end_segment(self) -> None:
        if self.seg_start is None:
            return
        span = self.seg_last_t - self.seg_start + self.seg_last_ms / 1000.0
        if span >= self.options.rate_min_segment_s:
            self.total_ms += self.seg_ms
            self.total_s += span
            if self.first_seg is None:
                self.first_seg = self.seg_first
        self.seg_start = None

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        if ctype == "input_audio_buffer.append":
            n = st.nbytes
            fmt = ev.format
            ms = fmt.duration_ms(n)
            if n % 2 and fmt.codec == "pcm16":
                self.odd.append(ev)
            t = ev.t
            gap = max(1.0, 5 * self.seg_last_ms / 1000.0)
            if self.seg_start is None or t - self.seg_last_t > gap or fmt is not self.seg_fmt and fmt != self.seg_fmt:
                self._end_segment()
                self.seg_start, self.seg_first, self.seg_ms, self.seg_fmt = t, ev.index, 0.0, fmt
            self.seg_ms += ms
            self.seg_last_t, self.seg_last_ms = t, ms
            return None
        o = d(obj)
        out: list[Finding] = []
        if ctype in ("session.update", "transcription_session.update"):
            sess = d(o.get("session"))
            inp, outp = audio_format_from_session(sess)
            out += self._raw_formats(ev, sess)
            if inp is not None and st.audio_in_ms > 0 and inp != st.input_format:
                out.append(self.on(ev, f"input format changed to {_fmt(inp)} after {st.audio_in_ms / 1000:.1f} s of "
                                       f"{_fmt(st.input_format)} input audio"))
            if outp is not None and st.audio_out_ms > 0 and outp != st.output_format:
                out.append(self.on(ev, f"output format changed to {_fmt(outp)} after {st.audio_out_ms / 1000:.1f} s "
                                       f"of {_fmt(st.output_format)} output audio"))
            if inp is not None or outp is not None:
                self.asked.append((ev, inp, outp))
            return out
        if ctype in ("session.updated", "transcription_session.updated"):
            if not self.asked:
                return None
            upd, a_in, a_out = self.asked.popleft()
            e_in, e_out = audio_format_from_session(d(o.get("session")))
            for side, a, e in (("input", a_in, e_in), ("output", a_out, e_out)):
                if a is not None and e is not None and a != e:
                    out.append(self.on(ev, f"{side} audio: asked {_fmt(a)} (#{upd.index}), the server reports {_fmt(e)}",
                                       [upd.index]))
            return out
        err = error_fields(obj)
        if "format" in (err.get("param") or "") and self.asked:
            st.explain(ev.index)
            upd = self.asked.pop()[0]
            out.append(self.on(ev, f"the server refused the audio format asked for (#{upd.index}): "
                                   f"{err.get('code')} param={err.get('param')} {q(err.get('message'), 160)}",
                               [upd.index], "error"))
        return out

    def _raw_formats(self, ev: Any, sess: dict[str, Any]) -> list[Finding]:
        out = []
        audio = d(sess.get("audio"))
        cands = [(f"session.audio.{side}.format", d(audio.get(side)).get("format", ...)) for side in ("input", "output")]
        cands += [(f"session.{k}", sess.get(k, ...)) for k in ("input_audio_format", "output_audio_format")]
        for path, v in cands:
            if v is ... or v is None:
                continue
            if isinstance(v, dict) and v.get("type") == "audio/pcm" and "rate" in v:
                rate = num(v.get("rate"))
                if rate is not None and rate != 24000:
                    out.append(self.on(ev, f"{path}.rate is {rate:g}: only 24000 Hz is supported for audio/pcm"))
                    continue
                if rate is None:
                    continue  # not a number: RT018
            if parse_format(v) is None:
                out.append(self.on(ev, f"{path} {q(v)} is not an audio format the protocol defines "
                                       "(pcm16, g711_ulaw, g711_alaw; GA audio/pcm, audio/pcmu, audio/pcma)"))
        return out

    def finish(self, st: SessionState) -> list[Finding] | None:
        self._end_segment()
        out = []
        if self.odd:
            ev = self.odd[0]
            out.append(self.on(ev, f"{len(self.odd)} PCM16 append(s) with an odd number of bytes "
                                   f"(first: {ev.audio_bytes} bytes): half a sample, the stream is misaligned",
                               [e.index for e in self.odd[1:20]]))
        if self.total_s >= self.options.rate_min_segment_s and self.first_seg is not None:
            ratio = self.total_ms / (self.total_s * 1000.0)
            tol = self.options.rate_tolerance
            if abs(ratio - 1.0) > tol:
                fmt = st.input_format
                guess = ""
                for rate in (8000, 16000, 22050, 44100, 48000):
                    if fmt.codec == "pcm16" and abs(ratio - rate / fmt.rate) < 0.04:
                        guess = f": {rate} Hz audio sent as {fmt.rate} Hz?"
                if ratio < 1.0 or guess:
                    out.append(self.at(self.first_seg, 0.0, "input_audio_buffer.append",
                                       f"input audio appended at {ratio:.2f}x real time ({self.total_ms / 1000:.1f} s "
                                       f"of {_fmt(fmt)} audio in {self.total_s:.1f} s of continuous streaming){guess}"))
        return out


class MessageSize(Rule):
    code = "RT015"
    name = "message-size"
    severity = "error"
    title = "message over the size limit; close 1009"
    types = None
    meaning = """
A client message (an input_audio_buffer.append) over 15 MiB, the API's limit;
a server message over 1 MiB (clients with the usual 1 MiB frame limit, such as
websockets' default, fail on it: info); a close with code 1009 (message too
big).
"""
    why = """
Oversized frames close the connection (1009) and the session is lost; the
limit is often hit first in the client library, not the API.
"""
    fix = """
Send audio in chunks of 20-100 ms; raise the client's max frame size
(websockets max_size=None) for large server events.
"""
    sources = ("openai-python input_audio_buffer_append_event.py (15 MiB)", "elevenlabs/elevenlabs-python PR #482",
               "openai/openai-agents-python PR #1500", "openai/openai-agents-js #501")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.big_server = False
        self.largest: dict[str, Any] = {}
        self.largest_size = {"client": -1, "server": -1}

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        n = st.nbytes
        if n:
            # audio events: base64 size plus a head that holds ids only; exact only near a limit
            approx = 4 * ((n + 2) // 3) + 512
            if approx < self.options.client_frame_limit_bytes and approx <= self.largest_size[ev.side]:
                return None
        size = ev.size
        side = ev.side
        if size > self.largest_size[side]:
            self.largest_size[side] = size
            self.largest[side] = ev
        if side == "client" and size > self.options.max_message_bytes:
            return [self.on(ev, f"{ev.type or 'message'} of {size / 1048576:.1f} MiB, over the "
                                f"{self.options.max_message_bytes / 1048576:g} MiB limit")]
        if side == "server" and size > self.options.client_frame_limit_bytes and not self.big_server:
            self.big_server = True
            return [self.on(ev, f"server {ev.type or 'message'} of {size / 1048576:.2f} MiB: clients with a "
                                f"{self.options.client_frame_limit_bytes / 1048576:g} MiB frame limit fail on it",
                            severity="info")]
        return None

    def finish(self, st: SessionState) -> list[Finding] | None:
        c = st.close
        if c is None or c.code != 1009:
            return None
        who = {"client": "server", "server": "client"}.get(c.by or "", None)
        ev = self.largest.get(who) if who else max(self.largest.values(), key=lambda e: e.size, default=None)
        where = f"; the largest {ev.side} message was #{ev.index} ({ev.size:,} B)" if ev is not None else ""
        return [self.at(None, c.t if c.t is not None else st.end_t, None,
                        f"closed with 1009 (message too big) by {c.by or '?'} {q(c.reason or '')}{where}",
                        [ev.index] if ev is not None else [])]


class Echo(Rule):
    code = "RT019"
    name = "echo"
    severity = "warning"
    title = "the model hears itself (echo)"
    types = frozenset({"input_audio_buffer.speech_started", "response.done",
                       "conversation.item.input_audio_transcription.completed"})
    meaning = """
User speech detected within echo_window_ms of a response's first audio
(while it plays), responses repeatedly cancelled with reason turn_detected,
or a user transcript that repeats the assistant's last transcript.
"""
    why = """
Without echo cancellation the assistant's own voice reaches the microphone:
it interrupts itself and talks to itself.
"""
    fix = """
Use echo cancellation (headphones, WebRTC AEC), mute the microphone while
playing, or raise the VAD threshold / use semantic VAD with low eagerness.
"""
    sources = ("openai/openai-realtime-api-beta #48", "AIProxyTeam/AIProxySwift #240",
               "aws-samples/amazon-nova-samples #71")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.cancelled_run: list[int] = []
        self.reported_run = False
        self.last_assistant = ""
        self._last_norm: str | None = None

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        o = d(obj)
        if ctype == "input_audio_buffer.speech_started":
            for it in reversed(st.audio_items[-1:]):
                if it.first_audio_t is not None and it.play_end is not None and it.play_end > ev.t:
                    dt = (ev.t - it.first_audio_t) * 1000.0
                    if 0 <= dt < self.options.echo_window_ms:
                        return [self.on(ev, f"user speech detected {dt:.0f} ms after item {it.id} started playing: "
                                            "echo of the assistant's voice?", [it.first_audio_index or it.index])]
            return None
        if ctype == "response.done":
            r = d(o.get("response"))
            for out in r.get("output") or () if isinstance(r.get("output"), list) else ():
                for c in d(out).get("content") or () if isinstance(d(out).get("content"), list) else ():
                    tr = s(d(c).get("transcript"))
                    if tr:
                        self.last_assistant, self._last_norm = tr, None
            reason = s(d(r.get("status_details")).get("reason"))
            if s(r.get("status")) == "cancelled" and reason == "turn_detected":
                self.cancelled_run.append(ev.index)
                if len(self.cancelled_run) == 3 and not self.reported_run:
                    self.reported_run = True
                    return [self.on(ev, "3 responses in a row cancelled by detected speech (turn_detected)",
                                    self.cancelled_run[:-1])]
            else:
                self.cancelled_run = []
            return None
        tr = s(o.get("transcript"))
        if not tr or not self.last_assistant or len(tr) < 12:
            return None
        if self._last_norm is None:
            self._last_norm = _echo_window(_norm(self.last_assistant))
        if _norm(tr) in self._last_norm:
            return [self.on(ev, f"user transcript {q(tr)} repeats the assistant's last answer", severity="info")]
        return None


_PUNCT = re.compile(r"[^\w\s]+")

#: Characters of the assistant's (normalized) transcript a user transcript is looked
#: for in, from its start and from its end. A spoken answer is a few thousand; a
#: crafted 10 MB one searched once per user transcript made the check hang.
ECHO_WINDOW_CHARS = 16_000


def _norm(text: str) -> str:
    return " ".join(_PUNCT.sub("", text.lower()).split())


def _echo_window(norm: str) -> str:
    """A normalized transcript, or its first and last :data:`ECHO_WINDOW_CHARS` when
    longer, joined by a NUL (which no normalized text holds, so nothing matches across it)."""
    if len(norm) <= 2 * ECHO_WINDOW_CHARS:
        return norm
    return norm[:ECHO_WINDOW_CHARS] + "\0" + norm[-ECHO_WINDOW_CHARS:]


class SpeechNeverStopped(Rule):
    code = "RT020"
    name = "speech-never-stopped"
    severity = "warning"
    title = "VAD turn that never ends"
    types = frozenset({"input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"})
    meaning = """
An input_audio_buffer.speech_started with no speech_stopped before the next
speech_started or the end of the recording (when the session went on for more
than response_timeout_s).
"""
    why = """
The turn never ends, so no response comes: VAD settings too sensitive (a
partial turn_detection object), background noise, or a silence_duration_ms the
server ignores.
"""
    fix = """
Send a complete turn_detection object; raise threshold or use semantic VAD;
check the input is really silent between utterances (noise suppression).
"""
    sources = ("twilio-samples/speech-assistant-openai-realtime-api-python #6", "openai/openai-realtime-console #35",
               "livekit/agents #2598", "twilio-samples/speech-assistant-openai-realtime-api-node #19")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.started: Any = None
        self.found: list[Finding] = []

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        if ctype == "input_audio_buffer.speech_stopped":
            self.started = None
            return None
        prev = self.started
        self.started = ev
        if prev is not None:
            return [self.on(prev, f"speech_started with no speech_stopped before the next speech_started "
                                  f"(#{ev.index}, {ev.t - prev.t:.1f} s later)", [ev.index])]
        return None

    def finish(self, st: SessionState) -> list[Finding] | None:
        ev = self.started
        if ev is not None and st.end_t - ev.t > self.options.response_timeout_s:
            return [self.on(ev, f"speech_started with no speech_stopped in the {st.end_t - ev.t:.1f} s to the end")]
        return None
