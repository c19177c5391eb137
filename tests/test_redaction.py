"""Every place a secret can travel (../shared/PROTOCOL.md, docs/FORMAT.md "Secrets") is masked."""

from __future__ import annotations

import base64
import json
import os

import pytest

from rtproxy.redaction import MARKER, redact_headers, redact_payload, redact_subprotocols, redact_url

KEY = "sk-proj-PLANTEDsecret0123456789abcdef"
EK = "ek_68a1b2c3d4e5f6PLANTED"
TOKEN = "mcp-token-PLANTED-42"  # not key-shaped: only its position says it is a secret


# ---------------------------------------------------------------- headers
@pytest.mark.parametrize(
    "name",
    ["Authorization", "authorization", "api-key", "Api-Key", "Cookie", "Set-Cookie",
     "Proxy-Authorization", "X-Api-Key", "OpenAI-Api-Key", "OpenAI-Organization", "OpenAI-Project"],
)
def test_secret_headers_are_masked(name: str) -> None:
    out, redacted = redact_headers([("Host", "api.openai.com"), (name, TOKEN), ("X-Other", "kept")])
    assert out == [["Host", "api.openai.com"], [name, MARKER], ["X-Other", "kept"]]
    assert redacted == [name]


def test_authorization_keeps_its_scheme() -> None:
    out, _ = redact_headers([("Authorization", f"Bearer {KEY}")])
    assert out == [["Authorization", f"Bearer {MARKER}"]]


def test_repeated_headers_are_all_masked() -> None:
    out, redacted = redact_headers([("Cookie", "a=1"), ("Cookie", "b=2")])
    assert out == [["Cookie", MARKER], ["Cookie", MARKER]] and redacted == ["Cookie", "Cookie"]


def test_key_shaped_values_in_other_headers_are_scrubbed() -> None:
    out, redacted = redact_headers([("X-Forwarded-Auth", f"key={KEY}; eph={EK}"), ("User-Agent", "OpenAI/Python 3.54")])
    assert out[0] == ["X-Forwarded-Auth", f"key={MARKER}; eph={MARKER}"]
    assert out[1] == ["User-Agent", "OpenAI/Python 3.54"] and redacted == ["X-Forwarded-Auth"]


# ----------------------------------------------------------- subprotocols
def test_insecure_api_key_subprotocol_is_masked() -> None:
    value = f"realtime, openai-insecure-api-key.{KEY}, openai-beta.realtime-v1"
    out, changed = redact_subprotocols(value)
    assert changed and KEY not in out
    assert out == "realtime, openai-insecure-api-key.REDACTED, openai-beta.realtime-v1"
    hdrs, redacted = redact_headers([("Sec-WebSocket-Protocol", value)])
    assert hdrs == [["Sec-WebSocket-Protocol", out]] and redacted == ["Sec-WebSocket-Protocol"]


def test_ephemeral_key_subprotocol_is_masked() -> None:
    out, changed = redact_subprotocols(f"realtime,openai-insecure-api-key.{EK}")
    assert changed and EK not in out


def test_plain_subprotocols_are_untouched() -> None:
    assert redact_subprotocols("realtime, openai-beta.realtime-v1") == ("realtime, openai-beta.realtime-v1", False)


# ----------------------------------------------------------------- query
@pytest.mark.parametrize("param", ["api-key", "api_key", "key", "token", "client_secret", "Authorization", "access_token"])
def test_credential_query_parameters_are_masked(param: str) -> None:
    url = f"wss://res.openai.azure.com/openai/realtime?api-version=2025-04-01&{param}={TOKEN}&deployment=gpt"
    out, redacted = redact_url(url)
    assert TOKEN not in out and redacted == [param]
    assert out.startswith("wss://res.openai.azure.com/openai/realtime?api-version=2025-04-01&")
    assert out.endswith("&deployment=gpt")


def test_percent_encoded_and_key_shaped_query_values() -> None:
    out, redacted = redact_url(f"/v1/realtime?model=gpt-realtime&Authorization=Bearer%20{KEY}&x={EK}")
    assert KEY not in out and EK not in out and redacted == ["Authorization", "x"]
    assert out.startswith("/v1/realtime?model=gpt-realtime&")


def test_urls_without_secrets_are_untouched() -> None:
    url = "wss://api.openai.com/v1/realtime?model=gpt-realtime&intent=transcription"
    assert redact_url(url) == (url, [])


