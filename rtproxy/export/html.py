"""The self-contained HTML timeline of a recording (pure: entries in, text out).

:class:`ReportBuilder` is fed the entries of :func:`rtproxy.view.timeline.annotate`
one by one (it runs a :class:`rtproxy.view.summary.Summarizer` and a
:class:`rtproxy.view.audio.ConversationAudio` alongside), then :meth:`ReportBuilder.html`
returns one HTML document: inline CSS and JS, no network. The page draws the
timeline on a canvas, so tens of thousands of events stay fluid; each event's
JSON (audio replaced by a note of its size) is embedded once, and audio is
embedded as one clip per stretch of speech, decoded only when played: Opus in
WebM at speech quality by default (:mod:`rtproxy.export.speech`, about 2 KB
a second), 24 kHz PCM WAV as recorded with ``audio="full"``, or none. The
page's data and event JSON are embedded deflated (base64), and inflated by the
browser's own ``DecompressionStream`` when the page opens. The findings of
``rtproxy check`` (given with :meth:`ReportBuilder.set_findings`) are a table
and marks on the timeline.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import re
import zlib
from typing import Any

from rtproxy.view.audio import RATE, AudioSegment, ConversationAudio, render_track, wav_bytes
from rtproxy.io.audiocodec import peak
from rtproxy.io.format import Recording
from rtproxy.io.progress import Progress
from rtproxy.protocol.events import canonical_event_type, shown_type
from rtproxy.view.events import Handshake, clean_header, jsonable
from rtproxy.view.summary import SessionSummary, Summarizer, event_head
from rtproxy.view.timeline import Entry

__all__ = ["ReportBuilder", "KINDS", "SEVERITY_COLOURS", "event_kind", "MAX_JSON_CHARS"]

#: Event kinds, in the order of their colours in the page's legend.
KINDS: list[tuple[str, str]] = [
    ("session", "#6a5acd"),
    ("audio in", "#2e8b57"),
    ("input buffer", "#66c2a5"),
    ("conversation", "#8c6d31"),
    ("response", "#1f77b4"),
    ("audio out", "#ff7f0e"),
    ("text", "#9467bd"),
    ("function", "#e377c2"),
    ("error", "#d62728"),
    ("rate limits", "#bbbbbb"),
    ("other", "#7f7f7f"),
    ("binary", "#000000"),
]
_KIND_INDEX = {k: i for i, (k, _) in enumerate(KINDS)}

#: The colour of a finding's mark on the timeline, by severity.
SEVERITY_COLOURS: dict[str, str] = {"error": "#d62728", "warning": "#f0a30a", "info": "#1f9bcf"}

#: Longest event JSON kept for the page (longer ones are cut, with a note).
MAX_JSON_CHARS = 20000
#: The page's event JSON in all (a dense hour holds 14 million characters); past it,
#: each event keeps :data:`SPENT_JSON_CHARS` (a crafted file's 100,000 events of 20 KB
#: once took the export out of memory).
PAGE_JSON_CHARS = 64_000_000
SPENT_JSON_CHARS = 256
#: Distinct event type names the page lists (a session has a few dozen); the
#: events of any further name are listed under :data:`OTHER_TYPES`.
MAX_PAGE_TYPES = 1024
OTHER_TYPES = "(one of many other types)"
#: What ``audio=`` may be: no audio, Opus at speech quality (the default), or PCM as recorded.
AUDIO_MODES = ("none", "speech", "full")
#: The media type of the page's clips, per audio mode.
CLIP_TYPES = {"none": None, "speech": "audio/webm", "full": "audio/wav"}
#: Segments closer than this are one playable bar.
_BAR_GAP_SAMPLES = RATE // 4
_BAR_MAX_SAMPLES = RATE * 60


def event_kind(typ: str | None, is_text: bool) -> str:
    """The colour group of an event type."""
    if not is_text:
        return "binary"
    t = canonical_event_type(typ) or ""
    if t == "error":
        return "error"
    if t.startswith(("session.", "transcription_session.")):
        return "session"
    if t == "input_audio_buffer.append":
        return "audio in"
    if t.startswith(("input_audio_buffer.", "output_audio_buffer.")):
        return "input buffer"
    if "input_audio_transcription" in t or "transcript" in t or "output_text" in t:
        return "text"
    if "function_call" in t or "mcp" in t:
        return "function"
    if t.startswith("conversation."):
        return "conversation"
    if t == "response.output_audio.delta":
        return "audio out"
    if t.startswith("response."):
        return "response"
    if t == "rate_limits.updated":
        return "rate limits"
    return "other"


@functools.lru_cache(maxsize=4096)
def _audio_note(n: int) -> bytes:
    """``[n bytes of audio]``, what the page shows in place of an audio value (made once
    per size: a session's chunks come in a few)."""
    return f"[{n} bytes of audio]".encode()


def _display_json(payload: bytes | list[bytes], is_text: bool, audio_sizes: list[int] | None = None,
                  limit: int = MAX_JSON_CHARS) -> str:
    """What the page shows for an event: its text with each audio value replaced by a note
    of its size. ``payload``: the text parts (``audio_sizes`` the audio values' sizes
    between them), or the message's payload; binary messages as base64, cut at 512 bytes."""
    if not is_text:
        data = payload if isinstance(payload, bytes) else b"".join(payload)
        return f"(binary message, {len(data)} bytes) base64: {base64.b64encode(data[:512]).decode()}" + (
            "…" if len(data) > 512 else ""
        )
    if isinstance(payload, (bytes, bytearray)):
        text = bytes(payload).decode("utf-8", "replace")
    elif audio_sizes is not None:
        if len(payload) == 2 and len(audio_sizes) == 1:  # the usual: one audio value
            text = (payload[0] + _audio_note(audio_sizes[0]) + payload[1]).decode("utf-8", "replace")
        else:
            parts = [payload[0]]
            for n, p in zip(audio_sizes, payload[1:]):
                parts.append(_audio_note(n))
                parts.append(p)
            text = b"".join(parts).decode("utf-8", "replace")
    else:
        parts = []
        for i, p in enumerate(payload):
            parts.append(f"[{len(p)} bytes of audio]".encode() if i % 2 else p)
        text = b"".join(parts).decode("utf-8", "replace")
    if len(text) > limit:
        text = text[:limit] + f"… ({len(text) - limit} more characters not shown" + (
            "; the page's room for event JSON is used up: rtproxy show --json has it whole)"
            if limit < MAX_JSON_CHARS else ")")
    return text


#: Peak level below which a segment is left out of the page (about -44 dBFS).
QUIET_PEAK = 200


def _audible(pcm: bytes) -> bool:
    return peak(pcm) >= QUIET_PEAK


_Bar = tuple[int, int, list[AudioSegment]]  # first sample, end sample, its segments


class _BarMaker:
    """Groups segments, in timeline order, into playable bars: segments closer than
    a quarter second are one bar, at most a minute long."""

    def __init__(self) -> None:
        self.bar: _Bar | None = None

    def add(self, s: AudioSegment) -> _Bar | None:
        """Take ``s``; returns the bar it ended, if it starts a new one."""
        bar = self.bar
        if bar is not None and s.start - bar[1] <= _BAR_GAP_SAMPLES and s.end - bar[0] <= _BAR_MAX_SAMPLES:
            bar[2].append(s)
            self.bar = (bar[0], max(bar[1], s.end), bar[2])
            return None
        self.bar = (s.start, s.end, [s])
        return bar

    def flush(self) -> _Bar | None:
        bar, self.bar = self.bar, None
        return bar


def _bars(segments: list[AudioSegment]) -> list[_Bar]:
    maker = _BarMaker()
    out = [b for b in map(maker.add, segments) if b is not None]
    last = maker.flush()
    return out + [last] if last is not None else out


def _bar_key(bar: _Bar) -> tuple[Any, ...]:
    """What a bar's clip is made of: its span and, per segment, its place, message and length
    (a segment's samples are the first ones of its message's audio)."""
    a, b, group = bar
    return (a, b, *((x.start, x.index, len(x.pcm)) for x in group))


class _Clips:
    """The page's clips: Opus encoded in worker processes as bars are given (speech,
    :class:`rtproxy.export.speech.ClipEncoder`), or WAV (full). A clip is made once
    for a bar, whoever asks for it."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._encoder: Any = None
        self._wav: list[bytes] = []
        self._by_key: dict[tuple[Any, ...], int] = {}

    def add(self, bar: _Bar) -> int:
        """Start making the clip of ``bar`` (unless it was made already); its id."""
        key = _bar_key(bar)
        cid = self._by_key.get(key)
        if cid is not None:
            return cid
        a, b, group = bar
        track = bytes(render_track([AudioSegment(x.side, x.start - a, x.pcm, x.index) for x in group], b - a))
        if self.mode == "speech":
            if self._encoder is None:
                from rtproxy.export.speech import ClipEncoder

                self._encoder = ClipEncoder()
            cid = self._encoder.submit(track)
        else:
            self._wav.append(wav_bytes(track, 1, RATE))
            cid = len(self._wav) - 1
        self._by_key[key] = cid
        return cid

    def results(self, ids: list[int], progress: Progress | None) -> list[bytes]:
        if self._encoder is None:
            return [self._wav[i] for i in ids]
        return list(self._encoder.results(ids, progress))

    def close(self) -> None:
        if self._encoder is not None:
            self._encoder.close()


class ReportBuilder:
    """Collects what the page shows; :meth:`feed` every entry, then :meth:`html`."""

    def __init__(self, title: str, *, audio: bool | str = True) -> None:
        self.title = title
        #: "none", "speech" (Opus, the default) or "full" (24 kHz PCM WAV, as recorded).
        self.audio_mode = audio if isinstance(audio, str) else ("speech" if audio else "none")
        if self.audio_mode not in AUDIO_MODES:
            raise ValueError(f"audio mode {audio!r}: expected one of {', '.join(AUDIO_MODES)}")
        self.with_audio = self.audio_mode != "none"
        self.summarizer = Summarizer()
        self.audio = ConversationAudio()
        self.types: list[str] = []
        self._type_index: dict[str, tuple[int, int]] = {}
        self.t: list[float] = []
        self.side: list[int] = []
        self.type: list[int] = []
        self.kind: list[int] = []
        self.size: list[int] = []
        self.json: list[str] = []
        self._json_chars = 0
        self.findings: list[dict[str, Any]] = []
        self.findings_error: str | None = None
        # Clips are made while the recording is read (Opus on the other cores): the user's
        # audio is final as it comes; the assistant's responses are placed ahead as each
        # next one starts, and the end keeps every clip whose bar came out the same.
        self._clips = _Clips(self.audio_mode)
        self._user_bars = _BarMaker()
        self._user_clips: list[tuple[_Bar, int]] = []
        self._ahead_bars = _BarMaker()
        self._responses_seen = 0

    def set_findings(self, findings: list[dict[str, Any]], error: str | None = None) -> None:
        """The findings to show: dicts with the fields of ``rtproxy check --format json``
        (:meth:`rtproxy.check.Finding.to_dict`); ``error``: why there are none (the
        check did not run), shown as a note."""
        self.findings = list(findings)
        self.findings_error = error

    def feed(self, e: Entry) -> None:
        m = e.msg
        head = self.summarizer.feed(e)
        if head is None and m.is_text and self.with_audio and ConversationAudio.wants_head(e.type):
            head = e.event.head_json if e.event is not None else event_head(m)
        if self.with_audio:
            self.audio.feed(e.index, m.t_ns, m.from_client, e.type, head, m.audio)
            if self.audio.user:
                self._take_user()
            if self.audio_mode == "speech" and self.audio.responses != self._responses_seen:
                self._responses_seen = self.audio.responses
                self._place_ahead()
        name = shown_type(e.type) if e.type else ("(binary)" if not m.is_text else "(not JSON)")
        known = self._type_index.get(name)
        if known is None:  # a type's index and colour group, once per type
            if len(self.types) >= MAX_PAGE_TYPES:  # a crafted file's 300,000 names
                name = OTHER_TYPES
                known = self._type_index.get(name)
            if known is None:
                known = self._type_index[name] = (len(self.types), _KIND_INDEX[event_kind(e.type, m.is_text)])
                self.types.append(name)
        self.t.append(round(m.t_ns / 1e6, 3))
        self.side.append(0 if m.from_client else 1)
        self.type.append(known[0])
        self.kind.append(known[1])
        self.size.append(m.size)
        text = _display_json(m.text_parts if m.is_text else m.payload, m.is_text, m.audio_sizes,
                             MAX_JSON_CHARS if self._json_chars < PAGE_JSON_CHARS else SPENT_JSON_CHARS)
        self._json_chars += len(text)
        self.json.append(text)

    def _take_user(self) -> None:
        """Move the user segments placed so far into bars (quiet ones left out: a
        microphone streams all the time); each bar's clip is started once it ends."""
        for x in self.audio.user:
            if _audible(x.pcm):
                bar = self._user_bars.add(x)
                if bar is not None:
                    self._user_clips.append((bar, self._clips.add(bar)))
        self.audio.user.clear()  # held in the bars now (the quiet ones let go)

    def _place_ahead(self) -> None:
        """A response started: start encoding the clips of the assistant's audio before it."""
        for x in self.audio.placed_ahead():
            if _audible(x.pcm):
                bar = self._ahead_bars.add(x)
                if bar is not None:
                    self._clips.add(bar)

    def close(self) -> None:
        """Stop making clips (those not started yet are dropped); :meth:`data` does it when done."""
        self._clips.close()

    def data(self, rec: Recording, progress: Progress | None = None) -> tuple[dict[str, Any], list[str]]:
        """The page's data object and its audio clips (base64 WebM/Opus or WAV, referenced by index)."""
        s: SessionSummary = self.summarizer.finish(rec)
        clips: list[str] = []
        bars = []
        if self.with_audio:
            _, assistant = self.audio.finish()
            last = self._user_bars.flush()
            if last is not None:
                self._user_clips.append((last, self._clips.add(last)))
            placed = self._user_clips + [(bar, self._clips.add(bar))
                                         for bar in _bars([x for x in assistant if _audible(x.pcm)])]
            try:
                encoded = self._clips.results([cid for _, cid in placed], progress)
            finally:
                self.close()  # clips placed ahead that the end did not confirm are dropped
            for k, ((a, b, group), _) in enumerate(placed):
                side = 0 if k < len(self._user_clips) else 1
                bars.append({"side": side, "t0": a * 1000 / RATE, "t1": b * 1000 / RATE, "clip": k, "i": group[0].index})
            clips = [base64.b64encode(c).decode("ascii") for c in encoded]
        hs = Handshake.from_record(rec.handshake)
        responses = [
            {
                "id": r.id, "t0": r.t_start * 1000, "t1": None if r.t_end is None else r.t_end * 1000,
                "status": r.status, "details": jsonable(r.status_details), "audio_ms": round(r.audio_ms, 1),
                "transcript": r.transcript or r.text, "i0": r.index, "i1": r.index_done,
                "calls": [f"{n}({a})" for n, a in r.function_calls],
            }
            for r in s.responses
        ]
        errors = [
            {"i": x.index, "t": x.t * 1000, "type": x.type, "code": x.code, "message": x.message,
             "param": x.param, "cause": x.cause_index, "cause_type": x.cause_type, "matched_by": x.matched_by}
            for x in s.errors
        ]
        findings = sorted((self._finding(f) for f in self.findings), key=lambda f: (f["t"], -1 if f["i"] is None else f["i"]))
        summary = {
            "model": s.model, "url": s.url, "status": s.status, "reason": hs.reason if hs else None,
            "duration_ms": s.duration_s * 1000, "turns": s.turns,
            "messages": {"client": s.messages_client, "server": s.messages_server},
            "audio_s": {"client": round(s.audio_ms_client / 1000, 2), "server": round(s.audio_ms_server / 1000, 2)},
            "close": {"code": s.close_code, "reason": s.close_reason, "by": s.closed_by},
            "truncated": s.truncated, "statuses": s.status_counts(),
            "header": {k: v for k, v in jsonable(clean_header(rec.header)).items()
                       if isinstance(v, (str, int, float, list, type(None)))},
        }
        data = {
            "title": self.title, "summary": summary, "kinds": KINDS, "types": self.types,
            "ev": {"t": self.t, "side": self.side, "type": self.type, "kind": self.kind, "size": self.size},
            "responses": responses, "errors": errors, "bars": bars,
            "findings": findings, "findings_error": self.findings_error, "severity_colours": SEVERITY_COLOURS,
            "clip_type": CLIP_TYPES[self.audio_mode],
        }
        return data, clips

    def _finding(self, f: dict[str, Any]) -> dict[str, Any]:
        """A finding as the page holds it: ``t`` in ms, ``i`` the event (None if it names none of the page's)."""
        i = _index(f.get("event_index"), len(self.t))
        typ = f.get("event_type")
        if typ is None and i is not None:
            typ = self.types[self.type[i]]
        return {"code": str(f.get("code")), "severity": _severity(f.get("severity")), "title": str(f.get("title") or ""),
                "message": str(f.get("message") or ""), "t": _ms(f.get("t")), "i": i,
                "type": None if typ is None else str(typ)}

    def html(self, rec: Recording, progress: Progress | None = None) -> str:
        """The whole page (``progress``: see :mod:`rtproxy.io.progress`)."""
        data, clips = self.data(rec, progress)
        s = data["summary"]
        esc = _html_text
        status_txt = ", ".join(f"{n} {k}" for k, n in s["statuses"].items()) or "none"
        close = s["close"]
        close_txt = "-" if close["code"] is None and not close["by"] else f"{close['code']} {close['reason'] or ''} (by {close['by']})"
        rows = [
            ("Model", s["model"] or "-"),
            ("URL", s["url"] or "-"),
            ("Upgrade", f"HTTP {s['status']} {s['reason'] or ''}"),
            ("Duration", f"{s['duration_ms'] / 1000:.2f} s"),
            ("Turns", str(s["turns"])),
            ("Events", f"{len(self.t)} (client {s['messages']['client']}, server {s['messages']['server']})"),
            ("Responses", f"{len(data['responses'])}: {status_txt}"),
            ("Errors", str(len(data["errors"]))),
            ("Audio", f"user {s['audio_s']['client']:.2f} s, assistant {s['audio_s']['server']:.2f} s"),
            ("Close", close_txt),
            ("Findings", _findings_text(data["findings"], data["findings_error"])),
        ]
        if s["truncated"]:
            rows.append(("Note", "recording was cut short (recorder stopped mid-session)"))
        stripped = s["header"].get("stripped")
        if stripped:
            rows.append(("Redacted copy", "stripped: " + ", ".join(map(str, stripped))))
        summary_html = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
        resp_rows = "".join(
            f'<tr class="resp st-{esc(str(r["status"] or "open"))}" data-i="{r["i1"] if r["i1"] is not None else r["i0"]}">'
            f'<td>{r["t0"] / 1000:.3f} s</td><td>{esc(str(r["id"] or "?"))}</td><td>{esc(str(r["status"] or "open"))}</td>'
            f'<td>{esc(_details(r["details"]))}</td>'
            f'<td>{"" if r["t1"] is None else f"{r["t1"] - r["t0"]:.0f} ms"}</td><td>{r["audio_ms"]:.0f} ms</td>'
            f'<td>{esc("; ".join(r["calls"]) + (" " if r["calls"] else "") + (r["transcript"] or ""))}</td></tr>'
            for r in data["responses"]
        )
        err_rows = "".join(
            f'<tr class="err" data-i="{x["i"]}"><td>{x["t"] / 1000:.3f} s</td>'
            f'<td>{esc(" ".join(str(v) for v in (x["type"], x["code"]) if v))}</td><td>{esc(x["message"] or "")}</td>'
            f'<td>{esc("-" if x["cause"] is None else f"#{x["cause"]} {x["cause_type"]}")}'
            f'{" (error.event_id)" if x["matched_by"] == "event_id" else (" (last client event before)" if x["cause"] is not None else "")}</td></tr>'
            for x in data["errors"]
        )
        find_rows = "".join(
            f'<tr class="fnd sev-{f["severity"]}" data-f="{k}" title="{esc(f["title"])}">'
            f'<td>{esc(f["severity"])}</td><td>{esc(f["code"])}</td><td>{f["t"] / 1000:.3f} s</td>'
            f'<td>{esc(_where(f) + f["message"])}</td></tr>'
            for k, f in enumerate(data["findings"])
        )
        if data["findings_error"] is not None:
            find_rows = f'<tr><td colspan="4">not checked: {esc(data["findings_error"])}</td></tr>'
        legend = "".join(f'<span class="lg"><i style="background:{c}"></i>{esc(k)}</span>' for k, c in KINDS)
        legend += "".join(f'<span class="lg"><i class="dia" style="background:{c}"></i>{esc(sev)} finding</span>'
                          for sev, c in reversed(SEVERITY_COLOURS.items()))
        payload = _packed_json(data)
        texts = _packed_json(self.json)
        clip_tags = "".join(f'<script type="text/plain" id="clip-{i}">{c}</script>' for i, c in enumerate(clips))
        values = {
            "TITLE": esc(self.title), "SUMMARY": summary_html, "NEVENTS": str(len(self.t)),
            "NRESP": str(len(data["responses"])), "NERR": str(len(data["errors"])),
            "NFIND": str(len(data["findings"])),
            "RESPROWS": resp_rows or '<tr><td colspan="7">no responses</td></tr>',
            "ERRROWS": err_rows or '<tr><td colspan="4">no errors</td></tr>',
            "FINDROWS": find_rows or '<tr><td colspan="4">no findings</td></tr>',
            "LEGEND": legend, "CLIPS": clip_tags, "DATA": payload, "TEXTS": texts,
        }
        # One pass, so a transcript that reads "%DATA%" stays text.
        return _SLOT.sub(lambda m: values[m.group(1)], _PAGE)


def _severity(value: Any) -> str:
    return value if value in SEVERITY_COLOURS else "info"


def _ms(t: Any) -> float:
    """A finding's time (seconds) in the page's milliseconds; 0 for anything but a finite number."""
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not (-1e12 < t < 1e12):
        return 0.0
    return round(t * 1000, 3)


def _index(i: Any, n: int) -> int | None:
    """A finding's event index, if it names one of the page's events."""
    return i if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n else None


def _where(f: dict[str, Any]) -> str:
    """``"#12 response.create: "`` (the finding's event), or "" for the handshake or the close."""
    if f["i"] is None:
        return ""
    return f"#{f['i']} {f['type']}: " if f["type"] else f"#{f['i']}: "


def _findings_text(findings: list[dict[str, Any]], error: str | None) -> str:
    if error is not None:
        return f"not checked: {error}"
    if not findings:
        return "none (rtproxy check)"
    n = {sev: sum(1 for f in findings if f["severity"] == sev) for sev in SEVERITY_COLOURS}
    parts = [f"{n['error']} error{'s' * (n['error'] != 1)}", f"{n['warning']} warning{'s' * (n['warning'] != 1)}"]
    if n["info"]:
        parts.append(f"{n['info']} info")
    return ", ".join(parts)


def _details(d: Any) -> str:
    if not d:
        return ""
    if isinstance(d, dict):
        bits = [str(d.get(k)) for k in ("type", "reason") if d.get(k)]
        err = d.get("error")
        if isinstance(err, dict):
            bits.append(str(err.get("code") or err.get("type") or ""))
        return ", ".join(b for b in bits if b)
    return str(d)


_SLOT = re.compile(r"%(TITLE|SUMMARY|NEVENTS|NRESP|NERR|NFIND|RESPROWS|ERRROWS|FINDROWS|LEGEND|CLIPS|DATA|TEXTS)%")


#: Characters written as JSON escapes inside the page's <script> blocks: with no
#: "<" there is no "</script", "<!--" or "<script" to end the element early or
#: put the parser in its script-data-escaped state; ">" and "&" go too (no
#: "-->", no entity), U+2028/U+2029 for older JavaScript parsers, and lone
#: surrogates (an event's JSON may hold "\\ud800") so the page encodes as UTF-8.
_SCRIPT_UNSAFE = re.compile("[<>&\u2028\u2029\ud800-\udfff]")


def _packed_json(obj: Any) -> str:
    """``obj`` as JSON, deflated (zlib) and base64-encoded: for a ``<script type="text/plain">``
    block the page inflates with ``DecompressionStream("deflate")``. Base64 is inert in
    any element; the JSON is ASCII (lone surrogates stay ``\\ud800`` escapes)."""
    text = json.dumps(obj, separators=(",", ":"))
    return base64.b64encode(zlib.compress(text.encode("ascii"), 6)).decode("ascii")


def _script_json(obj: Any) -> str:
    """``obj`` as JSON that is inert inside ``<script type="application/json">``
    and still parses (with ``JSON.parse``) to exactly ``obj``."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    # These characters only occur inside JSON strings, where \uXXXX means the same.
    return _SCRIPT_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _html_text(value: Any) -> str:
    """``value`` for the page's HTML text: escaped, and lone surrogates (which no
    UTF-8 page can hold) shown as U+FFFD."""
    return html.escape(_SURROGATE.sub("\ufffd", str(value)))


_PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%TITLE% — rtproxy</title>
<style>
body{font:13px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;padding:12px 16px;color:#222;background:#fafafa}
h1{font-size:16px;margin:0 0 8px}h2{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;background:#fff}th,td{border:1px solid #ddd;padding:2px 8px;text-align:left;vertical-align:top}
#summary th{background:#f0f0f0;width:110px}
.tables{display:flex;gap:16px;flex-wrap:wrap}.scroll{max-height:240px;overflow:auto}
tr.resp,tr.err,tr.fnd{cursor:pointer}tr.err td{background:#fde8e8}
tr.sev-error td:first-child{color:#d62728;font-weight:600}tr.sev-warning td:first-child{color:#b87800;font-weight:600}tr.sev-info td:first-child{color:#1f78a8}
#findings td:last-child{max-width:640px}
tr.st-cancelled td,tr.st-incomplete td,tr.st-failed td{background:#fff4d6}
#bar{margin:10px 0 4px;display:flex;gap:6px;align-items:center;flex-wrap:wrap}
button{font:inherit;padding:2px 10px}
#wrap{position:relative;background:#fff;border:1px solid #ccc}
canvas{display:block;width:100%;cursor:crosshair}
.lg{margin-right:10px;white-space:nowrap}.lg i{display:inline-block;width:10px;height:10px;margin-right:3px;vertical-align:-1px}.lg i.dia{width:8px;height:8px;transform:rotate(45deg)}
#detail{display:flex;gap:12px;margin-top:8px}
#json{flex:1;background:#fff;border:1px solid #ccc;padding:8px;margin:0;max-height:420px;overflow:auto;white-space:pre-wrap;word-break:break-all;font:12px/1.35 ui-monospace,Menlo,Consolas,monospace}
#sel{min-width:260px;max-width:45%;color:#555;white-space:pre-line;overflow-wrap:anywhere}
#tip{position:absolute;pointer-events:none;background:#333;color:#fff;padding:2px 6px;border-radius:3px;font-size:12px;display:none;white-space:nowrap}
</style></head>
<body>
<h1>%TITLE%</h1>
<div class="tables">
<div><h2>Session</h2><table id="summary">%SUMMARY%</table>
<p>events <b id="n-events">%NEVENTS%</b> · responses <b id="n-responses">%NRESP%</b> · errors <b id="n-errors">%NERR%</b> · findings <b id="n-findings">%NFIND%</b></p></div>
<div><h2>Responses</h2><div class="scroll"><table id="responses"><tr><th>start</th><th>id</th><th>status</th><th>details</th><th>duration</th><th>audio</th><th>transcript / text</th></tr>%RESPROWS%</table></div>
<h2>Errors</h2><div class="scroll"><table id="errors"><tr><th>at</th><th>error</th><th>message</th><th>caused by</th></tr>%ERRROWS%</table></div></div>
<div><h2>Findings</h2><div class="scroll"><table id="findings"><tr><th>severity</th><th>code</th><th>at</th><th>message</th></tr>%FINDROWS%</table></div></div>
</div>
<h2>Timeline</h2>
<div id="bar"><button id="fit">fit</button><button id="zin">zoom in</button><button id="zout">zoom out</button>
<span id="range"></span> <span>— wheel zooms, drag pans, click an event or a finding for its JSON, click an audio bar to play from there</span></div>
<div>%LEGEND%</div>
<div id="wrap"><canvas id="tl" height="250"></canvas><div id="tip"></div></div>
<div id="detail"><div id="sel">Click an event on the timeline.</div><pre id="json"></pre></div>
%CLIPS%
<script type="text/plain" id="rt-data">%DATA%</script>
<script type="text/plain" id="rt-texts">%TEXTS%</script>
<script>
(async function(){
"use strict";
function bytes(id){const s=atob(document.getElementById(id).textContent.trim());const u8=new Uint8Array(s.length);for(let i=0;i<s.length;i++)u8[i]=s.charCodeAt(i);return u8;}
async function inflate(id){return JSON.parse(await new Response(new Blob([bytes(id)]).stream().pipeThrough(new DecompressionStream("deflate"))).text());}
const D=await inflate("rt-data"),TEXTS=await inflate("rt-texts");
function texts(){return TEXTS;}
const E=D.ev,N=E.t.length,KC=D.kinds.map(k=>k[1]);
const cv=document.getElementById("tl"),ctx=cv.getContext("2d"),tip=document.getElementById("tip");
const LANES={client:28,user:62,resp:100,asst:138,server:172,find:208};
const LH=22,AX=14;
const end=D.bars.reduce((m,b)=>Math.max(m,b.t1),Math.max(D.summary.duration_ms||0,N?E.t[N-1]:0,1));
// Per side, sorted event indexes (times are monotonic already).
const bySide=[[],[]];for(let i=0;i<N;i++)bySide[E.side[i]].push(i);
const errAt=new Map();D.errors.forEach(x=>errAt.set(x.i,x));
const causes=new Set(D.errors.filter(x=>x.cause!=null).map(x=>x.cause));
// Findings of rtproxy check, in time order; by event index.
const F=D.findings||[],SC=D.severity_colours||{},fAt=new Map();
F.forEach((f,k)=>{if(f.i!=null){if(!fAt.has(f.i))fAt.set(f.i,[]);fAt.get(f.i).push(k);}});
// Marks drawn mildest first, so where they overlap the most severe is on top (and is the one clicked).
const RANK={info:0,warning:1,error:2},FO=F.map((f,k)=>k).sort((a,b)=>(RANK[F[a].severity]||0)-(RANK[F[b].severity]||0)||a-b);
let v0=0,v1=end*1.02,W=0,sel=-1,selF=-1,drawn=0,player=null;
function resize(){const r=cv.getBoundingClientRect();W=Math.max(200,r.width);cv.width=W*devicePixelRatio;cv.height=250*devicePixelRatio;ctx.setTransform(devicePixelRatio,0,0,devicePixelRatio,0,0);draw();}
const X=t=>(t-v0)/(v1-v0)*W, T=x=>v0+x/W*(v1-v0);
function lower(arr,t){let lo=0,hi=arr.length;while(lo<hi){const m=(lo+hi)>>1;if(E.t[arr[m]]<t)lo=m+1;else hi=m;}return lo;}
function fmt(ms){return ms>=60000?(Math.floor(ms/3600000)?Math.floor(ms/3600000)+"h":"")+String(Math.floor(ms/60000)%60).padStart(ms>=3600000?2:1,"0")+":"+String(Math.floor(ms%60000/1000)).padStart(2,"0")+(ms<600000?"."+Math.floor(ms%1000/100):""):ms>=1000?(ms/1000).toFixed(ms<10000?2:1)+" s":ms.toFixed(ms<10?2:0)+" ms";}
function draw(){
 ctx.clearRect(0,0,W,250);ctx.font="11px system-ui,sans-serif";
 // axis
 const span=v1-v0,steps=[1,2,5,10,20,50,100,200,500,1e3,2e3,5e3,1e4,2e4,3e4,6e4,12e4,3e5,6e5,12e5,18e5,36e5];
 let st=steps.find(s=>W/(span/s)>=80)||36e5;ctx.fillStyle="#666";ctx.strokeStyle="#eee";
 for(let t=Math.ceil(v0/st)*st;t<=v1;t+=st){const x=X(t);ctx.beginPath();ctx.moveTo(x,AX);ctx.lineTo(x,250);ctx.stroke();ctx.fillText(fmt(t),x+2,10);}
 ctx.fillStyle="#999";
 [["client events",LANES.client],["user audio",LANES.user],["responses",LANES.resp],["assistant audio",LANES.asst],["server events",LANES.server],["findings",LANES.find]].forEach(([n,y])=>ctx.fillText(n,4,y-2));
 // audio bars
 for(const b of D.bars){const x0=X(b.t0),x1=X(b.t1);if(x1<0||x0>W)continue;ctx.fillStyle=b.side?"#ffbb78":"#98df8a";ctx.fillRect(x0,(b.side?LANES.asst:LANES.user)+2,Math.max(2,x1-x0),LH-6);}
 // responses
 for(const r of D.responses){const t1=r.t1==null?end:r.t1,x0=X(r.t0),x1=X(t1);if(x1<0||x0>W)continue;
  const ok=r.status==="completed";ctx.fillStyle=ok?"#c6dbef":(r.status?"#fdd0a2":"#e0e0e0");ctx.strokeStyle=ok?"#1f77b4":"#e6550d";
  const w=Math.max(2,x1-x0);ctx.fillRect(x0,LANES.resp+1,w,LH-4);ctx.strokeRect(x0,LANES.resp+1,w,LH-4);
  if(w>40){ctx.fillStyle="#123";ctx.save();ctx.beginPath();ctx.rect(x0,LANES.resp,w,LH);ctx.clip();ctx.fillText((r.status||"open")+(r.transcript?" · "+r.transcript:""),x0+3,LANES.resp+13);ctx.restore();}}
 // events
 drawn=0;
 for(const side of [0,1]){const arr=bySide[side],y=side?LANES.server:LANES.client;let i=lower(arr,v0-(v1-v0)*0.002);let lastX=-9,lastK=-1;
  for(;i<arr.length;i++){const k=arr[i],t=E.t[k];if(t>v1)break;const x=Math.round(X(t));const kd=E.kind[k];
   if(x===lastX&&kd===lastK)continue;lastX=x;lastK=kd;ctx.fillStyle=KC[kd];ctx.fillRect(x,y+2,2,LH-6);drawn++;}}
 // errors and their causes
 for(const x of D.errors){const xe=X(x.t);if(x.cause!=null){const xc=X(E.t[x.cause]);ctx.strokeStyle="#d62728";ctx.lineWidth=1.5;ctx.beginPath();ctx.moveTo(xc,LANES.client+LH-2);ctx.lineTo(xe,LANES.server+2);ctx.stroke();ctx.lineWidth=1;
   ctx.strokeRect(xc-4,LANES.client,9,LH-2);}
  ctx.fillStyle="#d62728";ctx.beginPath();ctx.moveTo(xe,LANES.server-4);ctx.lineTo(xe+6,LANES.server+LH+2);ctx.lineTo(xe-6,LANES.server+LH+2);ctx.fill();}
 // findings: a diamond each, coloured by severity; the selected one outlined and tied to its event
 let marks=0;const yf=LANES.find;
 for(const k of FO){const f=F[k],x=X(f.t);if(x<-8||x>W+8)continue;marks++;
  ctx.fillStyle=SC[f.severity]||"#7f7f7f";ctx.beginPath();ctx.moveTo(x,yf);ctx.lineTo(x+6,yf+9);ctx.lineTo(x,yf+18);ctx.lineTo(x-6,yf+9);ctx.closePath();ctx.fill();
  if(k===selF){ctx.strokeStyle="#000";ctx.lineWidth=2;ctx.stroke();ctx.lineWidth=1;
   if(f.i!=null&&f.i<N){ctx.setLineDash([3,3]);ctx.beginPath();ctx.moveTo(x,(E.side[f.i]?LANES.server:LANES.client)+LH-2);ctx.lineTo(x,yf);ctx.stroke();ctx.setLineDash([]);}}}
 document.body.dataset.marks=String(marks);
 if(sel>=0){const y=E.side[sel]?LANES.server:LANES.client,x=X(E.t[sel]);ctx.strokeStyle="#000";ctx.lineWidth=2;ctx.strokeRect(x-3,y,7,LH-2);ctx.lineWidth=1;}
 if(player){const x=X(player.b.t0+player.a.currentTime*1000);ctx.strokeStyle="#000";ctx.beginPath();ctx.moveTo(x,AX);ctx.lineTo(x,250);ctx.stroke();}
 document.getElementById("range").textContent=fmt(Math.max(0,v0))+" – "+fmt(v1);
 document.body.dataset.drawn=String(drawn);
}
function select(i,k){if(i<0||i>=N)return;sel=i;const fs=fAt.get(i);selF=k!=null?k:(fs?fs[0]:-1);const t=texts()[i];let pretty=t;try{pretty=JSON.stringify(JSON.parse(t),null,2);}catch(e){}
 const er=errAt.get(i);let info="#"+i+" · "+(E.side[i]?"server":"client")+" · "+D.types[E.type[i]]+" · at "+fmt(E.t[i])+" · "+E.size[i]+" B";
 if(er)info+=er.cause!=null?" · caused by #"+er.cause+" "+er.cause_type+(er.matched_by==="event_id"?" (error.event_id)":" (last client event before)"):"";
 if(causes.has(i))info+=" · this event caused an error";
 if(fs)for(const j of fs)info+="\n"+F[j].code+" "+F[j].severity+": "+F[j].message;
 document.getElementById("sel").textContent=info;document.getElementById("json").textContent=pretty;document.body.dataset.selected=String(i);
 document.body.dataset.finding=selF>=0?String(selF):"";draw();}
function nearest(side,x){const arr=bySide[side];if(!arr.length)return -1;const t=T(x);let j=lower(arr,t);let best=-1,bd=1e9;for(const c of [j-1,j]){if(c<0||c>=arr.length)continue;const d=Math.abs(X(E.t[arr[c]])-x);if(d<bd){bd=d;best=arr[c];}}return bd<=6?best:-1;}
function nearestFinding(x){let best=-1,bd=1e9;for(const k of FO){const d=Math.abs(X(F[k].t)-x);if(d<=bd){bd=d;best=k;}}return bd<=7?best:-1;}
function laneAt(y){for(const [k,v] of Object.entries(LANES))if(y>=v-2&&y<=v+LH)return k;return null;}
function play(b,ms){if(player){player.a.pause();URL.revokeObjectURL(player.u);player=null;}
 const s=atob(document.getElementById("clip-"+b.clip).textContent);const u8=new Uint8Array(s.length);for(let i=0;i<s.length;i++)u8[i]=s.charCodeAt(i);
 const u=URL.createObjectURL(new Blob([u8],{type:D.clip_type||"audio/wav"}));const a=new Audio(u),at=Math.max(0,ms/1000);a.currentTime=at;
 a.addEventListener("loadedmetadata",()=>{if(Math.abs(a.currentTime-at)>0.05)a.currentTime=at;},{once:true});player={a,u,b};document.body.dataset.playing=b.clip+"@"+Math.round(ms);
 a.play().catch(()=>{});const tick=()=>{if(player&&player.a===a&&!a.paused){draw();requestAnimationFrame(tick);}};requestAnimationFrame(tick);a.onended=()=>{draw();};}
function hit(x,y){const lane=laneAt(y);if(lane==="client"||lane==="server")return{ev:nearest(lane==="server"?1:0,x)};
 const t=T(x);if(lane==="user"||lane==="asst"){const side=lane==="asst"?1:0;for(const b of D.bars)if(b.side===side&&t>=b.t0-(v1-v0)/W*2&&t<=b.t1)return{bar:b,ms:Math.max(0,t-b.t0)};}
 if(lane==="resp"){for(const r of D.responses){const t1=r.t1==null?end:r.t1;if(t>=r.t0&&t<=t1)return{resp:r};}}
 if(lane==="find"){const k=nearestFinding(x);if(k>=0)return{fnd:k};}
 return {};}
let drag=null;
cv.addEventListener("mousedown",e=>{drag={x:e.offsetX,v0,v1,moved:false};});
window.addEventListener("mousemove",e=>{if(drag){const dx=e.clientX-cv.getBoundingClientRect().left-drag.x;if(Math.abs(dx)>3)drag.moved=true;if(drag.moved){const dt=dx/W*(drag.v1-drag.v0);v0=drag.v0-dt;v1=drag.v1-dt;draw();}}});
window.addEventListener("mouseup",e=>{if(drag&&!drag.moved){const h=hit(drag.x,e.clientY-cv.getBoundingClientRect().top);
 if(h.ev!=null&&h.ev>=0)select(h.ev);else if(h.bar)play(h.bar,h.ms);else if(h.resp)select(h.resp.i1!=null?h.resp.i1:h.resp.i0);else if(h.fnd!=null)finding(h.fnd);}drag=null;});
cv.addEventListener("mousemove",e=>{const h=hit(e.offsetX,e.offsetY);let s="";if(h.ev!=null&&h.ev>=0)s=D.types[E.type[h.ev]]+" @ "+fmt(E.t[h.ev]);else if(h.bar)s=(h.bar.side?"assistant":"user")+" audio "+fmt(h.bar.t1-h.bar.t0)+" — click to play";else if(h.resp)s="response "+(h.resp.id||"")+" "+(h.resp.status||"open");else if(h.fnd!=null)s=F[h.fnd].code+" "+F[h.fnd].severity+" @ "+fmt(F[h.fnd].t)+" — "+F[h.fnd].title;
 if(s){tip.style.display="block";tip.textContent=s;tip.style.left=Math.min(e.offsetX+12,W-200)+"px";tip.style.top=(e.offsetY+14)+"px";}else tip.style.display="none";});
cv.addEventListener("mouseleave",()=>{tip.style.display="none";});
function zoom(f,x){const t=T(x);v0=t-(t-v0)*f;v1=t+(v1-t)*f;if(v1-v0<0.05){const c=(v0+v1)/2;v0=c-0.025;v1=c+0.025;}draw();}
cv.addEventListener("wheel",e=>{e.preventDefault();zoom(e.deltaY>0?1.25:0.8,e.offsetX);},{passive:false});
document.getElementById("fit").onclick=()=>{v0=0;v1=end*1.02;draw();};
document.getElementById("zin").onclick=()=>zoom(0.5,W/2);
document.getElementById("zout").onclick=()=>zoom(2,W/2);
function focus(i,k){const t=E.t[i],w=Math.max(50,Math.min(v1-v0,5000));v0=t-w/2;v1=t+w/2;select(i,k);cv.scrollIntoView({block:"center"});}
// A finding: its event selected (its JSON shown) and the timeline on it; one of the
// handshake or the close (no event): the timeline at its time, the finding as the JSON.
function finding(k){const f=F[k];if(!f)return;if(f.i!=null&&f.i<N){focus(f.i,k);return;}
 const w=Math.max(50,Math.min(v1-v0,5000));v0=f.t-w/2;v1=f.t+w/2;sel=-1;selF=k;
 document.getElementById("sel").textContent="the session (handshake or close) · at "+fmt(f.t)+"\n"+f.code+" "+f.severity+": "+f.message;
 document.getElementById("json").textContent=JSON.stringify({code:f.code,severity:f.severity,title:f.title,message:f.message,t:f.t/1000,event_index:null},null,2);document.body.dataset.selected="";document.body.dataset.finding=String(k);
 draw();cv.scrollIntoView({block:"center"});}
document.querySelectorAll("tr[data-i]").forEach(tr=>tr.addEventListener("click",()=>focus(+tr.dataset.i)));
document.querySelectorAll("tr[data-f]").forEach(tr=>tr.addEventListener("click",()=>finding(+tr.dataset.f)));
window.addEventListener("resize",resize);
window.rtproxy={data:D,get view(){return[v0,v1];},get audio(){return player?player.a:null;},select,focus,finding,play,xOf:i=>X(E.t[i]),yOf:i=>(E.side[i]?LANES.server:LANES.client)+LH/2,
 fxOf:k=>X(F[k].t),fyOf:()=>LANES.find+9,count:N};
resize();document.body.dataset.ready="1";
})();
</script>
</body></html>
"""
