"""Every ``nas ...`` command line in the ```bash blocks of README.md and the documentation pages
parses with the real parser, those the docs do not run included.

Lines are read as a shell reads them, as far as it matters here: ``\\`` continuations are joined,
``#`` comments dropped, quotes respected, ``&&``/``||``/``;``/``|``/``(``/``)`` split commands,
redirections (``> file``, ``2>/dev/null``) and leading ``VAR=value`` assignments are skipped.
Each command whose program is ``nas`` goes through :func:`nas.cli.build_parser`; an argparse
error fails the test naming the README line.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from nas.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")", ";;"}
REDIRECTS = {">", ">>", "<", ">&", "&>", "<<", "<<<"}
ASSIGNMENT = re.compile(r"[A-Za-z_]\w*=")


def _lexer(text: str) -> shlex.shlex:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return lexer


def _open_quote(text: str) -> bool:
    try:
        list(_lexer(text))
    except ValueError:  # "No closing quotation": the line goes on
        return True
    return False


def bash_lines(text: str) -> list[tuple[int, str]]:
    """(README line number, logical line) of every ```bash block: ``\\`` continuations and
    quotes spanning lines joined."""
    out: list[tuple[int, str]] = []
    inside, pending, start = False, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        fence = line.strip()
        if fence.startswith("```"):
            if pending:  # the block ends inside a line (an open quote): report it as it is
                out.append((start, pending.rstrip()))
            inside, pending = fence == "```bash" and not inside, ""
            continue
        if not inside:
            continue
        start = start if pending else number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
        elif _open_quote(pending + line):
            pending += line + "\n"
        else:
            out.append((start, pending + line))
            pending = ""
    return out


def commands(line: str) -> list[list[str]]:
    """The simple commands of one shell line, as argv lists (assignments and redirections out)."""
    line = re.sub(r"(?<=\s)\d(?=>>?)", "", line)  # `2>file` -> `>file`: the fd is not an argument
    found, argv, skip = [], [], False
    for token in _lexer(line):
        if skip:
            skip = False
        elif token in SEPARATORS:
            found.append(argv)
            argv = []
        elif token in REDIRECTS:
            skip = True
        elif argv or not ASSIGNMENT.match(token):
            argv.append(token)
    found.append(argv)
    return [a for a in found if a]


def nas_commands(text: str) -> list[tuple[int, str, list[str] | None]]:
    """(line number, line, arguments after ``nas``) of every ``nas`` command in bash blocks; a
    line that is not valid shell (an unclosed quote) comes with None."""
    found = []
    for number, line in bash_lines(text):
        try:
            argvs = commands(line)
        except ValueError:
            found.append((number, line.strip(), None))
            continue
        found += [(number, line.strip(), argv[1:]) for argv in argvs if argv[0] == "nas"]
    return found


def parse_error(argv: list[str]) -> str | None:
    """argparse's complaint about ``nas ARGV`` (its last line), or None when it parses."""
    parser = build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):  # --help and --version exit 0
            return (err.getvalue().strip().splitlines() or [f"exit {exc.code}"])[-1]
    return None


README_COMMANDS = [(str(page.relative_to(ROOT)), number, line, argv) for page in PAGES
                   for number, line, argv in nas_commands(page.read_text())]


def test_the_docs_have_commands_to_check():
    assert len(README_COMMANDS) >= 60, README_COMMANDS
    assert {argv[0] for *_, argv in README_COMMANDS if argv} >= {
        "search", "evaluate", "config", "export", "analyze", "bench", "dashboard", "resume"}


@pytest.mark.parametrize("page, number, line, argv", README_COMMANDS,
                         ids=[f"{p}:{n}" for p, n, _, _ in README_COMMANDS])
def test_docs_command_parses(page, number, line, argv):
    assert argv is not None, f"{page} line {number}: `{line}`: not a shell line (open quote)"
    error = parse_error(argv)
    assert error is None, f"{page} line {number}: `{line}`: {error}"


SAMPLE = """
Text with `nas search --bogus` outside a block is not checked.

```bash
pip install -e . && nas search configs/q.yaml --trials 3   # a comment --not-a-flag
RAY_ADDRESS=auto MNAS_DATA_DIR=/d nas status results/q --json > status.json 2>/dev/null
nas export results/q --rank 2 \\
    --format json
nas dashboard "$(ls -d results/q-* | tail -n 1)" --port 0
echo nas search
python -c "
print('nas search --bogus')
" && nas spaces
```

```python
nas.get_space("mnasnet")  # not bash
```
"""


def test_extraction_follows_the_shell():
    found = [(n, argv) for n, _, argv in nas_commands(SAMPLE)]
    assert found == [
        (5, ["search", "configs/q.yaml", "--trials", "3"]),
        (6, ["status", "results/q", "--json"]),
        (7, ["export", "results/q", "--rank", "2", "--format", "json"]),
        (9, ["dashboard", "$(ls -d results/q-* | tail -n 1)", "--port", "0"]),
        (11, ["spaces"]),
    ]


def test_an_unclosed_quote_is_reported_not_skipped():
    assert nas_commands("```bash\nnas search 'c.yaml\n```\n") == [(2, "nas search 'c.yaml", None)]


def test_a_flag_that_does_not_exist_fails():
    (_, _, argv), = nas_commands("```bash\nnas search c.yaml --trails 3\n```\n")
    assert "unrecognized arguments: --trails 3" in parse_error(argv)
    assert "invalid choice" in parse_error(["serach", "c.yaml"])
    assert parse_error(["search", "c.yaml", "--trials", "3"]) is None
