"""Output of ``rtproxy check``: text, JSON, GitHub workflow commands, SARIF 2.1.0. Pure.

Recordings are hostile: in text and GitHub output every control character
that came from a recording is shown escaped (``\\x1b``, ``\\u202e``), never
sent to the terminal.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from rtproxy.check.finding import SEVERITIES, Finding
from rtproxy.check.rules import RULES

__all__ = ["FileResult", "visible", "render_text", "render_json", "render_github", "render_sarif",
           "summary", "github_escape_data", "github_escape_property", "finding_line", "counts_text",
           "summary_findings_lines"]


@dataclass
class FileResult:
    """The check of one file: its findings, or the error that stopped it."""

    file: str
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None


# C0, DEL, C1, and the invisible / direction-changing format characters
_CTRL = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")


def _esc(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def visible(text: str, keep_newlines: bool = False) -> str:
    """``text`` with control and invisible characters escaped repr-style."""
    if keep_newlines:
        return "\n".join(_CTRL.sub(_esc, part) for part in text.split("\n"))
    return _CTRL.sub(_esc, text)


def summary(results: list[FileResult]) -> dict[str, Any]:
    counts = {s: 0 for s in SEVERITIES}
    for r in results:
        for f in r.findings:
            counts[f.severity] += 1
    return {
        "files": len(results),
        "files_with_findings": sum(1 for r in results if r.findings),
        "files_unreadable": sum(1 for r in results if r.error),
        "findings": sum(counts.values()),
        **{f"{s}s" if s != "info" else "info": n for s, n in counts.items()},
    }


def counts_text(findings: list[Finding]) -> str:
    """``"1 error, 2 warnings"`` (info only when there is some)."""
    n = {s: 0 for s in SEVERITIES}
    for f in findings:
        n[f.severity] += 1
    parts = [f"{n['error']} error{'s' * (n['error'] != 1)}", f"{n['warning']} warning{'s' * (n['warning'] != 1)}"]
    if n["info"]:
        parts.append(f"{n['info']} info")
    return ", ".join(parts)


def finding_line(f: Finding) -> str:
    where = f"#{f.event_index} {f.event_type or '(no type)'}" if f.event_index is not None else "(session)"
    return f"  {f.t:9.3f} s  {f.code} {f.severity:<7}  {visible(where)}: {visible(f.message)}"


def summary_findings_lines(findings: list[Finding], error: str | None = None) -> list[str]:
    """The findings part of ``rtproxy show --summary``: a head line (the counts, or
    "none"), then :func:`finding_line` per finding; ``error``: why the check did not run.
    Every value from the recording is shown through :func:`visible`."""
    if error is not None:
        return [f"  findings     not checked: {visible(error)}"]
    if not findings:
        return ["  findings     none (rtproxy check)"]
    return [f"  findings     {counts_text(findings)} (rtproxy check)", *(finding_line(f) for f in findings)]


def render_file_text(r: FileResult, style: Any = None) -> str:
    name = visible(r.file)
    if r.error is not None:
        return f"{name}: error: {visible(r.error)}\n"
    lines = [finding_line(f) for f in r.findings]
    if style is not None:
        colour = {"error": "red", "warning": "yellow", "info": "cyan"}
        lines = [style(ln, fg=colour[f.severity]) for ln, f in zip(lines, r.findings)]
    head = f"{name}: {counts_text(r.findings)}" if r.findings else f"{name}: ok"
    return "\n".join([head, *lines]) + "\n"


def render_total_text(results: list[FileResult]) -> str:
    s = summary(results)
    allf = [f for r in results for f in r.findings]
    bad = f"; {s['files_unreadable']} unreadable" if s["files_unreadable"] else ""
    return (f"checked {s['files']} file{'s' * (s['files'] != 1)}: {counts_text(allf)} "
            f"in {s['files_with_findings']} file{'s' * (s['files_with_findings'] != 1)}{bad}\n")


def render_text(results: list[FileResult], style: Any = None) -> str:
    return "".join(render_file_text(r, style) for r in results) + render_total_text(results)


def render_json(results: list[FileResult]) -> str:
    files = []
    for r in results:
        d: dict[str, Any] = {"file": r.file, "findings": [f.to_dict() for f in r.findings]}
        if r.error is not None:
            d["error"] = r.error
        files.append(d)
    return json.dumps({"files": files, "summary": summary(results)}, ensure_ascii=False, indent=2) + "\n"


def github_escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def github_escape_property(text: str) -> str:
    return github_escape_data(text).replace(":", "%3A").replace(",", "%2C")


_GH_LEVEL = {"error": "error", "warning": "warning", "info": "notice"}


def render_github(results: list[FileResult]) -> str:
    """One workflow command per finding (``::error file=...,title=...::message``)."""
    out = []
    for r in results:
        file = github_escape_property(visible(r.file, keep_newlines=True))
        if r.error is not None:
            out.append(f"::error file={file},title={github_escape_property('rtproxy check: unreadable file')}::"
                       f"{github_escape_data(visible(r.error, keep_newlines=True))}")
            continue
        for f in r.findings:
            title = github_escape_property(f"{f.code} {f.title}")
            where = f"t={f.t:.3f}s event #{f.event_index} ({f.event_type})" if f.event_index is not None else \
                f"t={f.t:.3f}s"
            msg = github_escape_data(visible(f"{where}: {f.message}", keep_newlines=True))
            out.append(f"::{_GH_LEVEL[f.severity]} file={file},title={title}::{msg}")
    return "".join(line + "\n" for line in out)


_SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def _uri(path: str) -> str:
    return quote(PurePath(path).as_posix(), safe="/:")


def render_sarif(results: list[FileResult], version: str = "0") -> str:
    codes = list(RULES)
    rules = []
    for code in codes:
        r = RULES[code]
        help_text = r.explain_text()
        rules.append({
            "id": code,
            "name": r.name,
            "shortDescription": {"text": r.title},
            "fullDescription": {"text": " ".join(r.meaning.split()) or r.title},
            "help": {"text": help_text, "markdown": "```\n" + help_text + "```"},
            "defaultConfiguration": {"level": _SARIF_LEVEL[r.severity]},
            "properties": {"tags": ["realtime"], "sources": list(r.sources)},
        })
    artifacts: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    results_out = []
    notes = []
    for fr in results:
        index[fr.file] = len(artifacts)
        artifacts.append({"location": {"uri": _uri(fr.file)}})
        if fr.error is not None:
            notes.append({"level": "error", "message": {"text": f"{fr.file}: {fr.error}"},
                          "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(fr.file),
                                                                                   "index": index[fr.file]}}}]})
            continue
        for f in fr.findings:
            logical = {"name": f"event {f.event_index}" if f.event_index is not None else "session",
                       "fullyQualifiedName": f"{fr.file}#event[{f.event_index}]" if f.event_index is not None
                       else f"{fr.file}#session",
                       "kind": "element"}
            res: dict[str, Any] = {
                "ruleId": f.code,
                "level": _SARIF_LEVEL[f.severity],
                "message": {"text": f.message},
                "locations": [{
                    "physicalLocation": {"artifactLocation": {"uri": _uri(fr.file), "index": index[fr.file]}},
                    "logicalLocations": [logical],
                }],
                "properties": {"t": round(f.t, 6), "event_index": f.event_index, "event_type": f.event_type,
                               "related": list(f.related), "severity": f.severity},
            }
            if f.code in RULES:
                res["ruleIndex"] = codes.index(f.code)
            results_out.append(res)
    doc = {
        "$schema": "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "rtproxy check", "version": version, "semanticVersion": version,
                                "rules": rules}},
            "artifacts": artifacts,
            "results": results_out,
            "invocations": [{"executionSuccessful": not notes, "toolExecutionNotifications": notes}],
        }],
    }
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
