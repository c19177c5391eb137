"""Exports: the html page (``html``), WAV/HAR/redacted copies (``files``) and the
JSON lines of ``show --json`` (``jsonl``). No click."""
