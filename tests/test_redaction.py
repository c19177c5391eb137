"""Every place a secret can travel (../shared/PROTOCOL.md, docs/FORMAT.md "Secrets") is masked."""

from __future__ import annotations

import base64
import json
import os

import pytest

from rtproxy.protocol.redaction import MARKER, redact_headers, redact_payload, redact_subprotocols, redact_url

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


# ------------------------------------------------- semantic, not textual
from rtproxy.protocol.redaction import Redactor  # noqa: E402


def test_escaped_keys_are_found_after_json_decoding() -> None:
    for text in ['"\\u0073k-proj-PLANTEDsecret0123456789"', '"\\u0065k_68a1b2c3d4e5f6PLANTED"',
                 '"sk-proj-PLANTED\\u0041secret0123456789"']:
        out, changed = redact_payload(('{"type":"x","text":' + text + "}").encode())
        assert changed and b"PLANTED" not in out
        assert json.loads(out)["text"] == MARKER


def test_object_keys_and_every_duplicate_member_are_redacted() -> None:
    msg = f'{{"type":"x","meta":{{"{KEY}":1}},"authorization":"{TOKEN}a","authorization":"{TOKEN}b"}}'.encode()
    out, changed = redact_payload(msg)
    assert changed and b"PLANTED" not in out
    assert out.count(MARKER.encode()) == 3


def test_mcp_headers_as_a_list_or_nested_and_url_tokens() -> None:
    msg = json.dumps({"type": "session.update", "session": {"tools": [
        {"type": "mcp", "server_url": f"https://mcp.example.com/sse?token={TOKEN}&x=1", "headers": [["X-Token", TOKEN + "1"]]},
        {"type": "mcp", "headers": {"a": {"b": TOKEN + "2"}}}]}}).encode()
    out, changed = redact_payload(msg)
    assert changed and b"PLANTED" not in out
    tools = json.loads(out)["session"]["tools"]
    assert tools[0]["server_url"].startswith("https://mcp.example.com/sse?token=") and "x=1" in tools[0]["server_url"]


def test_bearer_tokens_and_sk_underscore_keys_in_text() -> None:
    out, changed = redact_payload(b'{"type":"x","text":"Bearer abcdefPLANTED1234 and sk_live_PLANTED0123456789ab"}')
    assert changed and b"PLANTED" not in out and b"Bearer " in out


def test_words_that_look_like_key_prefixes_are_kept() -> None:
    msg = b'{"type":"x","name":"ask_question_about_the_weather","text":"a risk-free-investment-strategy"}'
    assert redact_payload(msg) == (msg, False)


def test_deep_nesting_is_walked_without_recursion() -> None:
    msg = ('{"type":"x","headers":' + "[" * 20000 + f'"{KEY}"' + "]" * 20000 + "}").encode()
    out, changed = redact_payload(msg)
    assert changed and b"PLANTED" not in out and len(out) > 40000


def test_known_credentials_are_removed_wherever_they_are_echoed() -> None:
    r = Redactor()
    azure = "0123456789abcdefPLANTEDazure"
    r.learn_request("wss://x/openai/realtime?api-version=1", [("api-key", azure), ("Authorization", "Bearer PLANTEDbearer99")])
    out, changed = r.payload(json.dumps({"type": "error", "error": {"message": f"key {azure} and PLANTEDbearer99 refused"}}).encode())
    assert changed and b"PLANTED" not in out
    hdrs, names = r.headers([("X-Echo", azure), ("WWW-Authenticate", 'Bearer error="invalid_token"')])
    assert all("PLANTED" not in v for _, v in hdrs) and names == ["X-Echo", "WWW-Authenticate"]


@pytest.mark.parametrize("param", ["subscription-key", "access-token", "refresh_token", "Subscription_Key"])
def test_more_credential_query_parameters(param: str) -> None:
    out, redacted = redact_url(f"wss://x/realtime?model=m&{param}={TOKEN}")
    assert TOKEN not in out and redacted == [param]


@pytest.mark.parametrize("name", ["Ocp-Apim-Subscription-Key", "WWW-Authenticate", "ocp-apim-subscription-key"])
def test_more_secret_headers(name: str) -> None:
    out, redacted = redact_headers([(name, TOKEN)])
    assert TOKEN not in out[0][1] and redacted == [name]


