"""Argument helpers shared by CLI commands: choosing a space, loading an architecture, output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from nas._fs import read_json
from nas.errors import UsageError
from nas.registry import SPACES
from nas.space import Arch, Space

__all__ = [
    "add_space_args",
    "add_model_args",
    "space_from_args",
    "model_from_args",
    "load_arch_file",
    "parse_key_values",
    "print_json",
    "print_table",
    "add_trust_arg",
]


def add_trust_arg(parser: argparse.ArgumentParser) -> None:
    """``--trust-code``: import ``module:attr`` names read from the files this command reads."""
    parser.add_argument(
        "--trust-code", dest="trust_code", action="store_true",
        help="import 'package.module:attr' names read from the run folder or card (this runs "
             "that module's code; registered names never need it); no config key (a file "
             "cannot vouch for itself)")


def parse_key_values(items: list[str] | None, what: str) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` -> ``{"a": 1, "b.c": "x"}``; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{what} {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise UsageError(f"{what} {item!r}: cannot parse the value {raw!r}") from None
    return out


def add_space_args(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--space``, ``--input-size``, ``--num-classes``, ``--in-channels``, ``-o KEY=VALUE``."""
    parser.add_argument("--space", required=required, help="registered space or module:Class")
    parser.add_argument("--input-size", type=int, help="space option input_size")
    parser.add_argument("--num-classes", type=int, help="space option num_classes")
    parser.add_argument("--in-channels", type=int, help="space option in_channels")
    parser.add_argument(
        "-o",
        "--space-option",
        action="append",
        metavar="KEY=VALUE",
        help="any other space option (repeatable), e.g. -o width_mult=0.5",
    )


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Space arguments plus ``--preset P | --arch FILE``."""
    add_space_args(parser, required=False)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", help="a published network of the space (see `nas space show`)")
    which.add_argument("--arch", type=Path, help="architecture JSON (arch.json, or an export card)")
    add_trust_arg(parser)


def _space_options(args: argparse.Namespace) -> dict[str, Any]:
    options = parse_key_values(getattr(args, "space_option", None), "--space-option")
    for flag in ("input_size", "num_classes", "in_channels"):
        value = getattr(args, flag, None)
        if value is not None:
            options[flag] = value
    return options


def space_from_args(args: argparse.Namespace, base_options: dict[str, Any] | None = None) -> Space:
    """Create the space named by ``--space`` with options from the flags (over ``base_options``)."""
    from nas import get_space

    if not getattr(args, "space", None):
        raise UsageError("--space is required (e.g. --space mnasnet); see `nas spaces`")
    return get_space(args.space, **{**(base_options or {}), **_space_options(args)})


def read_json_file(path: Path, what: str) -> Any:
    """Parse a JSON file with a one-line error for a missing, malformed or unusual file."""
    try:
        return read_json(path, what)
    except FileNotFoundError:
        raise UsageError(f"{what} {str(path)!r}: no such file") from None


def _file_space(data: dict[str, Any], path: Path) -> tuple[Any, dict[str, Any]]:
    """``(name, options)`` an architecture file names (a name, or ``{name, options}``)."""
    field = data.get("space")
    if not isinstance(field, dict):
        return field, {}
    options = field.get("options") or {}
    if not isinstance(options, dict):
        raise UsageError(f"--arch {str(path)!r}: space.options must be a mapping, got "
                         f"{type(options).__name__}")
    return field.get("name"), dict(options)


def load_arch_file(path: Path, args: argparse.Namespace | None = None) -> tuple[Space, Arch]:
    """Load an architecture JSON; its space comes from the file unless ``--space`` names one.

    Accepted forms: ``Arch.to_json()`` (``{"space": name, "decisions": {...}}``), an export card
    (``{"space": {"name": ..., "options": {...}}, "decisions": {...}}``), or, with ``--space``, a
    bare ``{label: value}`` mapping. A ``module:attr`` space the file names is imported only
    with ``--trust-code`` (one typed with ``--space`` always is).
    """
    from nas import get_space
    from nas.registry import names_from

    data = read_json_file(path, "--arch")
    if not isinstance(data, dict):
        raise UsageError(f"--arch {str(path)!r}: expected a JSON object")
    name, options = _file_space(data, path)
    typed = bool(args is not None and getattr(args, "space", None))
    if typed:
        name = args.space
    if not name:
        raise UsageError(f"--arch {str(path)!r}: the file names no space; pass --space")
    if not isinstance(name, str):
        raise UsageError(f"--arch {str(path)!r}: space.name must be a string")
    with names_from(path, trust_code=typed or bool(getattr(args, "trust_code", False))):
        space = get_space(name, **{**options, **(_space_options(args) if args else {})})
    decisions = data.get("decisions", data)
    return space, space.validate(decisions)


def model_from_args(args: argparse.Namespace) -> tuple[Space, Any, str, Arch | None]:
    """(space, model, description, arch) for ``--preset`` or ``--arch``."""
    if args.arch is not None:
        space, arch = load_arch_file(args.arch, args)
        return space, space.build(arch), f"arch {arch.key}", arch
    space = space_from_args(args)
    return space, space.build_preset(args.preset), f"preset {args.preset}", None


def print_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON."""
    print(json.dumps(obj, indent=2, default=str))


def print_table(title: str | None, columns: list[str], rows: list[list[Any]], *,
                compact: bool = False) -> None:
    """Print a table with rich (plain text when not on a terminal), 120 columns wide.

    ``compact``: the title on a line of its own, no cell borders, one space between columns and
    a rule under the header (a wide table, e.g. ``nas analyze``'s eleven columns, then fits 120
    columns)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    style: dict[str, Any] = ({"box": box.SIMPLE_HEAD, "padding": (0, 0), "show_edge": False,
                              "pad_edge": False} if compact else {})
    table = Table(title=None if compact else title, show_lines=False, **style)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*[str(v) for v in row])
    console = Console(width=120)
    if compact and title:
        console.print(title, style="bold", highlight=False, markup=False)
    console.print(table)


def known_spaces() -> list[str]:
    """Registered space names."""
    return SPACES.names()
