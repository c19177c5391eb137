"""``rtproxy check``: find the Realtime bugs users report, in a recording.

::

    from rtproxy.check import check_file
    for f in check_file("session.rtrec", ignore=["RT004"]):
        print(f.code, f.severity, f.t, f.event_index, f.message)

One pass over :meth:`rtproxy.Recording.events` feeds a shared session state
(:mod:`rtproxy.check.state`) and every rule (:mod:`rtproxy.check.rules`);
:func:`check_events` checks any stream of events (a live run), and
:class:`Checker` is the same thing fed one event at a time. Imports only
rtproxy.view, rtproxy.protocol, rtproxy.io and rtproxy.errors.
"""

from __future__ import annotations

from rtproxy.check.engine import Checker, check_events, check_file, filter_findings
from rtproxy.check.finding import SEVERITIES, Finding, severity_rank
from rtproxy.check.options import Config, Options, load_config
from rtproxy.check.rules import RULES, Rule

__all__ = [
    "check_file", "check_events", "Checker", "filter_findings", "Finding", "SEVERITIES", "severity_rank",
    "Options", "Config", "load_config", "RULES", "Rule",
]
