"""``python -m surveillance <command>``."""

import sys

from surveillance.cli import main

sys.exit(main())