def test_untouched_bytes_stay_exact_around_a_redaction() -> None:
    msg = '{"type":"x",  "text" : "caf\u00e9 \\ud800 ok", "authorization":"PLANTEDzz"  }'.encode()
    out, changed = redact_payload(msg)
    assert changed
    assert out == msg.replace(b'"PLANTEDzz"', json.dumps(MARKER).encode())


def test_any_bytes_never_raise() -> None:
    import random

    rng = random.Random(7)
    alphabet = b'{}[]:,"\\ua0sk-_ek_Bearer headers authorization \xff\xfe\xed\xa0\x80'
    for _ in range(3000):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        out, changed = redact_payload(data)
        assert isinstance(out, bytes) and changed == (out != data)


def test_secrets_beside_and_inside_a_large_image_are_still_masked() -> None:
    """A big message's long base64 runs are not searched for trigger words; every
    secret around them, and a known one inside one, is still removed."""
    import random

    image = base64.b64encode(random.Random(3).randbytes(3 << 20)).decode()  # 4 MiB, a photo's size
    def item(*parts: dict) -> bytes:
        return json.dumps({"type": "conversation.item.create",
                           "item": {"type": "message", "role": "user", "content": list(parts)}}).encode()
    img = {"type": "input_image", "image_url": "data:image/jpeg;base64," + image}
    cases = [
        item(img, {"type": "input_text", "text": f"my key is {KEY}"}),
        item({"type": "input_text", "text": f"{EK} and Bearer abcdefPLANTED1234"}, img),
        item(img, {"type": "input_text", "api_key": "PLANTEDplainvalue"}),
        item(img).replace(b'"message"', b'"message","t":"\\u0073k-proj-PLANTEDescaped0123456789"'),
        item({**img, "image_url": img["image_url"] + "Bearer"}, {"text": "Bearer PLANTEDafter0099"}),
    ]
    for msg in cases:
        out, changed = redact_payload(msg)
        assert changed and b"PLANTED" not in out, msg[-200:]
        assert image.encode() in out  # the image itself untouched
    # An alphanumeric key (Azure's are hex) this session used, in the middle of a run.
    r = Redactor()
    azure = "0123456789abcdefPLANTEDazure99"
    r.learn_request("wss://x/openai/realtime?api-version=1", [("api-key", azure)])
    middle = len(image) // 2
    out, changed = r.payload(item({**img, "image_url": img["image_url"][:middle] + azure + image[middle:]}))
    assert changed and b"PLANTED" not in out
    # Words a photo's random letters spell by chance are not secrets: nothing changes.
    msg = item({**img, "image_url": img["image_url"][:middle] + "tokenheadersecretcookie" + image[middle:]})
    assert redact_payload(msg) == (msg, False)


def _deltas(text: str, cuts: list[int], typ: str = "response.output_audio_transcript.delta",
            item: str = "item_1") -> list[bytes]:
    bounds = [0, *cuts, len(text)]
    return [json.dumps({"type": typ, "event_id": f"event_{i}", "response_id": "resp_1", "item_id": item,
                        "output_index": 0, "content_index": 0, "delta": text[a:b]}).encode()
            for i, (a, b) in enumerate(zip(bounds, bounds[1:])) if b > a]


def _spelled(out: list[bytes]) -> str:
    return "".join(json.loads(o)["delta"] for o in out)


def test_a_key_spelled_out_over_many_deltas_is_masked_after_its_first_characters() -> None:
    """A model or a transcription that spells a key a few characters a delta: each
    delta is shorter than a key, so only the stream shows it. At most the prefix and
    10 characters reach the file (the file has them before the key is recognisable)."""
    import random

    key = "sk-proj-" + "Q7w3PLANTEDstreamed0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH" * 2
    text = f"Sure \u2014 your key is {key}. Anything else?"  # the dash travels as a \\u escape
    rng = random.Random(11)
    for trial in range(60):
        step = trial % 7 + 1
        cuts = list(range(step, len(text), step)) if trial < 30 else sorted(rng.sample(range(1, len(text)), 40))
        r = Redactor()
        out = [r.message(d)[0] for d in _deltas(text, cuts)]
        spelled = _spelled(out)
        before, marker, after = spelled.partition(MARKER)
        assert marker and after == ". Anything else?", (cuts, spelled)
        assert before.startswith("Sure \u2014 your key is sk-") and len(before) <= len("Sure - your key is sk-") + 10 + 7
        assert "PLANTED" not in spelled and all(b"streamed01" not in o for o in out)
    # the same for a key this session used (an Azure key is hex: no shape to see)
    azure = "0f1e2d3c4b5a69788796a5b4c3d2e1f0PLANTED"
    r = Redactor()
    r.learn_request("wss://x/openai/realtime?api-version=1", [("api-key", azure)])
    out = [r.message(d)[0] for d in _deltas(f"the key {azure} is wrong", list(range(3, 60, 3)))]
    before, marker, after = _spelled(out).partition(MARKER)
    assert marker and after == " is wrong" and len(before) < len("the key ") + 8 + 3
    # a bearer token, across deltas, in function-call arguments
    args = '{"header": "Authorization: Bearer eyJhbGciPLANTEDpayload.sig", "retry": true}'
    out = [r.message(d)[0] for d in _deltas(args, list(range(5, len(args), 5)), "response.function_call_arguments.delta")]
    assert "PLANTED" not in _spelled(out) and _spelled(out).endswith('", "retry": true}')


