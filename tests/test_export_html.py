"""The HTML export opened in a real headless Chromium (Debian's, driven by playwright)."""

from __future__ import annotations

import html
import json
import re
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, RTPROXY
from tests.session_helpers import record_session

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
#: Screenshots land here too, so a person can look at them after a run.
SHOT_DIR = Path(os.environ.get("RTPROXY_SHOT_DIR", ROOT / ".test-artifacts"))


def _need_browser() -> None:
    missing = []
    if not os.path.exists(CHROMIUM):
        missing.append(f"{CHROMIUM} (run scripts/install_browser.sh)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if missing:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests; missing " + ", ".join(missing))
        pytest.skip("no headless browser: missing " + ", ".join(missing))


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_session(tmp_path_factory.mktemp("html") / "rec")


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RTPROXY, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120)


def open_page(browser, html: Path):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    problems: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("request", lambda r: requests.append(r.url))
    page.goto(html.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=30000)
    return page, problems, requests


def test_page_renders_counts_and_shows_event_json(browser, rec: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "session.html"
    p = run("export", rec, "--format", "html", "-o", out)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in run("show", rec, "--json").stdout.splitlines()]
    n_events = sum(1 for d in lines if d["kind"] == "message")
    summary = [json.loads(x) for x in run("show", rec, "--summary", "--json").stdout.splitlines()]
    n_resp = sum(1 for d in summary if d["kind"] == "response")
    errors = [d for d in summary if d["kind"] == "error"]
    assert n_resp == 1 and len(errors) == 2

    page, problems, requests = open_page(browser, out)
    assert page.locator("#n-events").text_content() == str(n_events)
    assert page.locator("#n-responses").text_content() == str(n_resp)
    assert page.locator("#responses tr.resp").count() == n_resp
    assert page.locator("#errors tr.err").count() == 2
    assert "completed" in page.locator("#responses tr.resp").first.text_content()
    assert "response.create" in page.locator("#errors tr.err").first.text_content()
    assert page.evaluate("rtproxy.count") == n_events
    assert int(page.evaluate("document.body.dataset.drawn")) > 0
    # audio bars for both sides, each a playable clip: WebM (Opus) by default
    bars = page.evaluate("rtproxy.data.bars")
    assert {b["side"] for b in bars} == {0, 1}
    assert page.evaluate("rtproxy.data.clip_type") == "audio/webm"
    assert page.evaluate("atob(document.getElementById('clip-0').textContent).slice(0, 4)") == "\x1aE\xdf\xa3"
    SHOT_DIR.mkdir(exist_ok=True)
    shot = tmp_path / "session.png"
    page.screenshot(path=str(shot), full_page=True)
    shutil.copy(shot, SHOT_DIR / "html_export.png")
    assert shot.stat().st_size > 10_000

    # click the event that caused the first error, zoomed in so it stands alone
    cause = errors[0]["cause_index"]
    page.evaluate(f"rtproxy.focus({cause})")
    for _ in range(6):
        page.click("#zin")
    box = page.locator("#tl").bounding_box()
    x, y = page.evaluate(f"[rtproxy.xOf({cause}), rtproxy.yOf({cause})]")
    page.evaluate("document.body.dataset.selected = ''")
    page.mouse.click(box["x"] + x, box["y"] + y)
    assert page.evaluate("document.body.dataset.selected") == str(cause)
    shown = json.loads(page.locator("#json").text_content())
    assert shown == {"type": "response.create", "event_id": "evt_rc2"}
    assert "this event caused an error" in page.locator("#sel").text_content()
    # an audio delta's JSON is shown without its base64
    delta = next(i for i, d in enumerate(d for d in lines if d["kind"] == "message") if d["type"] == "response.output_audio.delta")
    page.evaluate(f"rtproxy.select({delta})")
    text = page.locator("#json").text_content()
    assert "bytes of audio]" in text and len(text) < 1000
    page.screenshot(path=str(SHOT_DIR / "html_export_selected.png"), full_page=True)
    assert problems == []
    assert all(u.startswith(("file:", "blob:", "data:")) for u in requests), requests


