"""A test evaluator that waits at a gate: crash and lock tests hold a search mid-run with it.

``gated`` returns stable metrics like :func:`nas.testing.fixtures.fixed_time`, but only once the
file ``options.gate`` exists, so a test decides when children may finish instead of hoping a
timing works out on a loaded machine. A child arriving at the gate writes a file named by its
process id into the folder ``options.arrived`` (if given); with ``options.orphan`` it first
starts a detached process (its own session, so it outlives its worker and the driver, as a
child's subprocess can) and writes that pid into the file: a process of this run's Ray that a
crash leaves behind. ``options.timeout_s`` (default 300) bounds the wait.
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


@evaluator(options=("gate", "arrived", "orphan", "timeout_s"))
def gated(arch: Arch | None, model: nn.Module, ctx: Any) -> dict[str, Any]:
    """Block until ``options.gate`` exists, then return metrics derived from the architecture."""
    options = ctx.settings.evaluator_options
    gate, deadline = str(options["gate"]), time.monotonic() + float(options.get("timeout_s", 300))
    if options.get("arrived"):
        orphan = ""
        if options.get("orphan"):
            sleeper = f"import time; time.sleep({float(options.get('timeout_s', 300))})"
            orphan = str(subprocess.Popen([sys.executable, "-c", sleeper],
                                          start_new_session=True).pid)
        os.makedirs(options["arrived"], exist_ok=True)
        with open(os.path.join(options["arrived"], str(os.getpid())), "w") as fh:
            fh.write(orphan)
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TrialFailed(f"gate {gate} did not open")
        time.sleep(0.05)  # polling a file the test creates: the wait itself, not a guess
    key = int(arch.key[:8], 16) if arch is not None else 0
    return {"accuracy": 0.5 + (key % 1000) / 2000.0, "latency_ms": 1.0 + (key % 97) / 10.0}
