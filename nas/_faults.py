"""Crash points for tests: ``MNAS_FAULT=<point>`` makes the driver SIGKILL itself there.

The points are moments where a real crash must lose nothing but the trials in flight:
``before_ray`` (lock held, Ray not started), ``after_trials`` (every trial stored, the final
writes not done) and ``final_write`` (``trials.parquet`` half written).
"""

from __future__ import annotations

import os
import signal

ENV = "MNAS_FAULT"
POINTS = ("before_ray", "after_trials", "final_write")


def crash_point(point: str) -> None:
    """Die here, as ``kill -9`` would, when the environment asks for ``point``."""
    if os.environ.get(ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