def test_error_row_selects_error_event(browser, rec: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "s.html"
    assert run("export", rec, "--format", "html", "-o", out).returncode == 0
    page, problems, _ = open_page(browser, out)
    page.locator("#errors tr.err").nth(1).click()
    shown = json.loads(page.locator("#json").text_content())
    assert shown["type"] == "error" and shown["error"]["code"] == "invalid_value"
    assert "caused by" in page.locator("#sel").text_content() and "not.a.real.event" in page.locator("#sel").text_content()
    assert problems == []


@pytest.mark.parametrize("mode", ["speech", "full"])
def test_audio_bars_decode_in_the_browser_and_play_on_click(browser, rec: Path, tmp_path: Path, mode: str) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "a.html"
    assert run("export", rec, "--format", "html", "--audio", mode, "-o", out).returncode == 0
    page, problems, _ = open_page(browser, out)
    assert page.evaluate("rtproxy.data.clip_type") == {"speech": "audio/webm", "full": "audio/wav"}[mode]
    bars = page.evaluate("rtproxy.data.bars")
    # Chromium decodes each clip, and its length is the bar's
    for b in bars:
        secs = page.evaluate(
            """(clip) => new Promise((ok, bad) => {
                const s = atob(document.getElementById("clip-" + clip).textContent);
                const u8 = new Uint8Array(s.length);
                for (let i = 0; i < s.length; i++) u8[i] = s.charCodeAt(i);
                const a = new Audio(URL.createObjectURL(new Blob([u8], {type: rtproxy.data.clip_type})));
                a.onloadedmetadata = () => ok(a.duration);
                a.onerror = () => bad("cannot decode clip " + clip);
            })""",
            b["clip"],
        )
        # Opus codes 20 ms frames: its clips may end up to a frame late
        assert secs == pytest.approx((b["t1"] - b["t0"]) / 1000, abs=0.01 if mode == "full" else 0.03)
    users = [b for b in bars if b["side"] == 0]
    # the 1.2 s the client sent, its quiet 100 ms appends left out of the page
    assert users[-1]["t1"] - users[0]["t0"] <= 1200 + 1
    assert 400 <= sum(b["t1"] - b["t0"] for b in users) <= 1200 + 1
    user = max(users, key=lambda b: b["t1"] - b["t0"])
    asst = next(b for b in bars if b["side"] == 1)
    assert (asst["t1"] - asst["t0"]) == pytest.approx(300, abs=1)  # 600 ms sent, truncated at 300
    # click in the middle of the user's bar: its clip plays from there
    page.click("#fit")
    box = page.locator("#tl").bounding_box()
    mid = (user["t0"] + user["t1"]) / 2
    x = page.evaluate(f"(() => {{const [a, b] = rtproxy.view; return ({mid} - a) / (b - a) * {box['width']};}})()")
    page.mouse.click(box["x"] + x, box["y"] + 62 + 10)
    clip, at = page.evaluate("document.body.dataset.playing").split("@")
    assert int(clip) == user["clip"] and abs(int(at) - (mid - user["t0"])) < 30
    assert problems == []


def test_hostile_recording_runs_no_script_and_the_timeline_draws(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.hostile_recording import HOSTILE, HTML, write_hostile

    rec = write_hostile(tmp_path / "x<img src=x onerror=window.pwned=9><script>window.pwned=8<\\script>.rtrec")
    out = tmp_path / "hostile.html"
    p = run("export", rec, "--format", "html", "-o", out)
    assert p.returncode == 0, p.stderr
    page_text = out.read_text(encoding="utf-8")
    # the data blocks hold no "<" at all: nothing in them can end the element
    blocks = re.findall(r'<script type="[a-z/]+" id="rt-[a-z]+">(.*?)</script>', page_text, re.S)
    assert len(blocks) == 2
    for block in blocks:
        assert "<" not in block and ">" not in block and "&" not in block

    page, problems, requests = open_page(browser, out)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.wait_for_timeout(300)  # an injected onerror/onload would have fired by now
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert problems == [] and dialogs == []
    assert all(u.startswith("file:") or u.startswith("blob:") or u.startswith("data:") for u in requests), requests
    # only the page's own scripts and elements exist
    assert page.evaluate("document.querySelectorAll('script:not([type])').length") == 1
    assert page.evaluate("document.querySelectorAll('img, svg, a, iframe, object, embed').length") == 0
    # the timeline drew every event, and the data reads back exactly
    n = sum(1 for x in run("show", rec, "--json").stdout.splitlines() if json.loads(x)["kind"] == "message")
    assert page.evaluate("rtproxy.count") == n
    assert int(page.evaluate("document.body.dataset.drawn")) > 0
    assert page.evaluate("rtproxy.data.summary.header.model") == "m\x1b]0;model\x07" + HTML
    assert page.locator("#responses tr.resp").count() >= 1
    assert HTML[:60] in page.locator("#responses").text_content()
    assert page.locator("#errors tr.err").count() == 1
    # the hostile text is shown as text in the event's JSON
    create = page.evaluate("rtproxy.data.types").index("conversation.item.create")
    i = page.evaluate(f"rtproxy.data.ev.type.indexOf({create})")
    page.evaluate(f"rtproxy.select({i})")
    shown = json.loads(page.locator("#json").text_content())
    assert shown["item"]["content"][0]["text"] == HOSTILE
    assert page.evaluate("typeof window.pwned") == "undefined"
    # the findings quote the recording: shown as text, in the table and when clicked
    report = json.loads(run("check", rec, "--format", "json").stdout)["files"][0]["findings"]
    rows = page.locator("#findings tr.fnd")
    assert rows.count() == len(report) >= 5
    close = next(k for k, f in enumerate(page.evaluate("rtproxy.data.findings")) if f["i"] is None)
    assert "</script><script>window.pwned=1" in rows.nth(close).text_content()
    rows.nth(close).click()
    assert "</script><script>window.pwned=1" in page.locator("#sel").text_content()
    assert page.evaluate("typeof window.pwned") == "undefined" and problems == [] and dialogs == []
    assert page.evaluate("document.querySelectorAll('img, svg, a, iframe, object, embed').length") == 0


#: What a finding quotes from a hostile recording (a function's name, a call id).
EVIL = "</script><img src=x onerror=window.pwned=7><script>window.pwned=6</script>&amp;"


def _with_findings(tmp_path: Path) -> Path:
    """A truncate 4 s past the 1 s of audio received (RT002), a function call never answered
    whose name and call_id are hostile (RT007), an abnormal close (RT017: no event)."""
    from tests.check_helpers import response, start, write

    item = {"id": "item_fc", "type": "function_call", "call_id": "call_" + EVIL, "name": "get_" + EVIL, "arguments": "{}"}
    ev = start() + response(100) + [
        (400, "client", {"type": "conversation.item.truncate", "event_id": "ev_tr", "item_id": "item_a",
                         "content_index": 0, "audio_end_ms": 5000}),
        (500, "server", {"type": "response.created", "event_id": "ev_c2", "response": {"id": "resp_2"}}),
        (501, "server", {"type": "response.output_item.added", "event_id": "ev_ia2", "response_id": "resp_2",
                         "output_index": 0, "item": item}),
        (502, "server", {"type": "response.function_call_arguments.done", "event_id": "ev_ad2", "response_id": "resp_2",
                         "item_id": "item_fc", "output_index": 0, "call_id": item["call_id"], "name": item["name"],
                         "arguments": "{}"}),
        (503, "server", {"type": "response.output_item.done", "event_id": "ev_id2", "response_id": "resp_2",
                         "output_index": 0, "item": item}),
        (504, "server", {"type": "response.done", "event_id": "ev_d2",
                         "response": {"id": "resp_2", "status": "completed", "output": [item]}}),
    ]
    return write(tmp_path, ev, "findings.rtrec", close=(1006, "", "server"))


def _page_data(page: str) -> dict:
    """The page's data object, as the page inflates it."""
    import base64
    import zlib

    block = re.search(r'<script type="text/plain" id="rt-data">(.*?)</script>', page, re.S)
    assert block is not None
    return json.loads(zlib.decompress(base64.b64decode(block.group(1))))


def test_page_holds_the_findings_of_check_escaped(tmp_path: Path) -> None:
    rec = _with_findings(tmp_path)
    out = tmp_path / "f.html"
    p = run("export", rec, "--format", "html", "-o", out)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("wrote ") and len(p.stdout.splitlines()) == 1
    report = json.loads(run("check", rec, "--format", "json").stdout)["files"][0]["findings"]
    assert [f["code"] for f in report] == ["RT002", "RT007", "RT017"]
    page = out.read_text(encoding="utf-8")
    data = _page_data(page)
    # the same findings, times in the page's ms, rows in time order
    assert [(f["code"], f["severity"], f["message"], f["i"]) for f in data["findings"]] == \
        [(f["code"], f["severity"], f["message"], f["event_index"]) for f in report]
    assert [f["t"] for f in data["findings"]] == [round(f["t"] * 1000, 3) for f in report]
    assert data["findings_error"] is None
    table = re.search(r'<table id="findings">(.*?)</table>', page, re.S).group(1)  # type: ignore[union-attr]
    rows = re.findall(r'<tr class="fnd sev-(\w+)" data-f="(\d+)"[^>]*><td>(\w+)</td><td>(RT\d+)</td><td>([\d.]+) s</td>', table)
    assert rows == [("error", "0", "error", "RT002", "0.400"), ("warning", "1", "warning", "RT007", "0.502"),
                    ("warning", "2", "warning", "RT017", "0.504")]
    assert "<tr><th>Findings</th><td>1 error, 2 warnings</td></tr>" in page
    assert '<b id="n-findings">3</b>' in page
    # the hostile name is text: escaped in the table, no "<" at all in the data blocks
    assert html.escape("get_" + EVIL) in table and EVIL not in page
    assert page.count("</script>") == page.count("<script")
    for block in re.findall(r'<script type="text/plain" id="rt-[a-z]+">(.*?)</script>', page, re.S):
        assert "<" not in block


def test_page_of_a_clean_recording_says_no_findings(tmp_path: Path) -> None:
    from tests.check_helpers import response, start, write

    rec = write(tmp_path, start() + response(100), "clean.rtrec")
    out = tmp_path / "c.html"
    assert run("export", rec, "--format", "html", "--audio", "none", "-o", out).returncode == 0
    page = out.read_text(encoding="utf-8")
    assert _page_data(page)["findings"] == []
    assert '<td colspan="4">no findings</td>' in page and "<tr><th>Findings</th><td>none (rtproxy check)</td></tr>" in page


def test_page_renders_when_check_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import rtproxy.check.engine
    from rtproxy.export.files import export_html

    rec = _with_findings(tmp_path)

    def broken(*a: object, **k: object) -> None:
        raise RuntimeError("a rule the check could not run <b>x</b>")

    monkeypatch.setattr(rtproxy.check.engine.Checker, "finish", broken)
    out = tmp_path / "broken.html"
    assert export_html(str(rec), str(out), audio="none") > 0
    assert capsys.readouterr() == ("", "")
    page = out.read_text(encoding="utf-8")
    note = "not checked: internal error: RuntimeError: a rule the check could not run &lt;b&gt;x&lt;/b&gt;"
    assert f'<td colspan="4">{note}</td>' in page and f"<tr><th>Findings</th><td>{note}</td></tr>" in page
    assert '<tr class="resp' in page  # the rest of the page is all there
    data = _page_data(page)
    assert data["findings"] == [] and data["findings_error"].startswith("internal error: RuntimeError")
    # a bad [tool.rtproxy.check] setting: the same, through the command line
    monkeypatch.undo()
    (tmp_path / "pyproject.toml").write_text('[tool.rtproxy.check]\nselect = ["RT999"]\n')
    p = subprocess.run([*RTPROXY, "export", str(rec), "--format", "html", "--audio", "none", "-o", str(out)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 0 and p.stderr == "" and p.stdout.startswith("wrote ")
    assert "not checked: " in out.read_text(encoding="utf-8") and "RT999" in _page_data(out.read_text())["findings_error"]


def test_finding_row_and_mark_show_the_event_and_move_the_timeline(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rec = _with_findings(tmp_path)
    out = tmp_path / "f.html"
    assert run("export", rec, "--format", "html", "-o", out).returncode == 0
    messages = [json.loads(x) for x in run("show", rec, "--json").stdout.splitlines()]
    messages = [m for m in messages if m["kind"] == "message"]
    page, problems, requests = open_page(browser, out)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    findings = page.evaluate("rtproxy.data.findings")
    assert [f["code"] for f in findings] == ["RT002", "RT007", "RT017"]
    assert page.locator("#findings tr.fnd").count() == 3
    assert page.evaluate("document.body.dataset.marks") == "3"
    # zoom far out of the truncate, then click its row: its JSON, and the timeline on it
    page.evaluate("rtproxy.focus(0)")
    for _ in range(8):
        page.click("#zin")
    tr = findings[0]
    page.locator("#findings tr.fnd").nth(0).click()
    assert page.evaluate("document.body.dataset.selected") == str(tr["i"])
    assert page.evaluate("document.body.dataset.finding") == "0"
    assert json.loads(page.locator("#json").text_content()) == json.loads(messages[tr["i"]]["text"])
    assert "RT002 error: truncate of item item_a at 5000 ms" in page.locator("#sel").text_content()
    v0, v1 = page.evaluate("rtproxy.view")
    assert v0 < tr["t"] < v1
    # click the unanswered call's mark on the canvas: the call's event, the hostile name as text
    page.click("#fit")
    box = page.locator("#tl").bounding_box()
    x, y = page.evaluate("[rtproxy.fxOf(1), rtproxy.fyOf()]")
    page.evaluate("document.body.dataset.selected = ''")
    page.mouse.click(box["x"] + x, box["y"] + y)
    call = findings[1]
    assert page.evaluate("document.body.dataset.finding") == "1"
    assert page.evaluate("document.body.dataset.selected") == str(call["i"])
    shown = json.loads(page.locator("#json").text_content())
    assert shown["type"] == "response.function_call_arguments.done" and shown["name"] == "get_" + EVIL
    assert f"call call_{EVIL} (get_{EVIL}) never answered" in page.locator("#sel").text_content()
    # the close's finding has no event: the timeline at its time, the finding itself shown
    page.locator("#findings tr.fnd").nth(2).click()
    assert page.evaluate("document.body.dataset.finding") == "2" and page.evaluate("document.body.dataset.selected") == ""
    assert json.loads(page.locator("#json").text_content())["code"] == "RT017"
    SHOT_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOT_DIR / "html_export_findings.png"), full_page=True)
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.evaluate("document.querySelectorAll('img, svg, a, iframe, object, embed').length") == 0
    assert problems == [] and dialogs == []
    assert all(u.startswith(("file:", "blob:", "data:")) for u in requests), requests


def _long_speech_recording(path: Path, seconds: float = 8.0) -> Path:
    """A client streaming ``seconds`` of real speech (100 ms appends), one server audio answer."""
    import base64 as b64

    from rtproxy.io.format import start_recording
    from tests.realtime_server import speech_pcm

    pcm = speech_pcm()
    while len(pcm) < int(seconds * 48000):
        pcm += pcm
    pcm = pcm[: int(seconds * 48000)]
    w = start_recording(path, url="ws://127.0.0.1/v1/realtime?model=gpt-realtime", started=1.7e9,
                        recorder="test", model="gpt-realtime")
    for i in range(0, len(pcm), 4800):
        ev = {"type": "input_audio_buffer.append", "audio": b64.b64encode(pcm[i : i + 4800]).decode()}
        w.write_message(i * 1_000_000_000 // 48000, True, True, json.dumps(ev).encode())
    t0 = int(seconds * 1e9) + 500_000_000
    for k, i in enumerate(range(0, 48000 * 3, 9600)):
        ev = {"type": "response.output_audio.delta", "response_id": "resp_1", "item_id": "item_1",
              "delta": b64.b64encode(pcm[i : i + 9600]).decode()}
        w.write_message(t0 + k * 1_000_000, False, True, json.dumps(ev).encode())
    w.close()
    return path


def test_speech_audio_plays_and_seeks_in_the_browser(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rec = _long_speech_recording(tmp_path / "long.rtrec")
    out = tmp_path / "speech.html"
    p = run("export", rec, "--format", "html", "-o", out)  # --audio speech is the default
    assert p.returncode == 0, p.stderr
    page, problems, requests = open_page(browser, out)
    assert page.evaluate("rtproxy.data.clip_type") == "audio/webm"
    bars = page.evaluate("rtproxy.data.bars")
    user = max((b for b in bars if b["side"] == 0), key=lambda b: b["t1"] - b["t0"])
    dur = (user["t1"] - user["t0"]) / 1000  # the speech, its quiet appends left out
    assert 5 <= dur <= 8
    # Opus at speech quality: about 2 KB a second (16 kbit/s), against 48 KB of PCM
    clip_bytes = page.evaluate(f"atob(document.getElementById('clip-{user['clip']}').textContent).length")
    assert clip_bytes < dur * 3000
    # the browser decodes it to speech of the bar's length (not silence)
    decoded = page.evaluate(
        """(clip) => {
            const s = atob(document.getElementById("clip-" + clip).textContent);
            const u8 = new Uint8Array(s.length);
            for (let i = 0; i < s.length; i++) u8[i] = s.charCodeAt(i);
            return new OfflineAudioContext(1, 48000, 48000).decodeAudioData(u8.buffer).then(
                b => { const x = b.getChannelData(0); let peak = 0;
                       for (let i = 0; i < x.length; i++) peak = Math.max(peak, Math.abs(x[i]));
                       return [b.duration, peak]; });
        }""",
        user["clip"],
    )
    assert decoded[0] == pytest.approx(dur, abs=0.03) and decoded[1] > 0.05
    # seeking: from any point of the clip
    for at in (dur * 0.8, dur * 0.15, dur / 2):
        where = page.evaluate(
            """([clip, at]) => new Promise((ok, bad) => {
                const s = atob(document.getElementById("clip-" + clip).textContent);
                const u8 = new Uint8Array(s.length);
                for (let i = 0; i < s.length; i++) u8[i] = s.charCodeAt(i);
                const a = new Audio(URL.createObjectURL(new Blob([u8], {type: rtproxy.data.clip_type})));
                a.onloadedmetadata = () => { a.onseeked = () => ok([a.currentTime, a.seekable.end(0)]); a.currentTime = at; };
                a.onerror = () => bad("cannot decode clip " + clip);
            })""",
            [user["clip"], at],
        )
        assert where[0] == pytest.approx(at, abs=0.05) and where[1] == pytest.approx(dur, abs=0.05)
    # a click on the bar plays it from the point clicked, and it plays on
    page.click("#fit")
    box = page.locator("#tl").bounding_box()
    at_ms = user["t0"] + 600 * dur
    x = page.evaluate(f"(() => {{const [a, b] = rtproxy.view; return ({at_ms} - a) / (b - a) * {box['width']};}})()")
    page.mouse.click(box["x"] + x, box["y"] + 62 + 10)
    page.wait_for_function("rtproxy.audio && rtproxy.audio.readyState >= 1", timeout=10000)
    start = page.evaluate("rtproxy.audio.currentTime")
    assert start == pytest.approx(0.6 * dur, abs=0.1)
    page.wait_for_function(f"rtproxy.audio.currentTime > {start} + 0.3", timeout=10000)
    assert problems == []
    assert all(u.startswith(("file:", "blob:", "data:")) for u in requests), requests


@pytest.mark.parametrize("args", [["--audio", "none"], ["--no-audio"]])
def test_no_audio_page_has_no_clips(browser, tmp_path: Path, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    rec = _long_speech_recording(tmp_path / "long.rtrec", 2.0)
    out = tmp_path / "none.html"
    assert run("export", rec, "--format", "html", *args, "-o", out).returncode == 0
    assert 'id="clip-' not in out.read_text(encoding="utf-8")
    page, problems, _ = open_page(browser, out)
    assert page.evaluate("rtproxy.data.bars") == [] and page.evaluate("rtproxy.count") == 20 + 15
    assert problems == []


def test_contradicting_audio_options_are_an_error(tmp_path: Path) -> None:
    rec = _long_speech_recording(tmp_path / "long.rtrec", 1.0)
    p = run("export", rec, "--format", "html", "--no-audio", "--audio", "full", "-o", tmp_path / "x.html")
    assert p.returncode == 2 and "contradict" in p.stderr


def test_clip_encoder_in_worker_processes_gives_what_one_process_gives() -> None:
    """Past POOL_AFTER_S seconds of audio the page's clips are encoded in worker
    processes while the recording is read: the same packets as encoding them here, in
    the order asked, the ones not asked for dropped."""
    import io

    import av
    import numpy as np

    from rtproxy.export.speech import ClipEncoder, encode_speech

    rng = np.random.default_rng(3)
    tracks = [(np.sin(np.arange(24000 * s) / (3 + s)) * 6000 + rng.standard_normal(24000 * s) * 300)
              .astype("<i2").tobytes() for s in (4, 7, 2, 5)]
    with ClipEncoder(workers=2, pool_after_s=10) as enc:
        ids = [enc.submit(t) for t in tracks]
        assert enc._pool is not None  # 18 s given: the workers have started
        seen: list[tuple[int, int]] = []
        got = enc.results([ids[3], ids[0], ids[3]], progress=lambda what, done, total: seen.append((done, total)))
    def packets(data: bytes) -> list[tuple[int | None, bytes]]:
        with av.open(io.BytesIO(data)) as c:
            return [(p.pts, bytes(p)) for p in c.demux() if p.size]

    want = [packets(encode_speech(tracks[3])), packets(encode_speech(tracks[0]))]
    assert [packets(g) for g in got] == [want[0], want[1], want[0]]
    assert seen[0] == (0, 9) and seen[-1] == (9, 9)
    # A worker that dies (killed, out of memory) leaves its clips to this process.
    import signal

    with ClipEncoder(workers=2, pool_after_s=0) as enc:
        ids = [enc.submit(t) for t in tracks]
        os.kill(enc.pids[0], signal.SIGKILL)
        got = enc.results()
    assert [packets(g) for g in got] == [packets(encode_speech(t)) for t in tracks]


def _marked(mark: str) -> list[tuple[int, str]]:
    """Processes (pid, command line) whose environment holds ``mark``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if mark.encode() in (d / "environ").read_bytes():
                found.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
@pytest.mark.parametrize("how", ["ctrl-c", "killed"])
def test_stopping_an_html_export_leaves_no_encoder_running(tmp_path: Path, how: str) -> None:
    """A long page's clips are encoded in worker processes: Ctrl-C stops the export at once
    with click's 'Aborted!' (no worker traceback), and killing the export leaves no worker
    or helper process behind."""
    import signal
    import sys
    import time
    import uuid

    rec = _long_speech_recording(tmp_path / "long.rtrec", seconds=120.0)
    mark = f"RTPROXY_TEST_MARK={uuid.uuid4().hex}"
    env = {**os.environ, mark.split("=")[0]: mark.split("=")[1]}
    p = subprocess.Popen([sys.executable, "-m", "rtproxy", "export", "--format", "html", str(rec), "-o",
                          str(tmp_path / "page.html")], env=env, cwd=ROOT, start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any("rtproxy.export.speech" in cmd for _, cmd in _marked(mark)):
            assert p.poll() is None and time.monotonic() < deadline, "no encoder worker started"
            time.sleep(0.05)
        if how == "ctrl-c":
            os.killpg(p.pid, signal.SIGINT)
        else:
            p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        _, err = p.communicate(timeout=30)
        if how == "ctrl-c":
            assert p.returncode == 1 and err.strip() == "Aborted!", err
        left = _marked(mark)
        deadline = time.monotonic() + 10
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = _marked(mark)
        assert not left, f"still running after the export ended: {left}"
        assert not (tmp_path / "page.html").exists()
    finally:
        for pid, _ in _marked(mark):
            os.kill(pid, signal.SIGKILL)
