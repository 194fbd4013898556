"""`python -m tests.clockstep serve …`: snapcopy with a wall clock the test can step.

The offset (seconds, may be negative) is read from the file named by TEST_CLOCK_OFFSET_FILE at
every reading of `bot.clock.utcnow`, so a test steps the clock of every process started this
way at once, as an NTP correction or an operator would step a host's clock. Monotonic clocks,
request signing and DWS's own clock are left alone, as a real step leaves them.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

import bot.clock
from bot.cli import main

_real = bot.clock.utcnow
_file = Path(os.environ["TEST_CLOCK_OFFSET_FILE"])


def stepped() -> datetime:
    try:
        offset = float(_file.read_text() or 0)
    except (OSError, ValueError):
        offset = 0.0
    return _real() + timedelta(seconds=offset)


if __name__ == "__main__":
    bot.clock.utcnow = stepped
    sys.exit(main(sys.argv[1:]))
