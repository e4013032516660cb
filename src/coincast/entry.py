"""The `coincast` program (console script and `python -m coincast`): the allocator, then the CLI.

Kept apart from cli.py so that the re-exec (coincast.allocator.reexec) happens only when
coincast is the program, never when a test or another program calls `cli.main()` in its
own process.
"""

from __future__ import annotations

import sys


def main() -> None:
    from coincast import allocator
    from coincast.errors import CoincastError

    if allocator.trains(sys.argv[1:]):
        try:
            allocator.reexec()  # returns only when it does not re-exec
        except CoincastError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
    from coincast.cli import main as cli_main

    cli_main()
