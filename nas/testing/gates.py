"""A test evaluator that waits at a gate: crash and lock tests hold a search mid-run with it.

``gated`` returns stable metrics like :func:`nas.testing.fixtures.fixed_time`, but only once the
file ``options.gate`` exists, so a test decides when children may finish instead of hoping a
timing works out on a loaded machine. A child arriving at the gate writes a file named by its
process id into the folder ``options.arrived`` (if given); with ``options.orphan`` it first
starts a detached process (its own session and no parent but init, so it outlives its worker and
the driver, as a daemonised subprocess of a child can) and writes that pid into the file: a
process of this run's Ray that a crash leaves behind. ``options.timeout_s`` (default 300)
bounds the wait.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from torch import nn

from nas.errors import TrialFailed
from nas.registry import evaluator
from nas.space import Arch

__all__ = ["gated"]


def _start_orphan(seconds: float) -> str:
    """Pid of a sleeper started through a launcher that exits at once: the sleeper is nobody's
    child (its parent is init), so Ray's clean-up of a worker's children never sees it, however
    the driver's death and the worker's exit interleave."""
    sleeper = f"import time; time.sleep({seconds})"
    launcher = ("import subprocess, sys; "
                f"print(subprocess.Popen([sys.executable, '-c', {sleeper!r}], "
                "start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, "
                "stderr=subprocess.DEVNULL).pid)")
    return subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True,
                          check=True).stdout.strip()


@evaluator(options=("gate", "arrived", "orphan", "timeout_s"))
def gated(arch: Arch | None, model: nn.Module, ctx: Any) -> dict[str, Any]:
    """Block until ``options.gate`` exists, then return metrics derived from the architecture."""
    options = ctx.settings.evaluator_options
    gate, deadline = str(options["gate"]), time.monotonic() + float(options.get("timeout_s", 300))
    if options.get("arrived"):
        orphan = ""
        if options.get("orphan"):
            orphan = _start_orphan(float(options.get("timeout_s", 300)))
        os.makedirs(options["arrived"], exist_ok=True)
        with open(os.path.join(options["arrived"], str(os.getpid())), "w") as fh:
            fh.write(orphan)
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TrialFailed(f"gate {gate} did not open")
        time.sleep(0.05)  # polling a file the test creates: the wait itself, not a guess
    key = int(arch.key[:8], 16) if arch is not None else 0
    return {"accuracy": 0.5 + (key % 1000) / 2000.0, "latency_ms": 1.0 + (key % 97) / 10.0}
