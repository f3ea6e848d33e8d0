"""The library's errors name its parameters; the command line shows them as its own flags."""

from __future__ import annotations

import pytest

from nas.cli import build_parser, command_parser, flag_message, main
from nas.errors import UsageError
from nas.search.bench import load_table


def shown(argv, message, params):
    parser = build_parser()
    args = parser.parse_args(argv)
    return flag_message(UsageError(message, params=params), command_parser(parser, args))


@pytest.mark.parametrize("argv, message, params, expected", [
    (["export", "r"], "rank=0: must be an integer >= 1", ("rank",),
     "--rank=0: must be an integer >= 1"),
    (["export", "r"], "trial_id=7: no such trial", ("trial_id",), "--trial=7: no such trial"),
    (["export", "r"], "out='d': exists; choose another folder or pass overwrite=True",
     ("out", "overwrite"), "--out='d': exists; choose another folder or pass --force"),
    (["export", "r"], "formats: unknown format 'x'", ("formats",), "--format: unknown format 'x'"),
    (["search", "c.yaml"], "overrides 'a': expected key.path=value", ("overrides",),
     "--set 'a': expected key.path=value"),
    (["analyze", "r"], "alpha/beta: no target; give target_ms", ("alpha", "beta", "target_ms"),
     "--alpha/--beta: no target; give --target-ms"),
    # a parameter the command has no flag for keeps its name (it is a config key there)
    (["search", "c.yaml"], "epochs=0: must be an integer", ("epochs",),
     "epochs=0: must be an integer"),
    # only whole words named in params change, and only those
    (["export", "r"], "out='x': timed out; rank kept", ("out",),
     "--out='x': timed out; rank kept"),
])
def test_params_become_the_commands_flags(argv, message, params, expected):
    assert shown(argv, message, params) == expected


def test_library_names_the_parameter_and_the_cli_the_flag(tmp_path, capsys):
    with pytest.raises(UsageError, match="^table: file not found"):
        load_table(tmp_path / "none.csv", key="k", metric="m")
    assert main(["bench", "--table", str(tmp_path / "none.csv"), "--metric", "m"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nas bench: error: --table: file not found") and "\n" not in err
