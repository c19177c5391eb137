"""rtproxy: record, replay, diff and export OpenAI Realtime API WebSocket sessions."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
