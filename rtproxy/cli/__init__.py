"""The command line: click commands that parse options, call the library and print.

Nothing below this package imports click. ``main`` is the console entry point.
"""

from rtproxy.cli.main import cli, main

__all__ = ["cli", "main"]
