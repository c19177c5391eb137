"""Rendering a :class:`~rtproxy.compare.core.DiffResult`: text for people, Markdown for
bug reports, JSON for tools. Pure: returns strings; colour comes from a
``style`` function the caller passes (``click.style`` on a terminal).

Recordings are untrusted: every value taken from them (event types, paths,
text, ids) goes through :func:`rtproxy.export.textsafe.visible` before it is
styled, so a terminal escape in a transcript is shown as ``\x1b``, and the
only escapes in the text report are the colours ``style`` adds.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from rtproxy.compare.core import DiffResult, EventChange, FieldChange, TimingChange
from rtproxy.export.textsafe import visible
from rtproxy.protocol.events import shown_type

__all__ = ["render_text", "render_markdown", "render_json", "verdict_line"]

Style = Callable[..., str]

_METRICS = {
    "first_output_ms": "end of input -> first audio/text",
    "response_ms": "response duration",
}
_KIND_MARK = {"changed": "~", "missing": "-", "inserted": "+"}
_KIND_WORD = {"changed": "changed", "missing": "only in A", "inserted": "only in B"}


def _plain(text: str, **_: Any) -> str:
    return text


def _val(v: Any, limit: int = 160) -> str:
    s = visible(json.dumps(v, ensure_ascii=False, default=str))
    return s if len(s) <= limit else s[: limit - 1] + "…"


def verdict_line(r: DiffResult) -> str:
    """One line: EQUIVALENT or DIFFERENT with the count of differences by kind."""
    n_client = r.counts["client"]
    n_server = r.counts["server"]
    if r.equivalent:
        return (
            f"EQUIVALENT: no differences ({n_client['a']} client and {n_server['a']} server events "
            f"compared; ids, timestamps, chunking and ignored fields disregarded)"
        )
    bits = []
    if r.meta:
        bits.append(f"{len(r.meta)} connection")
    if r.events:
        bits.append(f"{len(r.events)} event")
    if r.timing:
        bits.append(f"{len(r.timing)} timing")
    n = r.n_differences
    return f"DIFFERENT: {n} difference{'s' if n != 1 else ''} ({', '.join(bits)})"


def _dir_summary(c: dict[str, int]) -> str:
    parts = []
    if c["changed"]:
        parts.append(f"{c['changed']} changed")
    if c["missing"]:
        parts.append(f"{c['missing']} only in A")
    if c["inserted"]:
        parts.append(f"{c['inserted']} only in B")
    return f"{c['a']} vs {c['b']} events: " + (", ".join(parts) if parts else "same")


def _where(e: EventChange) -> str:
    sides = []
    if e.a is not None:
        sides.append(f"A #{e.a.index} @ {e.a.t_ms:.1f} ms")
    if e.b is not None:
        sides.append(f"B #{e.b.index} @ {e.b.t_ms:.1f} ms")
    return " | ".join(sides)


def _word_line(words: list[list[str]], style: Style) -> str:
    out = []
    for op, raw in words:
        text = visible(raw)
        if op == "=":
            out.append(text)
        elif op == "-":
            out.append(style(f"[-{text}-]", fg="red"))
        else:
            out.append(style(f"{{+{text}+}}", fg="green"))
    return " ".join(out)


def _field_lines(c: FieldChange, style: Style, seen: set[tuple[str, str]], indent: str) -> list[str]:
    lines = _field_lines_only(c, style, seen, indent)
    if c.note:
        lines[0] += f" ({visible(c.note)})"
    return lines


def _field_lines_only(c: FieldChange, style: Style, seen: set[tuple[str, str]], indent: str) -> list[str]:
    path = visible(c.path or "(event)")
    if c.kind == "text":
        key = (c.a, c.b)
        if key in seen:
            return [f"{indent}{path}: same text change as above"]
        seen.add(key)
        if all(op == "=" for op, _ in c.words or []):
            return [f"{indent}{path}: same words, whitespace differs: {_val(c.a)} -> {_val(c.b)}"]
        return [f"{indent}{path}: {_word_line(c.words or [], style)}"]
    if c.kind == "json":
        lines = [f"{indent}{path} (parsed JSON):"]
        for sub in c.changes or []:
            lines.extend(_field_lines(sub, style, seen, indent + "  "))
        return lines
    if c.kind == "only_a":
        return [f"{indent}{path}: {style(_val(c.a), fg='red')} (only in A)"]
    if c.kind == "only_b":
        return [f"{indent}{path}: {style(_val(c.b), fg='green')} (only in B)"]
    if c.kind == "link":
        return [f"{indent}{path}: links differ: {visible(c.a)} in A corresponds to another id in B (got {visible(c.b)})"]
    return [f"{indent}{path}: {style(_val(c.a), fg='red')} -> {style(_val(c.b), fg='green')}"]


def _timing_line(t: TimingChange) -> str:
    turn = f"turn {t.turn_a}" if t.turn_a == t.turn_b else f"turn {t.turn_a} (B: {t.turn_b})"
    return (
        f"{turn} ({visible(t.response_a)}): {visible(_METRICS.get(t.metric, t.metric))} "
        f"{t.a_ms:.0f} ms -> {t.b_ms:.0f} ms ({t.delta_ms:+.0f} ms)"
    )


def _groups(evs: list[EventChange]) -> list[list[EventChange]]:
    """Runs of 4 or more events only in one run, same turn: shown as one block."""
    out: list[list[EventChange]] = []
    for e in evs:
        last = out[-1] if out else None
        if (
            last
            and e.kind != "changed"
            and last[0].kind == e.kind
            and last[0].turn == e.turn
        ):
            last.append(e)
        else:
            out.append([e])
    res: list[list[EventChange]] = []
    for g in out:
        if 1 < len(g) < 4:
            res.extend([x] for x in g)
        else:
            res.append(g)
    return res


def render_text(r: DiffResult, style: Style | None = None) -> str:
    """The readable report: verdict, summary, then each difference at its place."""
    st = style or _plain
    lines = []
    verdict = verdict_line(r)
    lines.append(st(verdict, fg="green" if r.equivalent else "red", bold=True))
    lines.append(f"  A  {visible(r.a_path)}")
    lines.append(f"  B  {visible(r.b_path)}")
    lines.append("")
    lines.append(st("Summary", bold=True))
    ma = r.meta_a
    conn = (
        "same" if not r.meta else ", ".join(f"{m.field} differs" for m in r.meta)
    ) + f" (HTTP {ma.get('status')}, subprotocol {ma.get('subprotocol') or '-'}, model {ma.get('model') or '-'}, close {ma.get('close_code')})"
    lines.append(f"  connection  {visible(conn)}")
    lines.append(f"  client      {_dir_summary(r.counts['client'])}")
    lines.append(f"  server      {_dir_summary(r.counts['server'])}")
    if r.tolerance_ms is None:
        lines.append("  timing      not compared (--no-timing)")
    else:
        tl = f"{len(r.timing)} change{'s' if len(r.timing) != 1 else ''} beyond ±{r.tolerance_ms:g} ms" if r.timing else f"within ±{r.tolerance_ms:g} ms"
        lines.append(f"  timing      {tl} (responses: A {r.turns['a']}, B {r.turns['b']})")
    lines.append(visible(f"  ignored     {', '.join(r.ignore) or '-'}" + (f"; kept {', '.join(r.keep)}" if r.keep else "")))
    for note in r.notes:
        lines.append(f"  note        {visible(note)}")
    if r.meta:
        lines.append("")
        lines.append(st("Connection", bold=True))
        for m in r.meta:
            lines.append(f"  {visible(m.field):13} {st(_val(m.a), fg='red')} -> {st(_val(m.b), fg='green')}")
    seen: set[tuple[str, str]] = set()
    for direction in ("client", "server"):
        evs = [e for e in r.events if e.direction == direction]
        if not evs:
            continue
        lines.append("")
        lines.append(st(f"{direction.capitalize()} events", bold=True))
        for group in _groups(evs):
            e = group[0]
            mark = _KIND_MARK[e.kind]
            color = {"changed": "yellow", "missing": "red", "inserted": "green"}[e.kind]
            if len(group) > 1:
                side = "A" if e.kind == "missing" else "B"
                lines.append(
                    st(f"  {mark} turn {visible(e.turn)}  {len(group)} events", fg=color, bold=True)
                    + f"  {_KIND_WORD[e.kind]}"
                )
                for g in group:
                    ev = g.a or g.b
                    assert ev is not None
                    lines.append(f"      {visible(shown_type(g.type))}  ({side} #{ev.index} @ {ev.t_ms:.1f} ms)")
                continue
            lines.append(
                st(f"  {mark} turn {visible(e.turn)}  {visible(shown_type(e.type))}", fg=color, bold=True)
                + f"  {_KIND_WORD[e.kind]}  ({_where(e)})"
            )
            if e.kind == "changed":
                for c in e.changes:
                    lines.extend(_field_lines(c, st, seen, "      "))
            else:
                body = (e.a or e.b).body  # type: ignore[union-attr]
                lines.append(f"      {_val({k: v for k, v in body.items() if k != 'type'}, 200)}")
    if r.timing:
        lines.append("")
        lines.append(st(f"Timing (tolerance ±{r.tolerance_ms:g} ms)", bold=True))
        for t in r.timing:
            lines.append("  " + _timing_line(t))
    return "\n".join(lines) + "\n"


def _md_code(v: Any, limit: int = 160) -> str:
    return "`" + _val(v, limit).replace("`", "'") + "`"


def _md_field(c: FieldChange, indent: str) -> list[str]:
    lines = _md_field_only(c, indent)
    if c.note:
        lines[0] += f" ({visible(c.note)})"
    return lines


def _md_field_only(c: FieldChange, indent: str) -> list[str]:
    path = f"`{visible(c.path or '(event)')}`"
    if c.kind == "text":
        words = []
        for op, raw in c.words or []:
            text = visible(raw)
            words.append(text if op == "=" else (f"~~{text}~~" if op == "-" else f"**{text}**"))
        return [f"{indent}- {path}: {' '.join(words)}"]
    if c.kind == "json":
        out = [f"{indent}- {path} (parsed JSON):"]
        for sub in c.changes or []:
            out.extend(_md_field(sub, indent + "  "))
        return out
    if c.kind == "only_a":
        return [f"{indent}- {path}: {_md_code(c.a)} only in A"]
    if c.kind == "only_b":
        return [f"{indent}- {path}: {_md_code(c.b)} only in B"]
    if c.kind == "link":
        return [f"{indent}- {path}: links differ (`{visible(c.a)}` in A, `{visible(c.b)}` in B)"]
    return [f"{indent}- {path}: {_md_code(c.a)} → {_md_code(c.b)}"]


def render_markdown(r: DiffResult) -> str:
    """A report to paste into a bug report (control characters shown as escapes)."""
    lines = [f"### rtproxy diff: {verdict_line(r)}", ""]
    lines.append(f"A = `{visible(r.a_path)}`, B = `{visible(r.b_path)}`")
    lines.append("")
    lines.append("| | A | B | changed | only in A | only in B |")
    lines.append("|---|---|---|---|---|---|")
    for d in ("client", "server"):
        c = r.counts[d]
        lines.append(f"| {d} events | {c['a']} | {c['b']} | {c['changed']} | {c['missing']} | {c['inserted']} |")
    lines.append(f"| responses | {r.turns['a']} | {r.turns['b']} | | | |")
    lines.append("")
    lines.append(f"Ignored: {', '.join(f'`{p}`' for p in r.ignore) or '-'}" + (f"; kept: {', '.join(f'`{p}`' for p in r.keep)}" if r.keep else ""))
    for note in r.notes:
        lines.append(f"\n> {visible(note)}")
    if r.meta:
        lines += ["", "#### Connection", "", "| field | A | B |", "|---|---|---|"]
        for m in r.meta:
            lines.append(f"| {visible(m.field)} | {_md_code(m.a)} | {_md_code(m.b)} |")
    if r.events:
        lines += ["", "#### Events", ""]
        for e in r.events:
            where = _where(e)
            lines.append(f"- **{_KIND_WORD[e.kind]}** `{visible(shown_type(e.type))}` ({e.direction}, turn {visible(e.turn)}; {where})")
            if e.kind == "changed":
                for fc in e.changes:
                    lines.extend(_md_field(fc, "  "))
            else:
                body = (e.a or e.b).body  # type: ignore[union-attr]
                lines.append(f"  - {_md_code({k: v for k, v in body.items() if k != 'type'}, 300)}")
    if r.timing:
        lines += ["", f"#### Timing (tolerance ±{r.tolerance_ms:g} ms)", "",
                  "| turn | response | measure | A | B | change |", "|---|---|---|---|---|---|"]
        for t in r.timing:
            lines.append(
                f"| {t.turn_a} | {visible(t.response_a)} | {visible(_METRICS.get(t.metric, t.metric))} | "
                f"{t.a_ms:.0f} ms | {t.b_ms:.0f} ms | {t.delta_ms:+.0f} ms |"
            )
    # A last pass over the whole report (it holds no styling): nothing unescaped is left.
    return visible("\n".join(lines), newlines=True) + "\n"


def render_json(r: DiffResult) -> str:
    """``DiffResult.to_dict()`` as indented strict JSON, ASCII only (no control
    character or lone surrogate reaches the output raw). NaN and infinities
    quoted from a recording become null, as in ``show --json``: ``jq`` and
    strict parsers reject ``NaN``."""
    d = r.to_dict()
    try:
        return json.dumps(d, ensure_ascii=True, indent=2, default=str, allow_nan=False) + "\n"
    except ValueError:
        return json.dumps(_finite(d), ensure_ascii=True, indent=2, default=str, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (any depth: bodies
    nest up to 200 deep, more than :func:`rtproxy.protocol.values.jsonable` copies)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
