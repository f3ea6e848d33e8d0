"""MkDocs hook: the CLI and config-key reference pages, generated from the code at build time.

``reference/cli.md`` holds every ``nas`` command's help, read from the argument parsers
(:func:`nas.cli.build_parser`); ``reference/config-keys.md`` holds every config key with its type,
default and meaning, read from the settings classes (:func:`nas.schema.config_keys`). Nothing here
is written by hand, so the pages cannot drift from the code. ``render_cli`` and
``render_config_keys`` are also what ``tests/test_docs_site.py`` checks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the checkout's packages, installed or not
    sys.path.insert(0, str(ROOT))

CLI_PAGE = "reference/cli.md"
KEYS_PAGE = "reference/config-keys.md"


def _subcommands(parser: argparse.ArgumentParser, prefix: str):
    """(command line, parser) for ``parser`` and every sub-command below it, depth first."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommands(sub, f"{prefix} {name}")


def render_cli() -> str:
    """The CLI reference page: each command's ``--help``, formatted at 100 columns."""
    from nas.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        parts = ["# CLI reference", "",
                 "Every `nas` command with its `--help`, generated from the argument parsers when "
                 "the site is built. Exit codes: 0 done, 1 the work failed (every child failed, a "
                 "rebuilt model differs), 2 bad input (one line naming the key or value), 130 "
                 "interrupted.", ""]
        for line, parser in _subcommands(build_parser(), "nas"):
            parser.prog = line
            parts += [f"## `{line}`", "", "```text", parser.format_help().rstrip(), "```", ""]
        return "\n".join(parts)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render_config_keys() -> str:
    """The config-key reference page: one table row per key, grouped by section."""
    from nas.schema import config_keys

    parts = ["# Config keys", "",
             "Every key a search config may hold, with its type, default and meaning, generated "
             "from the settings classes that parse a config (the same rows as `nas config show`). "
             "A key without a default is required when its section is given. How a config file "
             "is laid out: [Config files](config.md).", ""]
    section = None
    for key in config_keys():
        head = key.key.split(".")[0] if "." in key.key else "top level"
        if head != section:
            section = head
            parts += ["", f"## `{section}`" if section != "top level" else "## Top level", "",
                      "| key | type | default | meaning |", "|---|---|---|---|"]
        default = "*required*" if key.required else f"`{_cell(key.default)}`"
        parts.append(f"| `{key.key}` | {_cell(key.type)} | {default} | {_cell(key.meaning)} |")
    return "\n".join(parts) + "\n"


def on_files(files, config):  # MkDocs hook
    from mkdocs.structure.files import File

    for uri, text in ((CLI_PAGE, render_cli()), (KEYS_PAGE, render_config_keys())):
        files.append(File.generated(config, uri, content=text))
    return files
