"""rtproxy.protocol: the event catalogue, event types from the first bytes, bounded
parsing, audio formats and the session-format tracker (pure)."""

from __future__ import annotations

import pytest

from rtproxy.protocol import events as ev
from rtproxy.protocol.formats import PCM16_24K, AudioFormat, SessionFormats, parse_format, silence


def test_beta_and_ga_names_map_onto_the_catalogue() -> None:
    for beta, ga in ev.BETA_TO_GA.items():
        assert beta in ev.SERVER_EVENTS and ga in ev.SERVER_EVENTS
        assert ev.canonical_event_type(beta) == ga and ev.GA_TO_BETA[ga] == beta
    assert not ev.GA_ONLY_SERVER_EVENTS & ev.BETA_ONLY_SERVER_EVENTS
    assert ev.AUDIO_DELTA_EVENTS <= ev.SERVER_EVENTS and ev.TEXT_DELTA_EVENTS <= ev.SERVER_EVENTS


@pytest.mark.parametrize("name,side,known,dialect", [
    ("response.audio.delta", "server", True, "beta"),
    ("response.output_audio.delta", "server", True, "ga"),
    ("response.created", "server", True, None),
    ("transcription_session.update", "client", True, "beta"),
    ("response.create", "server", False, None),
    ("made.up", "client", False, None),
])
def test_known_and_dialect(name: str, side: str, known: bool, dialect: str | None) -> None:
    assert ev.is_known(name, side == "client") is known
    assert ev.dialect(name) == dialect


def test_event_type_from_the_first_bytes() -> None:
    assert ev.event_type(b'{"type":"response.create","response":{"type":"x"}}') == "response.create"
    assert ev.event_type(b'{"event_id":"e","item":{"type":"message"},"type":"conversation.item.create"}') == "conversation.item.create"
    assert ev.event_type(b'{"type":"a\\u002eb"}') == "a.b"
    assert ev.event_type(b"not json") is None and ev.event_type(b"") is None
    assert ev.event_type(b'{"type": 5}') is None


def test_parse_event_is_bounded_and_never_raises() -> None:
    assert ev.parse_event(b'{"type":"x"}') == {"type": "x"}
    assert ev.parse_event(b"[1]") is None and ev.parse_event(b"\xff") is None
    deep = b'{"type":"x","a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert ev.parse_event(deep) is None
    assert ev.parse_event(b'{"type":"x","a":' + b"[" * 150 + b"]" * 150 + b"}") is not None
    # brackets inside strings do not count
    assert ev.parse_event(b'{"type":"x","t":"' + b"[" * 1000 + b'"}') is not None


@pytest.mark.parametrize("value,expected", [
    ("pcm16", PCM16_24K), ("g711_ulaw", AudioFormat("g711_ulaw", 8000)), ("g711_alaw", AudioFormat("g711_alaw", 8000)),
    ({"type": "audio/pcm", "rate": 24000}, PCM16_24K), ({"type": "audio/pcm"}, PCM16_24K),
    ({"type": "audio/pcm", "rate": 16000}, AudioFormat("pcm16", 16000)), ({"type": "audio/pcmu"}, AudioFormat("g711_ulaw", 8000)),
    ({"type": "audio/pcm", "rate": "fast"}, None), ({"type": "audio/pcm", "rate": 1e400}, None),
    ({"type": "audio/pcm", "rate": -24000}, None), ({"type": "audio/pcm", "rate": [24000]}, None),
    ({"type": "audio/pcm", "rate": True}, None), ({"type": "audio/pcm", "rate": 10**400}, None),
    ("opus", None), (None, None), (42, None),
])
def test_parse_format_from_untrusted_values(value: object, expected: AudioFormat | None) -> None:
    assert parse_format(value) == expected


def test_session_formats_follow_every_config_event() -> None:
    f = SessionFormats()
    assert f.input == PCM16_24K and f.output == PCM16_24K
    assert f.feed("transcription_session.update", {"session": {"input_audio_format": "g711_ulaw"}})
    assert f.input.codec == "g711_ulaw" and f.output == PCM16_24K and f.asked_input == f.input
    assert f.feed("session.updated", {"session": {"audio": {"output": {"format": {"type": "audio/pcma"}}}}})
    assert f.for_side(False).codec == "g711_alaw" and f.for_side(True).codec == "g711_ulaw"
    assert not f.feed("session.update", {"session": {"audio": {"input": {"format": {"type": "audio/pcm", "rate": "x"}}}}})
    assert not f.feed("response.create", {"session": {"input_audio_format": "pcm16"}})
    assert not f.feed("session.update", "not a dict")
    assert f.input.duration_ms(800) == 100.0


def test_silence_per_codec() -> None:
    assert silence(3) == b"\0\0\0"
    assert silence(2, AudioFormat("g711_ulaw", 8000)) == b"\xff\xff"
    assert silence(2, AudioFormat("g711_alaw", 8000)) == b"\xd5\xd5"
