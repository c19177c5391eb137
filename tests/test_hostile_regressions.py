"""Focused regressions for what the full hostile-input sweep found
(``RTPROXY_CORPUS_FULL=1 pytest tests/test_hostile_inputs.py``): each test names
the input and the command that broke, and checks how the reader behaves now."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

from rtproxy.check.engine import Checker
from rtproxy.testing import make_recording
from rtproxy.view.events import open as open_recording


def test_check_keeps_no_payload_of_the_events_its_findings_point_at(tmp_path: Path) -> None:
    """bomb-many-records x check: 60 binary frames of 60 MiB made ``rtproxy check`` hold
    all 3.6 GiB (RT010 kept every binary event, RT018 every event with a bad value...,
    each with its message). What rules keep now is the event's place, not its bytes."""
    big = 1 << 20
    events = [(float(i), "client", bytes([i]) * big) for i in range(24)]  # RT010: binary frames
    events += [(100.0 + i, "server", '{"type":"x.unknown","pad":"' + "a" * big + '"}') for i in range(8)]  # RT010
    events += [(200.0 + i, "client", '{"type":"conversation.item.truncate","item_id":"i","audio_end_ms":"x",'
                                     '"pad":"' + "b" * big + '"}') for i in range(8)]  # RT018
    p = make_recording(tmp_path / "big.rtrec", events, redact=False)
    c = Checker()
    tracemalloc.start()
    try:
        for ev in open_recording(p).events():
            c.feed(ev)
        del ev
        gc.collect()  # the reader's own buffers (a cycle) go
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 4 * big, f"the checker holds {kept >> 20} MiB after 40 MiB of messages"
    found = c.finish()
    [binary] = [f for f in found if "binary message(s)" in f.message]
    assert (binary.code, binary.event_index, binary.related) == ("RT010", 0, tuple(range(1, 10)))
    assert "24 binary" in binary.message
    assert any(f.code == "RT010" and "'x.unknown'" in f.message and "(8 times)" in f.message for f in found)
    assert any(f.code == "RT018" and f.event_index == 32 and "audio_end_ms" in f.message for f in found)
