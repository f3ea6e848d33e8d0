"""``nas config show [CONFIG]`` and ``nas config check CONFIG``.

``show`` prints every config key with its type, default and meaning (:func:`nas.schema.config_keys`,
read from the settings classes); given a CONFIG it also prints that config resolved: every default
filled in and the space sized for the dataset, as ``nas search`` would build it. ``check`` runs the
checks ``nas search`` runs before it starts Ray (:func:`nas.config.load_config`,
:func:`nas.experiment.build_experiment`, the run folder's name) and starts nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nas.cli._common import print_json, print_table

__all__ = ["register", "check_config", "yaml_value"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``config show`` and ``config check``."""
    p = sub.add_parser("config", help="config keys and their defaults; check a config")
    config_sub = p.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    show = config_sub.add_parser(
        "show", help="every config key with its type, default and meaning; with CONFIG also the "
                     "resolved config (defaults filled in, the space sized for the dataset)")
    show.add_argument("config", type=Path, nargs="?", help="a YAML search config")
    _add_overrides(show)
    show.add_argument("--json", action="store_true",
                      help='print JSON: {"keys": [...], "resolved": {...} with CONFIG}')
    show.set_defaults(func=cmd_show)

    check = config_sub.add_parser(
        "check", help="validate CONFIG as `nas search` does before it starts Ray; starts nothing")
    check.add_argument("config", type=Path, help="a YAML search config")
    _add_overrides(check)
    check.set_defaults(func=cmd_check)


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value as `nas search --set` does (repeatable)")


def check_config(path: Path, overrides: list[str], *,
                 new_run: bool = True) -> tuple[Any, Any]:
    """(config, experiment) after the checks ``nas search`` makes before Ray; raises their
    ConfigError / UsageError. ``new_run=False`` (``nas config show``) skips the check that the
    named run folder does not exist yet: showing a config is not starting its run."""
    from nas.config import load_config, parse_config
    from nas.experiment import build_experiment
    from nas.results import RunDir

    config = load_config(path, overrides)
    exp = build_experiment(config)
    # `nas search` names an unnamed run after the file and the time
    if new_run and config.name is not None:
        RunDir.new_path(config.results_dir, config.name)
    resolved = config.to_dict()  # what the search writes to config.yaml, parsed again
    resolved["space"]["options"] = dict(exp.space.options)
    parse_config(resolved)
    return config, exp


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a config; one line ``ok: ...`` on success (errors exit 2 in ``nas.cli.main``)."""
    config, _ = check_config(args.config, args.overrides)
    print(f"ok: {args.config} (space {config.space['name']}, controller "
          f"{config.controller['name']}, {config.search.trials} trials)")
    return 0


def yaml_value(value: Any) -> str:
    """``value`` as one line of YAML that reads back as the same value (4e-05 -> ``4.0e-05``:
    YAML 1.1 reads ``4e-05`` as a string)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10**6)
    return text.removesuffix("...\n").strip()


def _shown(value: Any) -> str:
    from nas.schema import REQUIRED

    return "required" if value is REQUIRED else yaml_value(value)


def cmd_show(args: argparse.Namespace) -> int:
    """Print the schema; with a config, also that config resolved."""
    import yaml

    from nas.schema import config_keys, resolved_config

    keys = config_keys()
    resolved = None
    if args.config is not None:
        config, exp = check_config(args.config, args.overrides, new_run=False)
        resolved = resolved_config(config, exp.settings, exp.space.options,
                                   exp.controller.options)
    elif args.overrides:
        from nas.errors import UsageError

        raise UsageError("--set needs a CONFIG to apply to")
    if args.json:
        print_json({"keys": [k.to_dict() for k in keys],
                    **({"resolved": resolved} if resolved is not None else {})})
        return 0
    print_table("config keys (nas config show CONFIG: a config resolved)",
                ["key", "type", "default", "meaning"],
                [[k.key, k.type, _shown(k.default), k.meaning] for k in keys])
    if resolved is not None:
        print(f"\n# {args.config}, resolved (defaults filled in, space sized for the dataset)")
        print(yaml.dump(resolved, Dumper=_dumper(), sort_keys=False), end="")
    return 0


def _dumper() -> type:
    """A YAML dumper that writes mappings as blocks and lists on one line."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def flow_list(dumper: Any, data: list) -> Any:
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)

    Dumper.add_representer(list, flow_list)
    Dumper.add_representer(tuple, flow_list)
    return Dumper
