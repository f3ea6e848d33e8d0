"""The ``nas`` command. Thin: parses arguments, calls library functions, prints.

Each command group lives in its own module with a ``register(subparsers)`` function that adds its
sub-commands; a sub-command's handler takes the parsed ``argparse.Namespace`` and returns an
exit code.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence

from nas.errors import UsageError

__all__ = ["main", "COMMAND_MODULES"]

COMMAND_MODULES = (
    "nas.cli.space_cmds",  # spaces, space show, cost
    "nas.cli.bench_cmd",  # bench
    "nas.cli.eval_cmds",  # latency, evaluate
    "nas.cli.search_cmds",  # search, resume, status
    "nas.cli.export_cmds",  # export, build
    "nas.cli.analyze_cmds",  # analyze, compare
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every command group registered."""
    parser = argparse.ArgumentParser(
        prog="nas", description="mnas: platform-aware neural architecture search"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nas`` console script; returns the exit code (2 for usage errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"nas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
