"""``python -m surveillance <command>``."""

import sys

from surveillance.cli import main

if __name__ == "__main__":  # not when a worker process of a full run imports it (spawn)
    sys.exit(main())
