"""How many children one Tune trial evaluates (``search.batch_children``), decided in the driver.

A Tune trial costs tens of milliseconds of its own (a trial object and folder, a result round trip,
stopping it, resetting the reused actor), which a child of a second or less notices. A batch is
one Tune trial that evaluates several proposals in sequence (:func:`nas.runner.trainable.
evaluate_trial` with ``children``) and reports every finished child as it comes; the searcher
records and tells each one on its own.

``auto`` sizes a batch to take about :data:`AUTO_BATCH_S` seconds, from the median evaluation
time of the last complete children (a batch of one while none has finished); ``N`` is a fixed
size. Either way a batch never takes more than its share of the children left
(``ceil(left / concurrency)``), so that the slots finish together (guided self-scheduling).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable

from nas.records import TrialRecord, TrialStatus

__all__ = ["BatchSizer", "child_seconds", "AUTO_BATCH_S", "AUTO_MAX"]

AUTO_BATCH_S = 2.0  # what an auto batch takes: Tune's own cost per trial becomes ~1-2 % of it
AUTO_MAX = 256  # children in an auto batch at most (all of them are in flight while it runs)
WINDOW = 32  # the last complete children whose times decide an auto batch


def child_seconds(record: TrialRecord) -> float | None:
    """A complete child's own evaluation time (the evaluator's ``timings.total_s``, without the
    worker's start-up), else its time in the trainable; None for other statuses."""
    if record.status is not TrialStatus.COMPLETE:
        return None
    total = (record.timings or {}).get("total_s")
    if isinstance(total, int | float) and not isinstance(total, bool) and total > 0:
        return float(total)
    if record.started_at is not None and record.finished_at is not None:
        return max(0.0, record.finished_at - record.started_at)
    return None


class BatchSizer:
    """The size of the next batch.

    Args:
        setting: ``"auto"`` or a fixed size (1: no batches, one child per Tune trial).
        concurrency: trials running at once (the slots the last children are split over).
        records: finished children so far (a resumed run sizes its batches from them at once).
        always: every trial carries a batch, even with ``setting`` 1 (the tasks executor, whose
            tasks all speak the batch protocol).
    """

    def __init__(self, setting: int | str, concurrency: int = 1,
                 records: Iterable[TrialRecord] = (), always: bool = False) -> None:
        self.setting = setting
        self.always = always
        self.concurrency = max(1, int(concurrency))
        self._seconds: deque[float] = deque(maxlen=WINDOW)
        for record in records:
            self.see(record)

    @property
    def batching(self) -> bool:
        """Whether trials carry batches (even of one child): every setting but 1, unless
        ``always``."""
        return self.always or self.setting != 1

    def see(self, record: TrialRecord) -> None:
        """Learn from a finished child."""
        seconds = child_seconds(record)
        if seconds is not None:
            self._seconds.append(seconds)

    def size(self, left: int) -> int:
        """Children for the next trial when ``left`` remain to be handed out (>= 1 if any)."""
        if left <= 0:
            return 0
        if self.setting == "auto":
            typical = statistics.median(self._seconds) if self._seconds else None
            wanted = 1 if typical is None else min(AUTO_MAX, round(AUTO_BATCH_S /
                                                                   max(typical, 1e-6)))
        else:
            wanted = int(self.setting)
        return max(1, min(wanted, math.ceil(left / self.concurrency)))
