"""What a search or resume returns (:class:`SearchResult`), read from the run folder at its end."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.records import TrialRecord, TrialStatus, best_of, budgeted
from nas.results import RunDir
from nas.runner.remeasure import quiet_training_lost

__all__ = ["SearchResult", "failure_reasons", "search_result", "count"]


@dataclass
class SearchResult:
    """Outcome of :func:`start_search` / :func:`resume_search`."""

    run_dir: Path
    trials: int
    target: int
    failed: int
    best: dict[str, Any] | None
    complete: bool
    ray_startup_s: float = 0.0
    search_s: float = 0.0
    trained: int = 0
    failure_reasons: list[tuple[str, int]] = field(default_factory=list)
    remeasured: list[dict[str, Any]] = field(default_factory=list)
    quiet_lost: float | None = None
    rejected: int = 0
    stopped: str | None = None

    @property
    def all_failed(self) -> bool:
        """Every finished child failed."""
        return self.trials > 0 and self.failed == self.trials


def count(records: list[TrialRecord], status: TrialStatus) -> int:
    return sum(r.status is status for r in records)


def failure_reasons(records: list[TrialRecord], k: int = 3) -> list[tuple[str, int]]:
    """The ``k`` most common failure reasons (first line of the error) with their counts."""
    counts: dict[str, int] = {}
    for r in records:
        if r.status is TrialStatus.FAILED:
            reason = str(r.error or "unknown").strip().splitlines()[0][:200]
            counts[reason] = counts.get(reason, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])[:k]


def search_result(run: RunDir, target: int, startup: float, search_s: float) -> SearchResult:
    records = run.trials()
    trials = budgeted(records)
    return SearchResult(run_dir=run.path, trials=trials, target=target,
                        failed=count(records, TrialStatus.FAILED),
                        best=best_of(records), complete=trials >= target,
                        rejected=count(records, TrialStatus.REJECTED),
                        ray_startup_s=startup, search_s=search_s,
                        trained=count(records, TrialStatus.COMPLETE),
                        failure_reasons=failure_reasons(records),
                        quiet_lost=quiet_training_lost(records))

