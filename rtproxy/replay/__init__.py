"""Replay: the script and sans-I/O scheduler (``script``), the server shell that
serves a recording to a client (``server``) and the client shell that re-sends
one to a live endpoint (``client``)."""