def test_streams_are_apart_and_ordinary_deltas_stay_exact() -> None:
    r = Redactor()
    text = "I left the desk-top app, ask_me_anything skill, sk-learn: Bearer of bad news."
    msgs = _deltas(text, list(range(3, len(text), 3)))
    assert [r.message(m) for m in msgs] == [(m, False) for m in msgs]
    # halves of a key in two different items (or event types) are two streams, not one key
    a = _deltas("see sk-proj-abc", [], item="item_a")
    b = _deltas("defghijklmnop", [], item="item_b")
    c = _deltas("defghijklmnop", [], typ="response.output_text.delta", item="item_a")
    assert [r.message(m) for m in a + b + c] == [(m, False) for m in a + b + c]
    # the same two halves in one stream: the second is masked, the rest of its bytes exact
    first, second = _deltas("see sk-proj-abc" + "defghijklmnop rest", [15])
    r2 = Redactor()
    assert r2.message(first) == (first, False)
    out, changed = r2.message(second)
    assert changed and out == second.replace(b'"defghijklmnop rest"', json.dumps(MARKER + " rest").encode())
    # audio deltas, binary messages and invalid JSON are not streams
    audio = json.dumps({"type": "response.output_audio.delta", "item_id": "i", "delta": "c2stcHJvai1hYmNkZWZnaGlq"}).encode()
    assert r2.stream(audio) == (audio, False) and r2.stream(b'{"type":"x.delta","delta":"\xff') == (b'{"type":"x.delta","delta":"\xff', False)


def test_delta_streams_written_unusually_are_read_as_a_parser_reads_them() -> None:
    """A repeated or nested "delta", an escaped member name or type, the type past the
    start, an escaped or long item_id: the stream is still the one a parser sees."""
    t = '"type":"response.output_text.delta","item_id":"item_1"'
    forms = [
        lambda d: '{%s,"delta":"x","delta":%s}' % (t, json.dumps(d)),
        lambda d: '{%s,"meta":{"delta":"x"},"delta":%s}' % (t, json.dumps(d)),
        lambda d: '{%s,"\\u0064elta":%s}' % (t, json.dumps(d)),
        lambda d: '{"event_id":"%s","item_id":"i","delta":%s,"type":"response.output_text.delta"}' % ("e" * 250, json.dumps(d)),
        lambda d: '{"type":"response.output_text.\\u0064elta","item_id":"i","delta":%s}' % json.dumps(d),
    ]
    for form in forms:
        r = Redactor()
        out = [json.loads(r.message(form(d).encode())[0])["delta"] for d in ["key sk-proj-Abcd", "efghij0123456789KLMN", " ok"]]
        assert out == ["key sk-proj-Abcd", MARKER, " ok"], form("")
    for a, b in [("it\\u0041", "it\\u0042"), ("a" * 129, "b" * 129)]:
        r = Redactor()
        seq = [("key sk-proj-Abcd", a), (" hello", b), ("efghij0123456789KLMN", a)]
        out = [json.loads(r.message(('{"type":"response.output_text.delta","item_id":"%s","delta":%s}'
                                      % (i, json.dumps(d))).encode())[0])["delta"] for d, i in seq]
        assert out == ["key sk-proj-Abcd", " hello", MARKER]


