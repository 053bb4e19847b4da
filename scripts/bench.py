"""The benchmark: askgate beside a bare aiohttp pass-through, under wrk.

    make bench                     # or: .venv/bin/python scripts/bench.py --help

The pieces live in scripts/bench/; bench/cli.py says what a run does.
"""

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
