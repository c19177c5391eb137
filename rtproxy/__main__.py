"""``python -m rtproxy``: the command line."""

from rtproxy.cli import main

if __name__ == "__main__":
    main()