# --------------------------------------------------------------- payloads
def _mcp_tool() -> dict:
    return {
        "type": "mcp",
        "server_label": "deepwiki",
        "server_url": "https://mcp.example.com/sse",
        "authorization": TOKEN,
        "headers": {"X-Api-Token": TOKEN + "-h", "X-Retry": "1"},
        "require_approval": "never",
    }


@pytest.mark.parametrize(
    "event",
    [
        {"type": "session.update", "session": {"type": "realtime", "max_output_tokens": 1, "tools": [_mcp_tool()]}},
        {"type": "session.created", "event_id": "e1", "session": {"id": "s", "tools": [_mcp_tool()]}},
        {"type": "session.updated", "event_id": "e2", "session": {"id": "s", "tools": [_mcp_tool()]}},
        {"type": "response.create", "response": {"tools": [_mcp_tool()], "instructions": "1"}},
    ],
    ids=lambda e: e["type"],
)
@pytest.mark.parametrize("spaced", [False, True], ids=["compact", "spaced"])
def test_mcp_authorization_and_headers_are_masked(event: dict, spaced: bool) -> None:
    raw = json.dumps(event, separators=(", ", ": ") if spaced else (",", ":")).encode()
    out, changed = redact_payload(raw)
    assert changed and TOKEN.encode() not in out
    # Only the secret values changed; the rest is the same event, byte for byte.
    expected = json.loads(raw)
    tools = (expected.get("session") or expected.get("response"))["tools"]
    tools[0]["authorization"] = MARKER
    tools[0]["headers"] = {"X-Api-Token": MARKER, "X-Retry": MARKER}
    assert json.loads(out) == expected
    assert out == json.dumps(expected, separators=(", ", ": ") if spaced else (",", ":")).encode()


def test_short_header_values_do_not_clobber_the_rest_of_the_message() -> None:
    raw = b'{"type":"session.update","session":{"max_output_tokens":1,"note":"1","tools":[{"type":"mcp","headers":{"X-Retry":"1"}}]}}'
    out, changed = redact_payload(raw)
    assert changed
    assert json.loads(out)["session"]["max_output_tokens"] == 1
    assert json.loads(out)["session"]["tools"][0]["headers"] == {"X-Retry": MARKER}


def test_client_secret_value_in_a_server_message_is_masked() -> None:
    raw = json.dumps(
        {"type": "session.created", "session": {"id": "s", "client_secret": {"value": EK, "expires_at": 1760000000}}}
    ).encode()
    out, changed = redact_payload(raw)
    assert changed and EK.encode() not in out
    assert json.loads(out)["session"]["client_secret"] == {"value": MARKER, "expires_at": 1760000000}


def test_client_secret_string_and_stray_keys_anywhere() -> None:
    raw = json.dumps(
        {"type": "conversation.item.create", "client_secret": "cs-PLANTED",
         "item": {"content": [{"type": "input_text", "text": f"my key is {KEY} and {EK}, thanks"}]}}
    ).encode()
    out, changed = redact_payload(raw)
    assert changed
    for s in (b"cs-PLANTED", KEY.encode(), EK.encode()):
        assert s not in out
    assert json.loads(out)["item"]["content"][0]["text"] == f"my key is {MARKER} and {MARKER}, thanks"


def test_secrets_written_with_json_escapes_are_masked() -> None:
    secret = "tok/with\"quote/é"
    raw = json.dumps({"type": "session.update", "session": {"tools": [{"type": "mcp", "authorization": secret}]}}).encode()
    assert b"\\u00e9" in raw and b'\\"' in raw
    out, changed = redact_payload(raw)
    assert changed and json.loads(out)["session"]["tools"][0]["authorization"] == MARKER
    slashed = raw.replace(b"/", b"\\/")
    out, changed = redact_payload(slashed)
    assert changed and json.loads(out)["session"]["tools"][0]["authorization"] == MARKER


def test_key_in_invalid_json_is_scrubbed() -> None:
    out, changed = redact_payload(f'{{"type": "session.update", "authorization": "Bearer {KEY}", oops'.encode())
    assert changed and KEY.encode() not in out and MARKER.encode() in out


def test_messages_without_secrets_are_returned_unchanged() -> None:
    audio = json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(os.urandom(48000)).decode()}).encode()
    for raw in (audio, b"", b"\x00\xff", b'{"type":"response.create","response":{"headers_note":"x"}}',
                b'{"type":"session.update","session":{"tools":[{"type":"function","name":"headers"}]}}'):
        assert redact_payload(raw) == (raw, False)
