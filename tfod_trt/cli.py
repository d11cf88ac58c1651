"""What the command-line scripts share: one-line errors with exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from tfod_trt.errors import UsageError


def run_main(
    prog: str,
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    run: Callable[[argparse.Namespace], int],
    argv: list[str] | None = None,
) -> int:
    """Parses, runs, and turns bad input (UsageError, OSError, ValueError) into
    `PROG: error: ...` on stderr and exit code 2; `run`'s own code otherwise."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # argparse has printed its message (or --help)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return run(args)
    except (UsageError, OSError, ValueError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
