"""What the Python drivers share: the speech they send and how they report."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

SPEECH = Path(__file__).resolve().parent.parent / "data" / "speech_24k.pcm"
API_KEY = "sk-test-clients-0123456789abcdef"


def speech(ms: int = 600) -> bytes:
    """ms of 24 kHz PCM16 mono speech (a tone where the sample is missing)."""
    n = 48 * ms
    if SPEECH.exists():
        pcm = SPEECH.read_bytes()
        return (pcm * (n // len(pcm) + 1))[:n]
    return bytes(n)


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def report(ok: bool, **facts: object) -> None:
    """The last stdout line is what the test reads; exit 0 only when the flow completed."""
    print("RESULT " + json.dumps({"ok": ok, **facts}), flush=True)
    sys.exit(0 if ok else 1)
