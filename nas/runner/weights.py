"""Trained weights of the best children, kept in the run folder as they finish.

With ``search.keep_weights: K`` the trainable sends a complete child's state dict (safetensors
bytes) to :class:`WeightStore`, a small actor pinned to the driver's node that writes it to
``RUN/weights/incoming/``. When the driver records the trial, :class:`WeightKeeper` keeps the file
as ``RUN/weights/trial-<id>.safetensors`` (synced to disk then, not before: most children's
weights are dropped) if the child is among the best K by reward and deletes whatever falls out of
the top K. ``nas export`` loads these weights; a run resumed after a crash
drops incoming files of trials it never recorded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ray

from nas._fs import safe_dir, write_atomic
from nas.records import TrialRecord
from nas.results import RunDir

__all__ = ["WeightStore", "WeightKeeper", "start_weight_store", "serialize_weights",
           "write_incoming", "incoming_dir"]

log = logging.getLogger(__name__)

INCOMING = "incoming"


def weights_path(run_path: str | Path, trial_id: int) -> Path:
    return RunDir(run_path).weights_path(trial_id)


def incoming_dir(run_path: str | Path) -> Path:
    """Where children's weights arrive before the driver files or drops them."""
    return RunDir(Path(run_path).resolve()).weights_dir / INCOMING


def write_incoming(folder: str | Path, trial_id: int, data: bytes) -> Path:
    """Write one child's weights into ``folder`` (``RUN/weights/incoming``) atomically, not yet
    synced to disk: most are dropped, and :class:`WeightKeeper` syncs those it keeps.

    Raises:
        SymlinkError: ``weights/``, ``incoming/`` or the file is a symbolic link.
    """
    folder = Path(folder)
    safe_dir(folder, root=folder.parent.parent)  # made below the run folder, never via a link
    return write_atomic(folder / f"trial-{int(trial_id)}.safetensors", data, fsync=False)


def serialize_weights(model: Any, metadata: dict[str, str]) -> bytes:
    """A model's state dict as safetensors bytes (CPU, contiguous copies)."""
    from safetensors.torch import save

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    return save(state, metadata=metadata)


@ray.remote(num_cpus=0)
class WeightStore:
    """Writes children's weights into ``RUN/weights/incoming/`` on the driver's node."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def put(self, trial_id: int, data: bytes) -> str:
        return str(write_incoming(self.folder, trial_id, data))


def start_weight_store(run_path: Path, name: str) -> Any:
    """The named store actor on this driver's node (keep the handle for the search's length)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    return WeightStore.options(
        name=name, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
    ).remote(str(incoming_dir(run_path)))


class WeightKeeper:
    """Driver side: the best ``k`` children's weights stay, the rest are deleted.

    ``margin`` more are kept while the search runs, because the end of a search re-measures the
    finalists' latencies and may reorder the top; :meth:`finalize` then keeps the first ``k`` of
    the final ranking that are still there.
    """

    def __init__(self, run_path: str | Path, k: int, records: Iterable[TrialRecord] = (),
                 margin: int = 0) -> None:
        self.run_path, self.k = Path(run_path), k
        self.margin = margin if k > 0 else 0
        self.folder = RunDir(self.run_path).weights_dir
        safe_dir(self.folder / INCOMING, root=self.run_path, create=False)  # no linked folder
        rewards = {r.trial_id: r.reward for r in records if r.complete and r.reward is not None}
        self.kept: dict[int, float] = {}
        for path in sorted(self.folder.glob("trial-*.safetensors")):
            trial = _trial_of(path)
            if trial in rewards:
                self.kept[trial] = rewards[trial]
            else:
                path.unlink()
        for path in sorted((self.folder / INCOMING).glob("trial-*")):
            trial = _trial_of(path)
            if trial in rewards and path.suffix == ".safetensors":  # recorded, not yet filed
                os.replace(path, weights_path(self.run_path, trial))
                self.kept[trial] = rewards[trial]
            else:
                path.unlink()  # sent by a trial that was never recorded (the driver died)
        self._trim()
        for trial in self.kept:  # filed by a driver that may have died before syncing them
            _sync(weights_path(self.run_path, trial))

    def settle(self, record: TrialRecord) -> bool:
        """File the incoming weights of a recorded trial; True when they were kept."""
        incoming = self.folder / INCOMING / f"trial-{record.trial_id}.safetensors"
        if not incoming.exists():
            return False
        if self.k <= 0 or not record.complete or record.reward is None:
            incoming.unlink()
            return False
        os.replace(incoming, weights_path(self.run_path, record.trial_id))
        self.kept[record.trial_id] = record.reward
        self._trim()
        if record.trial_id not in self.kept:
            return False
        _sync(weights_path(self.run_path, record.trial_id))  # kept: now on disk
        return True

    def bar(self) -> float | None:
        """The lowest reward a child needs for its weights to be kept: the lowest kept reward
        once ``k`` (plus the margin) are kept, else None (any complete child is kept). Kept
        rewards only rise, so a worker whose child scores under it need not send its weights
        (:func:`nas.runner.trainable.may_keep`)."""
        if self.k <= 0 or len(self.kept) < self.k + self.margin:
            return None
        return min(self.kept.values())

    def _trim(self) -> None:
        order = sorted(self.kept, key=lambda t: (-self.kept[t], t))
        self._drop(order[max(self.k, 0) + self.margin:])

    def _drop(self, trials: Iterable[int]) -> None:
        for trial in list(trials):
            weights_path(self.run_path, trial).unlink(missing_ok=True)
            del self.kept[trial]

    def finalize(self, ranking: Iterable[int]) -> list[int]:
        """Keep the first ``k`` kept trials of ``ranking`` (best first); returns them."""
        keep = [t for t in ranking if t in self.kept][: max(self.k, 0)]
        self._drop(t for t in list(self.kept) if t not in keep)
        self.margin = 0
        return keep


def _sync(path: Path) -> None:
    """Flush a kept weights file to disk (the worker wrote it without syncing)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _trial_of(path: Path) -> int | None:
    stem = path.name.split(".")[0]
    try:
        return int(stem.removeprefix("trial-"))
    except ValueError:
        return None
