"""``python -m rtproxy``: the command line."""

from rtproxy.cli import main

main()
