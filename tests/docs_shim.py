"""``nas`` as the docs' examples run it: the real command, at a small budget.

``tests/docs_examples.py`` puts a ``nas`` script that runs this file first on the PATH of every
example. Flags appended at the end win over the example's own (argparse keeps the last value):

- ``nas search`` / ``nas resume``: 2 children of 1 epoch on at most 300 training images, a fixed
  reward target (no 8-child measurement), no finalist re-measured (the shared quick-start run of
  ``tests/test_docs_examples.py`` re-measures two, for the pages that show final latencies); a
  supernet of 1 epoch;
- ``nas evaluate``: 1 epoch on at most 300 images; ``nas export --train-epochs N``: 1 epoch;
- ``nas bench``: 2 seeds of 20 trials; ``nas remeasure``: 1 pass;
- ``nas dashboard``: started, its page fetched once (HTTP 200 required), then stopped with
  Ctrl-C (SIGINT).

Everything else runs as written.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

NAS = [sys.executable, "-m", "nas.cli"]


def _config(args: list[str]) -> dict:
    """The YAML config a ``nas search`` names (its first positional argument), or {}."""
    for arg in args[1:]:
        if not arg.startswith("-") and arg.endswith((".yaml", ".yml")) and Path(arg).is_file():
            return yaml.safe_load(Path(arg).read_text()) or {}
    return {}


def search_flags(args: list[str]) -> list[str]:
    config = _config(args)
    flags = ["--trials", "2", "--set", "evaluator.epochs=1", "--set", "evaluator.max_train=300",
             "--set", "reward.target=1.0", "--set", "search.remeasure_top=0"]
    evaluator = (config.get("evaluator") or {})
    if evaluator.get("name") == "supernet":
        flags += ["--set", "evaluator.options.epochs=1"]
    return flags


def small(args: list[str]) -> list[str]:
    command = args[0] if args else ""
    if command == "search":
        return args + search_flags(args)
    if command == "evaluate":
        return args + ["--epochs", "1", "--max-train", "300"]
    if command == "export" and "--train-epochs" in args:
        return args + ["--train-epochs", "1"]
    if command == "bench":
        return args + ["--seeds", "2", "--trials", "20"]
    if command == "remeasure":
        return args + ["--passes", "1"]
    return args


def dashboard(args: list[str]) -> int:
    """Start the dashboard, fetch its page once, stop it; 0 when the page came back 200."""
    proc = subprocess.Popen(NAS + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    url = None
    for line in proc.stdout:  # the line that says where it serves
        sys.stdout.write(line)
        found = re.search(r"(http://[\w.\[\]:]+/)", line)
        if found:
            url = found.group(1)
            break
    if url is None:
        return proc.wait() or 1
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            status = response.status
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    return 0 if status == 200 else 1


def main(argv: list[str]) -> int:
    if argv and argv[0] == "dashboard":
        return dashboard(argv)
    return subprocess.run(NAS + small(argv)).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
