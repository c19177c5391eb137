"""``rtproxy check``: lint recordings for the Realtime bugs users report."""

from __future__ import annotations

import os
import sys

import click

from rtproxy import __version__
from rtproxy.check.finding import SEVERITIES, severity_rank
from rtproxy.check.options import DEFAULT_MIN_SEVERITY, load_config, parse_codes, select_codes
from rtproxy.check.render import (
    render_file_text,
    render_github,
    render_json,
    render_sarif,
    render_total_text,
    visible,
)
from rtproxy.check.rules import RULES
from rtproxy.check.runner import check_many, collect_files
from rtproxy.cli.common import Exit, fail
from rtproxy.errors import UsageError

__all__ = ["check"]

_HELP = """Check recordings for the Realtime API bugs users report.

FILE_OR_DIR: .rtrec files, or folders searched for *.rtrec recursively
(checked in parallel, one process per core).

\b
Settings come from [tool.rtproxy.check] in the nearest pyproject.toml
(select, ignore, min-severity, thresholds such as tool_timeout_s); options
given here override them. --list-rules lists the rules, --explain CODE
says what one means and how to fix it (docs/CHECK.md has them all).

\b
Exit status: 0 no finding at or above --min-severity; 1 findings;
2 error (an unreadable file, a bad option).
"""


def _progress_wanted(n: int) -> bool:
    return n >= 20 and sys.stderr.isatty() and not os.environ.get("CI")


@click.command(help=_HELP)
@click.argument("paths", nargs=-1, metavar="FILE_OR_DIR...")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github", "sarif"]), default="text",
              show_default=True, help="text for people, json for tools, github for Actions annotations, sarif for code scanning.")
@click.option("--select", "select", metavar="CODES", help="Only these rules (comma-separated codes or prefixes, ALL).")
@click.option("--ignore", "ignore", metavar="CODES", help="Not these rules (comma-separated codes or prefixes).")
@click.option("--min-severity", type=click.Choice(list(SEVERITIES)), default=None,
              help="Report and fail on findings at or above this severity [default: warning].")
@click.option("--list-rules", is_flag=True, help="List the rules: code, severity, title.")
@click.option("--explain", "explain", metavar="CODE", help="What a rule means, why it matters, how to fix it.")
def check(paths: tuple[str, ...], fmt: str, select: str | None, ignore: str | None, min_severity: str | None,
          list_rules: bool, explain: str | None) -> None:
    if list_rules:
        for code, r in RULES.items():
            click.echo(f"{code}  {r.severity:<7}  {r.title}")
        return
    if explain is not None:
        rule = RULES.get(explain.strip().upper())
        if rule is None:
            fail(f"no rule {explain!r} (rtproxy check --list-rules)")
            return
        click.echo(rule.explain_text(), nl=False)
        return
    if not paths:
        fail("give recordings or folders to check (or --list-rules / --explain CODE)")
    try:
        cfg = load_config()
        sel = parse_codes(select) if select is not None else cfg.select
        ign = parse_codes(ignore) if ignore is not None else cfg.ignore
        if select is not None and ignore is None and ign and sel:
            # The command line wins: a rule it names runs even if the settings ignore it or
            # its prefix (--select RT007 over ignore RT007 or RT00); the settings' other
            # ignores stay (--select RT, or RT00, keeps ignore RT004).
            ign = tuple(c for c in ign if not any(s.startswith(c.strip().upper()) for s in sel))
        select_codes(RULES, sel, ign)
    except UsageError as exc:
        fail(str(exc))
    floor = min_severity or cfg.min_severity or DEFAULT_MIN_SEVERITY
    files = collect_files(paths)
    if not files:
        fail(f"no .rtrec files under {', '.join(paths)}")
    results = []
    stream = fmt == "text" and not _progress_wanted(len(files))
    color = sys.stdout.isatty()
    gen = check_many(files, sel, ign, cfg.options, floor)
    try:
        if _progress_wanted(len(files)):
            with click.progressbar(gen, length=len(files), label="checking", file=sys.stderr) as bar:
                results = list(bar)
        else:
            for res in gen:
                results.append(res)
                if stream:
                    click.echo(render_file_text(res, click.style if color else None), nl=False, color=color)
        if fmt == "text":
            if not stream:
                for res in results:
                    click.echo(render_file_text(res, click.style if color else None), nl=False, color=color)
            click.echo(render_total_text(results), nl=False)
        elif fmt == "json":
            click.echo(render_json(results), nl=False)
        elif fmt == "github":
            click.echo(render_github(results), nl=False)
        else:
            click.echo(render_sarif(results, __version__), nl=False)
    except BrokenPipeError:
        sys.stderr.close()
    bad = [r for r in results if r.error is not None]
    for b in bad:
        click.echo(f"rtproxy: error: {visible(b.file)}: {visible(b.error or '')}", err=True)
    if bad:
        sys.exit(Exit.ERROR)
    rank = severity_rank(floor)
    found = any(severity_rank(f.severity) >= rank for res in results for f in res.findings)
    sys.exit(Exit.DIFFERENT if found else Exit.OK)
