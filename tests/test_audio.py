"""rtproxy.view.audio: placing audio on the timeline (pure, fed with Message objects)."""

from __future__ import annotations

import base64
import json
from array import array

from rtproxy.view.audio import ALAW_TABLE, ConversationAudio, render_track
from rtproxy.io.format import Message, split_base64_audio
from rtproxy.view.summary import event_head
from rtproxy.view.timeline import annotate


def msg(t_ms: float, from_client: bool, obj: dict) -> Message:
    content = json.dumps(obj).encode()
    return Message(int(t_ms * 1e6), from_client, True, split_base64_audio(content) or content)


def place(msgs: list[Message]) -> ConversationAudio:
    conv = ConversationAudio()
    for e in annotate(msgs):
        conv.feed(e.index, e.msg.t_ns, e.msg.from_client, e.type, event_head(e.msg), e.msg.audio)
    conv.finish()
    return conv


def s16(b: bytes) -> list[int]:
    a = array("h")
    a.frombytes(b)
    return a.tolist()


def test_beta_alaw_output_decoded_sequenced_and_truncated() -> None:
    # beta names and G.711 a-law output: 80 ms chunks (640 bytes at 8 kHz), sent at once
    chunk = bytes(range(0, 256, 1)) * 2 + bytes(128)  # 640 bytes
    b64 = base64.b64encode(chunk).decode()
    msgs = [
        msg(0, False, {"type": "session.created", "session": {"output_audio_format": "g711_alaw"}}),
        msg(100, False, {"type": "response.created", "response": {"id": "r1"}}),
    ]
    for i in range(3):
        msgs.append(msg(110 + i, False, {"type": "response.audio.delta", "response_id": "r1", "item_id": "i1", "delta": b64}))
    msgs.append(msg(300, True, {"type": "conversation.item.truncate", "item_id": "i1", "content_index": 0, "audio_end_ms": 200}))
    conv = place(msgs)
    segs = conv.assistant
    # placed one after another from the first delta (110 ms), not at each delta's arrival
    assert segs[0].start == 110 * 24 and segs[1].start == segs[0].end
    # 3 x 80 ms sent, truncated at 200 ms: 80 + 80 + 40
    assert [len(s.pcm) // 2 for s in segs] == [1920, 1920, 960]
    track = render_track(segs, segs[-1].end + 10)
    got = s16(bytes(track[2 * 110 * 24 : 2 * (110 * 24 + 1920)]))
    assert got[0::3] == [ALAW_TABLE[c] for c in chunk]


def test_user_appends_stack_when_sent_faster_than_real_time() -> None:
    pcm = bytes(range(256)) * 15  # 3840 bytes: 80 ms of PCM16
    msgs = [msg(50, True, {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}) for _ in range(3)]
    msgs.append(msg(1000, True, {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}))
    conv = place(msgs)
    starts = [s.start for s in conv.user]
    assert starts == [1200, 1200 + 1920, 1200 + 2 * 1920, 24000]


def test_second_response_waits_for_the_first_to_finish_playing() -> None:
    pcm = base64.b64encode(bytes(4800)).decode()  # 100 ms
    msgs = []
    for r, t in (("r1", 0), ("r2", 20)):
        msgs.append(msg(t, False, {"type": "response.created", "response": {"id": r}}))
        for k in range(5):
            msgs.append(msg(t + 1 + k, False, {"type": "response.output_audio.delta", "response_id": r, "item_id": r + "i", "delta": pcm}))
    conv = place(msgs)
    r2 = [s for s in conv.assistant if s.response_id == "r2"]
    assert r2[0].start == 1 * 24 + 5 * 2400  # after r1's 500 ms, not at 21 ms


def test_stereo_wav_is_both_tracks_interleaved() -> None:
    """The stereo WAV (channels rendered straight into interleaved windows) holds the two
    mono tracks sample for sample: overlapping segments (the later wins), odd byte
    counts, segments across the minute windows, a window past the last segment."""
    import io
    import random

    from rtproxy.view.audio import RATE, AudioSegment, interleave, render_window, wav_header, write_wav_tracks

    r = random.Random(8)
    minute = 60 * RATE
    for _ in range(5):
        sides: list[list[AudioSegment]] = [[], []]
        for side in sides:
            for i in range(r.randint(0, 40)):
                start = r.choice([0, minute - 3, minute, 2 * minute + 7, r.randint(0, 3 * minute)])
                n = r.choice([1, 3, 480, r.randint(0, 2 * minute)])
                side.append(AudioSegment("user", start, r.randbytes(n), i))
        n_samples = max([s.end for s in sides[0] + sides[1]] or [0]) + r.choice([0, 5, minute])
        fh = io.BytesIO()
        size = write_wav_tracks(fh, sides[0], sides[1], n_samples)
        left, right = (render_window(sorted(s, key=lambda x: x.start), 0, n_samples) for s in sides)
        assert fh.getvalue() == wav_header(n_samples, 2) + interleave(left, right)
        assert size == len(fh.getvalue())


def test_messages_without_events_place_the_same_audio() -> None:
    """`export --format wav` feeds messages (ConversationAudio.feed_message), reading a
    type only where it matters; the audio must come out as when fed events: formats set
    by a type written with escapes, a crafted truncate carrying audio, binary frames,
    server events with audio that are not deltas."""
    pcm = bytes(range(256)) * 15
    b64 = base64.b64encode(pcm).decode()
    law = base64.b64encode(bytes(range(160))).decode()

    def raw(t_ms: float, from_client: bool, text: str) -> Message:
        content = text.encode()
        return Message(int(t_ms * 1e6), from_client, True, split_base64_audio(content) or content)

    msgs = [
        msg(0, False, {"type": "session.created", "session": {"input_audio_format": "pcm16"}}),
        msg(10, True, {"type": "input_audio_buffer.append", "audio": b64}),
        # session.update, its type escaped: the user's audio is mu-law from here on
        raw(20, True, '{"type":"\\u0073ession.update","session":{"input_audio_format":"g711_ulaw"}}'),
        msg(30, True, {"type": "input_audio_buffer.append", "audio": law}),
        msg(40, True, {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                       "content": [{"type": "input_audio", "audio": law}]}}),
        Message(45_000_000, True, False, b"\x00\x01binary"),
        raw(50, False, '{"type":"session.updated","session":{"output_audio_format":"g711_alaw"}}'),
        msg(60, False, {"type": "response.output_audio.delta", "response_id": "r1", "item_id": "i1", "delta": law}),
        raw(61, False, '{"type":"response.output_audio.delta","response_id":"r\\u0031","item_id":"i1","delta":"'
            + law + '"}'),
        msg(62, False, {"type": "conversation.item.created", "item": {"id": "i9", "content": [{"type": "audio", "audio": law}]}}),
        msg(70, False, {"type": "response.output_audio.delta", "response_id": "r2", "item_id": "i2", "delta": law}),
        msg(80, True, {"type": "conversation.item.truncate", "item_id": "i1", "audio_end_ms": 15, "audio": law}),
        msg(90, False, {"type": "response.audio.delta", "response_id": "r2", "item_id": "i2", "delta": law}),
        raw(95, True, '{"type":"conversation.item.trunc\\u0061te","item_id":"i2","audio_end_ms":25}'),
    ]
    assert any(m.audio for m in msgs if not m.from_client) and any(m.audio for m in msgs if m.from_client)
    by_events = place(msgs)
    by_messages = ConversationAudio()
    for i, m in enumerate(msgs):
        by_messages.feed_message(i, m)
    by_messages.finish()

    def key(segs: list) -> list:  # type: ignore[type-arg]
        return [(s.start, s.pcm, s.index, s.response_id, s.item_id) for s in segs]

    assert key(by_messages.user) == key(by_events.user)
    assert key(by_messages.assistant) == key(by_events.assistant)
    assert by_messages.formats.input == by_events.formats.input and by_messages.dropped_ms == by_events.dropped_ms
    # what the file holds was read: mu-law after the escaped update, the truncations applied
    assert by_events.formats.input.codec == "g711_ulaw" and len(by_events.user) == 4
    assert sum(len(s.pcm) for s in by_events.assistant if s.item_id == "i1") == 2 * 15 * 24
