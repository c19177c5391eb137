"""``python -m rtproxy``: the command line."""

from rtproxy.cli import main

if __name__ == "__main__":  # not when a worker process imports it (export html's encoders)
    main()
