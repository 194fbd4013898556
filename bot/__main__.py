"""`python -m bot` is the `snapcopy` command."""

from bot.cli import main

raise SystemExit(main())