def test_stream_edge_cases_spaces_markers_and_what_is_not_a_secret() -> None:
    def spell(r: Redactor, text: str, step: int) -> str:
        return _spelled([r.message(d)[0] for d in _deltas(text, list(range(step, len(text), step)))])

    # "Bearer", 60 spaces, then the token
    assert "PLANTED" not in spell(Redactor(), "Authorization: Bearer" + " " * 60 + "eyJhbGciPLANTEDpayload.sig", 3)
    # a learned key that the key pattern also sees: one marker, not two
    r = Redactor()
    r.learn("sk-proj-Abcdef0123456789PLANTED")
    out = spell(r, "use sk-proj-Abcdef0123456789PLANTED now", 4)
    assert out.count(MARKER) == 1 and out.startswith("use sk-proj-") and out.endswith(f"{MARKER} now")
    # a cookie's value is not telling enough to mask its start in ordinary text; names with _sk_ are not keys
    r = Redactor()
    r.learn_request("wss://x/v1/realtime", [("Cookie", "consent=accepted-all-cookies")])
    text = "Your order was accepted and will ship; see my_sk_variable_name and self._sk_cache_entries."
    assert spell(r, text, 5) == text
    # the cookie's whole value is still masked
    assert "accepted-all-cookies" not in spell(r, "it said accepted-all-cookies today", 5)


def test_a_session_credential_written_with_json_escapes_is_masked_beside_a_large_image() -> None:
    token = "AbCd/EfGh+IjKl/MnOpPLANTED=="
    image = base64.b64encode(bytes(range(256)) * 1024).decode()
    for text in (token.replace("/", "\\/"), json.dumps(token)[1:-1]):
        msg = ('{"type":"conversation.item.create","item":{"type":"message","role":"user","content":['
               '{"type":"input_text","text":"my pass is ' + text + '"},'
               '{"type":"input_image","image_url":"data:image/png;base64,' + image + '"}]}}').encode()
        r = Redactor()
        r.learn_request(None, [("Authorization", "Bearer " + token)])
        out, changed = r.payload(msg)
        assert changed and b"PLANTED" not in out


def test_urls_in_long_text_are_scanned_in_linear_time() -> None:
    import time

    for text in ("a" * 200_000 + " ://?", "a://" * 50_000 + " ?", "?" + "a://" * 50_000):
        t0 = time.perf_counter()
        out, changed = redact_payload(json.dumps({"type": "x", "text": text}).encode())
        assert not changed and time.perf_counter() - t0 < 5  # was quadratic: about a minute
    out, changed = redact_payload(b'{"type":"x","text":"see x https://mcp.example.com/sse?token=PLANTED123&x=1 ok"}')
    assert changed and b"PLANTED" not in out and out.endswith(b'&x=1 ok"}')


def test_a_key_escaped_inside_a_calls_json_arguments_is_masked() -> None:
    """The arguments are JSON in a string: a key there may carry escapes of its own."""
    args = json.dumps({"key": "sk-proj-PLANTEDdouble0123456789", "q": 'caf\u00e9 "x"'}).replace("-", "\\u002d", 1)
    assert "sk\\u002dproj" in args
    out, changed = redact_payload(json.dumps({"type": "response.function_call_arguments.done", "arguments": args}).encode())
    assert changed and b"PLANTED" not in out
    assert json.loads(json.loads(out)["arguments"]) == {"key": MARKER, "q": 'caf\u00e9 "x"'}
    # an escape that spells no key is left as it was
    for text in ["code: \\u0041 is A", "a literal \\\\u002d stays"]:
        msg = json.dumps({"type": "x", "text": text}).encode()
        assert redact_payload(msg) == (msg, False)


def test_a_url_glued_to_text_or_digits_still_has_its_token_masked() -> None:
    for text in ["Visit%20https://mcp.example.com/sse?token=PLANTEDa&x=1", "1.https://mcp.example.com/sse?token=PLANTEDb",
                 "-wss://h/p?api-key=PLANTEDc", "1+ftp://u:p@h/?password=PLANTEDd_https://h/x?token=PLANTEDe",
                 "9https://h/p?token=PLANTEDf"]:
        out, changed = redact_payload(json.dumps({"type": "x", "text": text}).encode())
        assert changed and b"PLANTED" not in out, text
    # a plain key beside one spelled with escapes: both go
    args = '{"a": "sk-proj-AAAAAAAAAAAAAAAAAAAA", "b": "sk\\u002dproj-PLANTEDBBBBBBBBBBBB"}'
    out, changed = redact_payload(json.dumps({"type": "response.function_call_arguments.done", "arguments": args}).encode())
    assert changed and b"PLANTED" not in out and b"AAAAAAAA" not in out
