"""What rtproxy knows about the Realtime protocol, in one place. Pure.

``events``: event names and groups (beta and GA), the type of a message, JSON
parsing with bounded cost; ``formats``: audio formats and the session-format
tracker; ``redaction``: secrets and how they are removed.
"""
