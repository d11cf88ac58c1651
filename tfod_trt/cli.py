"""What the command-line scripts share: one-line errors with exit code 2, never a traceback;
a stop by SIGINT or SIGTERM that leaves no child process behind."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from tfod_trt.errors import UsageError
from tfod_trt.stopping import run_stoppable


def run_main(
    prog: str,
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    run: Callable[[argparse.Namespace], int],
    argv: list[str] | None = None,
) -> int:
    """Parses, runs, and turns bad input (UsageError, OSError, ValueError) into
    `PROG: error: ...` on stderr and exit code 2, a stop signal into 128 + its number
    (:func:`~tfod_trt.stopping.run_stoppable`); `run`'s own code otherwise."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # argparse has printed its message (or --help)
        return exit_.code if isinstance(exit_.code, int) else 2

    def work() -> int:
        try:
            return run(args)
        except (UsageError, OSError, ValueError) as err:
            print(f"{prog}: error: {err}", file=sys.stderr)
            return 2

    return run_stoppable(prog, work)
