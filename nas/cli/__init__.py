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
import re
import sys
from collections.abc import Sequence

from nas._version import __version__
from nas.errors import UsageError

__all__ = ["main", "COMMAND_MODULES"]

COMMAND_MODULES = (
    "nas.cli.space_cmds",  # spaces, space show, cost
    "nas.cli.bench_cmd",  # bench
    "nas.cli.eval_cmds",  # latency, evaluate
    "nas.cli.search_cmds",  # search, resume, status
    "nas.cli.export_cmds",  # export, build
    "nas.cli.analyze_cmds",  # analyze, compare
    "nas.cli.remeasure_cmd",  # remeasure
    "nas.cli.dashboard_cmd",  # dashboard
    "nas.cli.config_cmds",  # config show, config check
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every command group registered."""
    parser = argparse.ArgumentParser(
        prog="nas", description="mnas: platform-aware neural architecture search"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--version", action="version", version=f"nas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(sub)
    return parser


def command_parser(parser: argparse.ArgumentParser,
                   args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub-)parser that parsed ``args``: follows the chosen sub-command at every level."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        chosen = subs and subs[0].choices.get(getattr(args, subs[0].dest, None) or "")
        if not chosen:
            return parser
        parser = chosen


def flag_message(exc: UsageError, parser: argparse.ArgumentParser) -> str:
    """The error's message with the parameters it names (``exc.params``) as this command's flags.

    A parameter is rewritten in the message's subject (before the first ``": "``), wherever it
    appears as ``name=...``, and anywhere when its name has an underscore (``target_ms``): so
    ``rank=0: ...`` becomes ``--rank=0: ...`` while an English "out" stays. A boolean switch's
    ``overwrite=True`` becomes its bare flag (``--force``). Parameters the command has no flag
    for keep their names (they are config keys or options there).
    """
    message = str(exc)
    head, sep, rest = message.partition(": ")
    if not sep:
        head, rest = "", message
    for param in getattr(exc, "params", ()):
        flag, switch = _flag(parser, param)
        if flag is None:
            continue
        word = rf"(?<![\w.-]){re.escape(param)}(?![\w-])"
        head = re.sub(word, flag, head)
        rest = re.sub(word + "=True" if switch else word + "(?==)", flag, rest)
        rest = re.sub(word, flag, rest) if "_" in param else rest
    return head + sep + rest


def _flag(parser: argparse.ArgumentParser, dest: str) -> tuple[str | None, bool]:
    """The long option that sets ``dest`` in ``parser`` and whether it is a switch."""
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if action.dest == dest and longs:
            return longs[0], isinstance(action, argparse._StoreTrueAction)
    return None, False


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
        print(f"nas {args.command}: error: {flag_message(exc, command_parser(parser, args))}",
              file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
