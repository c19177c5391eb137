"""Thresholds and configuration of ``rtproxy check``: defaults, ``[tool.rtproxy.check]``
in pyproject.toml (found from a folder upward), and code selection."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterable

from rtproxy.check.finding import SEVERITIES
from rtproxy.errors import UsageError

__all__ = ["Options", "Config", "DEFAULT_MIN_SEVERITY", "find_config", "load_config", "parse_codes", "select_codes"]

#: The ``--min-severity`` of ``rtproxy check`` when neither it nor the settings give one.
DEFAULT_MIN_SEVERITY = "warning"


@dataclass(frozen=True, slots=True)
class Options:
    """Every threshold a rule uses (names as in ``[tool.rtproxy.check]``)."""

    tool_timeout_s: float = 15.0
    """A function call answered later than this (or never) is reported (RT007)."""
    response_timeout_s: float = 30.0
    """A response open longer than this is reported (RT013)."""
    min_commit_ms: float = 100.0
    """The server refuses to commit less input audio than this (RT005)."""
    truncate_tolerance_ms: float = 1.0
    """How far past the audio received a truncate may go before it is reported (RT002)."""
    stale_truncate_s: float = 2.0
    """A truncate this long after its item finished playing cut audio the user heard (RT002)."""
    rate_min_segment_s: float = 3.0
    """Continuous append streams shorter than this are not used to judge the audio rate (RT006)."""
    rate_tolerance: float = 0.12
    """How far (as a fraction) the append rate may stray from real time before it is reported."""
    max_message_bytes: int = 15 * 1024 * 1024
    """The API's limit for one input_audio_buffer.append (RT015)."""
    client_frame_limit_bytes: int = 1024 * 1024
    """Server messages larger than this break clients with a 1 MiB frame limit (RT015, info)."""
    rate_limit_fraction: float = 0.05
    """A rate limit with less than this fraction remaining is reported (RT012)."""
    transcript_grace_s: float = 5.0
    """A missing input transcription this close to the end of the recording is only info (RT014)."""
    echo_window_ms: float = 500.0
    """Speech detected this soon after a response's first audio looks like echo (RT019)."""

    def with_values(self, values: dict[str, Any], where: str = "options") -> Options:
        known = {f.name: f for f in fields(self)}
        out: dict[str, Any] = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in known:
                raise UsageError(f"{where}: unknown setting {key!r} (known: {', '.join(sorted(known))})")
            want = int if known[name].type in ("int", int) else float
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != value:
                raise UsageError(f"{where}: {key} must be a non-negative number, not {value!r}")
            out[name] = want(value)
        return replace(self, **out)


@dataclass(frozen=True, slots=True)
class Config:
    """What pyproject.toml says: select, ignore, min-severity and thresholds."""

    path: str | None = None
    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    min_severity: str | None = None
    options: Options = Options()


def find_config(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest pyproject.toml (from ``start``, default the current folder, upward)
    that has a ``[tool.rtproxy.check]`` table."""
    here = Path(start or os.getcwd()).resolve()
    for d in (here, *here.parents):
        p = d / "pyproject.toml"
        if p.is_file():
            try:
                data = tomllib.loads(p.read_text("utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise UsageError(f"{p}: cannot read: {exc}") from None
            tool = data.get("tool")
            if isinstance(tool, dict) and isinstance(tool.get("rtproxy"), dict) and "check" in tool["rtproxy"]:
                return p
    return None


def _codes_value(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return parse_codes(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(c for v in value for c in parse_codes(v))
    raise UsageError(f"{where}: a list of rule codes, not {value!r}")


def load_config(start: str | os.PathLike[str] | None = None) -> Config:
    """The ``[tool.rtproxy.check]`` settings in force for ``start`` (defaults if none)."""
    path = find_config(start)
    if path is None:
        return Config()
    table = tomllib.loads(path.read_text("utf-8"))["tool"]["rtproxy"]["check"]
    where = f"{path} [tool.rtproxy.check]"
    if not isinstance(table, dict):
        raise UsageError(f"{where}: not a table")
    select = ignore = None
    min_sev = None
    thresholds: dict[str, Any] = {}
    for key, value in table.items():
        k = key.replace("_", "-")
        if k == "select":
            select = _codes_value(value, f"{where} select")
        elif k == "ignore":
            ignore = _codes_value(value, f"{where} ignore")
        elif k == "min-severity":
            if value not in SEVERITIES:
                raise UsageError(f"{where}: min-severity is one of {', '.join(SEVERITIES)}, not {value!r}")
            min_sev = value
        else:
            thresholds[key] = value
    return Config(str(path), select, ignore or (), min_sev, Options().with_values(thresholds, where))


def parse_codes(text: str) -> tuple[str, ...]:
    """``"RT001,RT002 RT01"`` -> ("RT001", "RT002", "RT01")."""
    return tuple(c.strip().upper() for c in text.replace(",", " ").split() if c.strip())


def select_codes(
    all_codes: Iterable[str], select: Iterable[str] | None = None, ignore: Iterable[str] | None = None
) -> frozenset[str]:
    """The codes in force: ``select`` (codes or prefixes, ``ALL``; default all) minus ``ignore``.
    A code or prefix that names no rule is a :class:`UsageError`."""
    codes = list(all_codes)

    def expand(pats: Iterable[str], what: str) -> set[str]:
        out: set[str] = set()
        for p in pats:
            p = p.strip().upper()
            if p == "ALL":
                out.update(codes)
                continue
            hit = {c for c in codes if c.startswith(p)} if p else set()
            if not hit:
                raise UsageError(f"{what}: {p!r} names no rule (rtproxy check --list-rules)")
            out |= hit
        return out

    chosen = expand(select, "--select") if select is not None else set(codes)
    if ignore:
        chosen -= expand(ignore, "--ignore")
    return frozenset(chosen)
