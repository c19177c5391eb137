"""rtproxy.view.strip and rtproxy.view.summary on hand-made messages (pure)."""

from __future__ import annotations

import base64
import json

from rtproxy.io.format import Message, split_base64_audio
from rtproxy.view.strip import PLACEHOLDER, StripOptions, Stripper
from rtproxy.view.summary import EventFilter, Summarizer
from rtproxy.view.timeline import annotate


def msg(from_client: bool, obj: dict, t_ms: float = 0) -> Message:
    content = json.dumps(obj).encode()
    return Message(int(t_ms * 1e6), from_client, True, split_base64_audio(content) or content)


def test_text_strip_covers_tool_calls_and_transcripts_keeps_names_and_ids() -> None:
    s = Stripper(StripOptions(text=True))
    args = msg(False, {"type": "response.function_call_arguments.done", "call_id": "c1", "name": "get_weather",
                       "arguments": '{"city": "Oslo"}'})
    out = json.loads(s.content(args))
    assert out == {"type": "response.function_call_arguments.done", "call_id": "c1", "name": "get_weather",
                   "arguments": PLACEHOLDER}
    tool_out = msg(True, {"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "c1", "output": '{"temp": "12C in Oslo"}'}})
    assert "Oslo" not in s.content(tool_out).decode()
    delta = msg(False, {"type": "response.function_call_arguments.delta", "delta": '{"ci'})
    assert json.loads(s.content(delta))["delta"] == PLACEHOLDER
    said = msg(True, {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": "my card is 4111"}]}})
    assert "4111" not in s.content(said).decode() and '"input_text"' in s.content(said).decode()


def test_audio_strip_keeps_length_and_format_silence() -> None:
    s = Stripper(StripOptions(audio=True))
    s.content(msg(False, {"type": "session.updated", "session": {"audio": {"output": {"format": {"type": "audio/pcmu"}}}}}))
    ulaw = bytes(range(256))
    delta = msg(False, {"type": "response.output_audio.delta", "delta": base64.b64encode(ulaw).decode()})
    out = json.loads(s.content(delta))
    assert base64.b64decode(out["delta"]) == b"\xff" * 256  # u-law silence, same length
    pcm = bytes(range(1, 256)) * 2
    app = msg(True, {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})
    assert base64.b64decode(json.loads(s.content(app))["audio"]) == bytes(len(pcm))


def test_text_and_audio_strip_reads_each_event_it_must() -> None:
    """Audio deltas are copied as packed silence unread; an event holding a text delta
    beside audio (or a text delta written with escapes) still has its text stripped."""
    s = Stripper(StripOptions(audio=True, text=True))
    pcm = bytes(range(1, 256)) * 4
    b64 = base64.b64encode(pcm).decode()
    delta = msg(False, {"type": "response.output_audio.delta", "response_id": "r1", "delta": b64})
    payload, packed = s.stored(delta)
    assert packed and isinstance(payload, list) and len(payload) == 3  # still split: nothing parsed or re-encoded
    assert base64.b64decode(json.loads(s.content(delta))["delta"]) == bytes(len(pcm))
    both = msg(False, {"type": "response.output_audio_transcript.delta", "delta": "my PIN is 1234", "audio": b64})
    out = json.loads(s.content(both))
    assert out["delta"] == PLACEHOLDER and base64.b64decode(out["audio"]) == bytes(len(pcm))
    escaped = Message(0, False, True, b'{"type":"response.output_text\\u002edelta","delta":"my PIN is 1234"}')
    assert "1234" not in s.content(escaped).decode()
    empty = msg(False, {"type": "response.output_text.delta", "delta": ""})
    assert json.loads(s.content(empty))["delta"] == PLACEHOLDER


def test_instructions_removed_everywhere_json_valid() -> None:
    s = Stripper(StripOptions(instructions=True))
    upd = msg(True, {"type": "session.update", "session": {"type": "realtime", "instructions": "secret persona"}})
    assert json.loads(s.content(upd)) == {"type": "session.update", "session": {"type": "realtime"}}
    rc = msg(True, {"type": "response.create", "response": {"instructions": "whisper"}})
    assert json.loads(s.content(rc)) == {"type": "response.create", "response": {}}
    untouched = msg(True, {"type": "input_audio_buffer.commit"})
    assert s.content(untouched) == untouched.content


def test_summary_beta_names_and_error_causes() -> None:
    msgs = [
        msg(True, {"type": "response.create", "event_id": "c1"}, 1),
        msg(False, {"type": "response.created", "response": {"id": "r1"}}, 2),
        msg(False, {"type": "response.audio_transcript.delta", "response_id": "r1", "delta": "Hi "}, 3),
        msg(False, {"type": "response.audio_transcript.delta", "response_id": "r1", "delta": "there"}, 4),
        msg(True, {"type": "response.cancel", "event_id": "c2"}, 5),
        msg(True, {"type": "input_audio_buffer.commit", "event_id": "c3"}, 6),
        msg(False, {"type": "response.done", "response": {"id": "r1", "status": "cancelled",
                                                           "status_details": {"type": "cancelled", "reason": "client_cancelled"}}}, 7),
        msg(False, {"type": "error", "error": {"type": "invalid_request_error", "code": "x", "event_id": "c2"}}, 8),
        msg(False, {"type": "error", "error": {"type": "invalid_request_error", "code": "y"}}, 9),
    ]
    sm = Summarizer()
    entries = list(annotate(msgs))
    for e in entries:
        sm.feed(e)
    s = sm.summary
    [r] = s.responses
    assert (r.status, r.transcript, r.trigger_index) == ("cancelled", "Hi there", 0)
    assert "cancelled (cancelled, client_cancelled)" in r.line()
    assert [(x.cause_index, x.matched_by) for x in s.errors] == [(4, "event_id"), (5, "preceding")]
    f = EventFilter(type_glob="response.output_audio_transcript.*")
    assert [e.index for e in entries if f.keep(e)] == [2, 3]


def test_grep_finds_text_json_escaped() -> None:
    e = next(iter(annotate([msg(False, {"type": "response.output_audio_transcript.done", "transcript": "Très bien"})])))
    assert b"\\u00e8" in e.msg.content  # json.dumps escaped it
    assert EventFilter(grep="très").keep(e)
    assert not EventFilter(grep="mal").keep(e)


def test_text_and_instructions_strip_sees_through_escapes_types_and_repeats() -> None:
    """A key spelt with escapes, text that is not a string, a key given twice: all go.
    The structures that share a name stay (a response's output items, the audio output
    settings, a tool's parameter called "text"), and an event with nothing to strip is
    copied byte for byte even when it holds escapes."""
    s = Stripper(StripOptions(text=True, instructions=True))
    raw = b'{"type":"session.update","session":{"instructi\\u006fns":"S1","tools":[{"type":"function",' \
          b'"name":"say","parameters":{"type":"object","properties":{"text":{"type":"string"},' \
          b'"instructions":{"type":"string"}}}}],"audio":{"output":{"voice":"marin"}}}}'
    out = json.loads(s.content(Message(0, True, True, raw)))
    assert out["session"] == {"tools": [{"type": "function", "name": "say", "parameters": {
        "type": "object", "properties": {"text": {"type": "string"}, "instructions": {"type": "string"}}}}],
        "audio": {"output": {"voice": "marin"}}}
    done = msg(False, {"type": "response.done", "response": {"id": "r1", "output": [
        {"id": "i1", "type": "function_call", "call_id": "c1", "arguments": {"a": "S2"}},
        {"id": "i2", "type": "message", "content": [{"type": "output_audio", "transcript": None}]}]}})
    assert json.loads(s.content(done))["response"]["output"] == [
        {"id": "i1", "type": "function_call", "call_id": "c1", "arguments": PLACEHOLDER},
        {"id": "i2", "type": "message", "content": [{"type": "output_audio", "transcript": None}]}]
    twice = Message(0, True, True, b'{"type":"conversation.item.create","item":{"content":[{"text":"S3","text":""}]}}')
    assert b"S3" not in s.content(twice)
    for case in ({"type": "x", "output": 4111111111111111}, {"type": "x", "text": {"a": ["S4"]}},
                 {"type": "conversation.item.input_audio_transcription.delta", "delta": {"d": "S5"},
                  "logprobs": [{"token": "S6", "logprob": -1.5, "bytes": [83, 54], "top_logprobs": [{"token": "S7"}]}]}):
        out = s.content(msg(False, case))
        assert not any(w in out for w in (b"S4", b"S5", b"S6", b"S7", b"4111")), out
    kept = Message(0, False, True, b'{"type":"response.created","response":{"id":"r2","metadata":{"k":"caf\\u00e9"}}}')
    assert s.content(kept) == kept.content
    only_text = Stripper(StripOptions(text=True))
    assert b"S8" not in only_text.content(Message(0, True, True, b'{"type":"x","item":{"\\u0074ext":"S8"}}'))


def test_strip_instructions_removes_prompts_too() -> None:
    """A stored prompt's id and variables, and the transcription's prompt hint, say what the
    session was told as instructions do; a tool's parameter called "prompt" stays."""
    s = Stripper(StripOptions(instructions=True))
    update = msg(True, {"type": "session.update", "session": {
        "type": "realtime", "prompt": {"id": "pmpt_1", "variables": {"customer": "P1"}},
        "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe", "prompt": "P2"}}},
        "tools": [{"type": "function", "name": "draw", "parameters": {
            "type": "object", "properties": {"prompt": {"type": "string"}}}}]}})
    out = json.loads(s.content(update))["session"]
    assert out == {"type": "realtime", "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}},
                   "tools": [{"type": "function", "name": "draw", "parameters": {
                       "type": "object", "properties": {"prompt": {"type": "string"}}}}]}
    created = msg(False, {"type": "response.create", "response": {"prompt": {"id": "pmpt_2"}, "instructions": "P3"}})
    assert json.loads(s.content(created))["response"] == {}
