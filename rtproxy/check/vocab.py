"""The event names the rules compare against: the catalogue in rtproxy.protocol.events,
under the names the rules use."""

from __future__ import annotations

from rtproxy.protocol.events import (
    BETA_ONLY_CLIENT_EVENTS as BETA_ONLY_CLIENT,
)
from rtproxy.protocol.events import (
    BETA_ONLY_SERVER_EVENTS as BETA_ONLY_SERVER,
)
from rtproxy.protocol.events import (
    CLIENT_EVENTS as CLIENT_TYPES,
)
from rtproxy.protocol.events import (
    GA_ONLY_SERVER_EVENTS as GA_ONLY_SERVER,
)
from rtproxy.protocol.events import (
    SERVER_EVENTS as SERVER_TYPES,
)

__all__ = ["CLIENT_TYPES", "SERVER_TYPES", "BETA_ONLY_SERVER", "GA_ONLY_SERVER", "BETA_ONLY_CLIENT", "KNOWN_TYPES"]

#: Every event type either protocol defines, from either side.
KNOWN_TYPES: frozenset[str] = CLIENT_TYPES | SERVER_TYPES
