"""The ``--smoke`` flag the benchmark scripts share: a tiny budget that the test suite runs, so
no script can rot unseen. ``SMOKE`` values become the defaults; flags given still win."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any


def parse_with_smoke(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                     smoke: Mapping[str, Any]) -> argparse.Namespace:
    """Add ``--smoke`` to ``parser`` and parse ``argv``; with it, ``smoke`` gives the defaults."""
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny budget, seconds (flags given still win)")
    args = parser.parse_args(argv)
    if args.smoke:
        parser.set_defaults(**smoke)
        args = parser.parse_args(argv)
    return args
