"""rtproxy check on real recorded sessions: the clean ones give no warning or error."""

from __future__ import annotations

import pytest

from rtproxy.check import check_file
from tests.realtime_server import Scenario
from tests.session_helpers import record_session

pytestmark = pytest.mark.e2e


def _serious(path):  # type: ignore[no-untyped-def]
    return [(f.code, f.message) for f in check_file(path) if f.severity != "info"]


@pytest.mark.parametrize("scenario", [Scenario(), Scenario(beta=True), Scenario(transcription_before_response=False),
                                      Scenario(modality="text")], ids=["ga", "beta", "late-transcript", "text"])
def test_clean_recorded_sessions(tmp_path, scenario) -> None:
    # a text answer has no audio to truncate
    path = record_session(tmp_path, scenario, errors=False, truncate_ms=None if scenario.modality == "text" else 300)
    assert _serious(path) == []


def test_recorded_session_with_errors_is_flagged(tmp_path) -> None:
    path = record_session(tmp_path, Scenario(error_on_second_response=True))
    got = {f.code for f in check_file(path)}
    # the second response.create is refused (RT001); the unknown event type (RT010)
    assert {"RT001", "RT010"} <= got
    assert "RT017" not in got


def test_truncate_of_a_text_answer_is_flagged(tmp_path) -> None:
    path = record_session(tmp_path, Scenario(modality="text"), errors=False, truncate_ms=300)
    assert [f.code for f in check_file(path) if f.severity == "error"] == ["RT002"]
