"""The supernet of a ``supernet``-evaluator search, trained once before the first child.

Any space with the supernet hook (:meth:`nas.space.Space.supernet`) can be searched this way; one
without it, or an ``evaluator.options.supernet`` its builder refuses, stops the search before Ray
starts (:func:`check_named_supernet`). :func:`prepare_supernet` runs
:func:`nas.supernet.train_supernet` as one Ray task with a trial's resources
(``search.cpus_per_trial`` / ``gpus_per_trial``: on a GPU when a trial gets one), pinned to the
driver's node so that its per-epoch checkpoints land in ``RUN/supernet/`` (safetensors plus
``supernet.json``). A search killed meanwhile continues the training on ``nas resume``; a
finished folder is used at once; ``evaluator.options.checkpoint`` names a folder trained before
(a supernet folder or a run folder holding one), which later searches reuse as it is. The trials
get the folder's absolute path (resolved here, in the driver: a trial's working folder is not the
driver's); on a joined cluster they also get its bytes (in the Ray object store with the trial
payload), which a worker on another node writes to its own temp folder once. Each epoch is shown
as it ends (epoch k/N, loss, ETA; :mod:`nas.runner.phases`): the task is a generator whose items
are the epochs, then the checkpoint's info.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray

from nas._fs import safe_dir, write_atomic
from nas.errors import ConfigError
from nas.results import RunDir
from nas.runner.phases import Phase, collect, start_phase, stream_steps

__all__ = ["prepare_supernet", "check_named_supernet", "materialize", "SUPERNET_FILES"]

log = logging.getLogger(__name__)

SUPERNET_FILES = ("supernet.safetensors", "supernet.json")


def _train_task(space_ref: str, space_options: dict[str, Any], settings: dict[str, Any],
                options: dict[str, Any], folder: str) -> Iterator[tuple[str, Any]]:
    """The Ray task body, a generator: rebuild the space and dataset, then train (or resume)
    the supernet; yields each finished epoch (``{"epoch", "epochs", "loss", "seconds"}``), then
    the checkpoint's info (:func:`nas.runner.phases.stream_steps`)."""
    from nas.evaluation.evaluate import EvalSettings, get_dataset
    from nas.registry import SPACES
    from nas.supernet.train import train_supernet

    def train(report: Any) -> dict[str, Any]:
        space = SPACES.create(space_ref, **space_options)
        data = get_dataset(EvalSettings.from_dict(settings))
        return train_supernet(space, data, options, folder, on_epoch=report)

    yield from stream_steps(train)


def _check_hook(exp: Any, options: Any) -> None:
    """The run's space builds a supernet with these options (on the meta device: no memory)."""
    from nas.supernet.train import with_builder_defaults

    try:
        with_builder_defaults(exp.space, options)
    except ConfigError as exc:
        raise ConfigError(f"evaluator 'supernet': {exc}") from None


def check_named_supernet(exp: Any) -> dict[str, Any] | None:
    """The stored info of the supernet ``evaluator.options.checkpoint`` names, checked against
    the run's space and dataset before anything starts (None: no supernet named); first, that
    the run's space has a supernet that takes ``evaluator.options.supernet``.

    Raises:
        ConfigError: a space without the supernet hook, an option its supernet does not take,
            nothing at the checkpoint, or a supernet of another space or dataset (the keys
            named).
    """
    if exp.settings.evaluator != "supernet":
        return None
    from nas.supernet.evaluator import checkpoint_folder, split_options, stored_info

    options, named = split_options(exp.settings.evaluator_options)
    _check_hook(exp, options)
    if named is None:
        return None
    info = stored_info(checkpoint_folder(named))
    if info is None:
        raise ConfigError(f"evaluator.options.checkpoint={named!r}: no supernet there")
    space = info.get("space") or {}
    mine = dict(exp.space.options)
    theirs = dict(space.get("options") or {})
    differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if space.get("name") != exp.space.name or differ:
        raise ConfigError(f"evaluator.options.checkpoint={named!r}: a supernet of another space "
                          f"({space.get('name')}; options that differ: {', '.join(differ)})")
    data = (info.get("dataset") or {}).get("name")
    if data != exp.dataset.name:
        raise ConfigError(f"evaluator.options.checkpoint={named!r}: trained on {data!r}, not on "
                          f"the run's dataset {exp.dataset.name!r}")
    return info


def prepare_supernet(run: RunDir, exp: Any, *, local: bool,
                     view: Any = None) -> tuple[Any, dict[str, Any] | None]:
    """``(experiment, blob)``: the experiment whose evaluator options name the trained supernet
    folder (an absolute path), and (on a joined cluster) the folder's files for workers on other
    nodes; each epoch trained is shown like ``view`` (None: silent). Other evaluators:
    ``(exp, None)`` unchanged."""
    if exp.settings.evaluator != "supernet":
        return exp, None
    from nas.runner.latency_service import space_ref
    from nas.supernet.checkpoint import stored_options
    from nas.supernet.evaluator import checkpoint_folder, split_options, supernet_id
    from nas.supernet.options import TRAINING_KEYS, SupernetOptions

    options, named = split_options(exp.settings.evaluator_options)
    # RUN/supernet is the run folder's content: made here, refused when it is a link
    folder = checkpoint_folder(named) if named else safe_dir(run.path / "supernet", root=run.path)
    folder = folder.absolute()  # the trials' working folder is not the driver's
    stored = check_named_supernet(exp)
    if stored is not None:  # reused as it was trained (an unfinished one is finished first)
        trained = {k: v for k, v in stored_options(stored).items() if k in TRAINING_KEYS}
        options = SupernetOptions.from_dict({**options.to_dict(), **trained})
    search = exp.config.search
    node = ray.get_runtime_context().get_node_id()
    task = ray.remote(_train_task).options(
        num_cpus=search.cpus_per_trial, num_gpus=search.gpus_per_trial, max_retries=0,
        scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
            node_id=node, soft=False))
    t0 = time.perf_counter()
    settings = exp.settings.to_dict()
    phase = _epochs_phase(view, folder, options.epochs)

    def epoch(report: dict[str, Any]) -> None:
        phase.step(int(report["epoch"]), f"loss {float(report['loss']):.4f}")

    try:
        info = collect(task.remote(space_ref(exp.space), dict(exp.space.options), settings,
                                   options.to_dict(), str(folder)), epoch)
    except BaseException:
        phase.finish()
        raise
    phase.finish(f"ready in {folder} ({info.get('epochs_done')} epochs)")
    log.info("supernet ready in %s (%s epochs, %.1f s here)", folder, info.get("epochs_done"),
             time.perf_counter() - t0)
    new = dataclasses.replace(exp.settings, evaluator_options={
        **exp.settings.evaluator_options, "checkpoint": str(folder)})
    blob = None if local else {"id": supernet_id(folder), "files": {
        name: (folder / name).read_bytes() for name in SUPERNET_FILES}}
    return dataclasses.replace(exp, settings=new), blob


def _epochs_phase(view: Any, folder: Path, epochs: int) -> Phase:
    """The training's progress: from the epochs the folder holds already (a resumed one)."""
    from nas.supernet.evaluator import stored_info

    try:
        done = int((stored_info(folder) or {}).get("epochs_done") or 0)
    except Exception:  # an unreadable folder: the task reports what is wrong with it
        done = 0
    what = (f"training {epochs} epochs into {folder}" if done == 0 else
            f"{done}/{epochs} epochs in {folder}" + ("" if done >= epochs else "; continuing"))
    return start_phase(view, "supernet", epochs, done=min(done, epochs), unit="epoch",
                       intro=what)


def materialize(settings: Any, blob: dict[str, Any] | None) -> Any:
    """On a worker: ``settings`` whose supernet checkpoint exists on this node (written from
    ``blob`` into this node's temp folder when the driver's path is not here)."""
    if blob is None or settings.evaluator != "supernet":
        return settings
    checkpoint = settings.evaluator_options.get("checkpoint")
    if checkpoint and (Path(checkpoint) / SUPERNET_FILES[0]).is_file():
        return settings
    temp = Path(tempfile.gettempdir())
    # a shared temp folder: a link planted under the name is refused, never read or written
    here = safe_dir(temp / f"mnas-supernet-{blob['id']}", root=temp)
    if not (here / SUPERNET_FILES[0]).is_file():
        for name, data in blob["files"].items():
            write_atomic(here / name, data)
    return dataclasses.replace(settings, evaluator_options={**settings.evaluator_options,
                                                            "checkpoint": str(here)})
