"""Architecture cards: one searched child as a self-describing folder, and the way back to a model.

``export_trial(run, rank=1)`` writes, into a fresh folder (default ``<run>/export/trial-<id>``):

- ``arch.json``, the card: the space and its options, the decisions, the canonical key, the space's
  description (for MnasNet the block table and timm-style block strings such as
  ``ir_r2_k3_s2_e6_c24_se0.25``), the raw metrics of the trial with their provenance (device
  fingerprint, latency spread, dataset, epochs, node, times), why it was chosen (rank and reward
  settings), and the files and checks below;
- ``model.pt2`` (``torch.export``), ``model.onnx`` (checked in ONNX Runtime against PyTorch) and the
  weights (safetensors or a weights-only state dict), see :mod:`nas.export.formats`.

With ``train_epochs`` the child is first trained for that many epochs with the run's settings and
dataset, and every artifact holds the trained weights. Everything is written into a temporary
folder that is renamed into place at the end, so bad input or a failure leaves nothing behind.

:func:`build_from_card` rebuilds the model from a card (same parameters, and with the card's
weights the same outputs). The card is also an ``--arch`` file for ``nas cost`` and friends.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas._checks import check_int
from nas._fs import (
    check_no_link,
    check_writable_folder,
    read_json,
    safe_dir,
    user_dir,
    write_atomic,
)
from nas.errors import UsageError
from nas.export.formats import (
    onnx_available,
    reference_output,
    write_onnx,
    write_pt2,
    write_weights,
)
from nas.export.provenance import load_card_weights, provenance
from nas.export.rebuild import CARD, CARD_FORMAT, card_space
from nas.results import clean_json
from nas.reward import RewardConfig

__all__ = ["FORMATS", "parse_formats", "select_trial", "export_trial", "ExportResult"]

log = logging.getLogger(__name__)

FORMATS = ("json", "pt2", "onnx", "weights")


def parse_formats(formats: str | Sequence[str] | None) -> tuple[str, ...]:
    """Validated export formats (``"json,pt2"`` or a list); ``json`` (the card) is always written.

    None means every format, ``onnx`` only where the ``onnx`` extra is installed.

    Raises:
        UsageError: an unknown format, or ``onnx`` without onnx/onnxruntime.
    """
    if formats is None:
        wanted = [f for f in FORMATS if f != "onnx" or onnx_available()]
        if not onnx_available():
            log.warning("onnx/onnxruntime not installed: skipping model.onnx "
                        "(pip install 'mnas[onnx]')")
    else:
        items = formats.split(",") if isinstance(formats, str) else list(formats)
        wanted = [str(f).strip().lower() for f in items if str(f).strip()]
        if not wanted:
            raise UsageError(f"formats={formats!r}: empty; allowed: {', '.join(FORMATS)}",
                             params=("formats",))
        for fmt in wanted:
            if fmt not in FORMATS:
                raise UsageError(f"formats: unknown format {fmt!r}; allowed: {', '.join(FORMATS)}",
                                 params=("formats",))
        if "onnx" in wanted and not onnx_available():
            raise UsageError("formats: onnx needs onnx and onnxruntime: pip install 'mnas[onnx]'",
                             params=("formats",))
    return tuple(f for f in FORMATS if f in wanted or f == "json")


def _known_ids(by_id: Mapping[Any, Any]) -> str:
    """The first 20 trial ids, numbers first, for an error message."""
    ids = sorted(by_id, key=lambda i: (not isinstance(i, int), i if isinstance(i, int) else 0,
                                       str(i)))
    return ", ".join(str(i) for i in ids[:20]) + (", ..." if len(ids) > 20 else "")


def select_trial(run: Any, *, rank: int | None = None, trial_id: int | None = None,
                 reward: RewardConfig | None = None) -> tuple[dict[str, Any], int | None, float]:
    """The record to export: the best trial of the ``rank``-th best architecture (1 = best; a
    repeated architecture ranks by its mean reward) or trial ``trial_id``.

    Returns:
        ``(record, its architecture's rank or None, that architecture's mean reward)``.

    Raises:
        UsageError: both or a bad value given, rank beyond the complete trials, unknown trial id,
            or a trial that did not complete.
    """
    from nas.analysis.analyze import rank_archs

    if rank is not None and trial_id is not None:
        raise UsageError("rank and trial_id: give one of them, not both",
                         params=("rank", "trial_id"))
    ranked = rank_archs(run.trials, reward)
    if trial_id is None:
        rank = 1 if rank is None else rank
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise UsageError(f"rank={rank!r}: must be an integer >= 1", params=("rank",))
        if rank > len(ranked):
            raise UsageError(f"rank={rank}: the run has only {len(ranked)} complete "
                             "architectures with a reward", params=("rank",))
        trial_id = int(ranked.iloc[rank - 1]["trial_id"])
    by_id = {r.trial_id: r for r in run.records}
    if trial_id not in by_id:
        known = _known_ids(by_id)
        raise UsageError(f"trial_id={trial_id!r}: no such trial in {run.path} (known: {known})",
                         params=("trial_id",))
    record = by_id[trial_id]
    if not record.complete:
        raise UsageError(f"trial_id={trial_id}: the trial is {record.status} "
                         f"({record.error or 'no metrics'}); only complete trials export",
                         params=("trial_id",))
    row = ranked[ranked["arch_key"] == record.arch_key]
    found_rank = int(row.iloc[0]["rank"]) if len(row) else None
    value = float(row.iloc[0]["reward"]) if len(row) else float("nan")
    return record, found_rank, value


def _seed(config: Mapping[str, Any]) -> int:
    seed = (config.get("evaluator") or {}).get("seed", 0)
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


def _card(run: Any, record: Mapping[str, Any], space: Any, arch: Any, model: nn.Module,
          selection: dict[str, Any]) -> dict[str, Any]:
    name, _ = card_space(run.config)
    metrics = {k: v for k, v in (record.metrics or {}).items() if k != "train"}
    final = (getattr(run, "final", None) or {}).get(record.arch_key)
    if final:  # the card's metrics state the final latency, as the ranking used
        metrics.update({k: final.get(k) for k in ("latency_ms", "latency_p10_ms",
                                                  "latency_p90_ms", "latency_spread",
                                                  "latency_n")})  # none of the search's kept
        metrics["latency_search_ms"] = (record.metrics or {}).get("latency_ms")
    train = dict((record.metrics or {}).get("train") or {})
    train.pop("history", None)
    from nas._version import __version__

    return {
        "format": CARD_FORMAT,
        "space": {"name": name, "options": dict(space.options)},
        "decisions": dict(arch.items()), "arch_key": arch.key,
        "input_shape": list(space.input_shape()),
        "structure": space.describe(arch),
        "model": {"params": int(sum(p.numel() for p in model.parameters())),
                  "macs": metrics.get("macs"), "seed": _seed(run.config)},
        "metrics": {**metrics, "train": train},
        "provenance": provenance(run, record),
        "selection": selection,
        "files": {}, "checks": {},
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {"mnas": __version__, "torch": torch.__version__},
    }


@dataclass
class ExportResult:
    """What :func:`export_trial` wrote: the folder, the card, file sizes in bytes."""

    path: Path
    card: dict[str, Any]
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def onnx_max_abs_diff(self) -> float | None:
        """ONNX Runtime vs PyTorch, or None when ONNX was not exported."""
        return (self.card["checks"].get("onnx") or {}).get("max_abs_diff")


def _check_out(out: Path, overwrite: bool, root: Path | None = None) -> None:
    """A new or empty folder, or (with ``overwrite``) one holding nothing but an earlier export.

    With ``root`` (the run folder, for the default ``RUN/export/trial-<id>``) neither ``export/``
    nor the folder itself may be a symbolic link; a folder the user named is theirs.
    """
    if root is not None:
        safe_dir(out.parent, root=root, create=False)
        check_no_link(out)
    check_writable_folder(out, "out")  # before any work: nothing fails half-way
    if out.exists() and not out.is_dir():
        raise UsageError(f"out={str(out)!r}: exists and is not a folder", params=("out",))
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise UsageError(f"out={str(out)!r}: exists; choose another folder or pass overwrite=True",
                         params=("out", "overwrite"))
    if not _is_export(out):
        raise UsageError(f"out={str(out)!r}: overwrite=True replaces only a folder holding an "
                         f"export card ({CARD} with format {CARD_FORMAT!r}); this one does not, "
                         "so nothing was deleted", params=("out", "overwrite"))


def _is_export(folder: Path) -> bool:
    """Whether ``folder`` holds an export card and only files an export writes."""
    try:
        card = read_json(folder / CARD, "card")
    except (OSError, UsageError):
        return False
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        return False
    ours = {CARD, *[str(f) for f in (card.get("files") or {}).values()]}
    return all(p.is_file() and p.name in ours for p in folder.iterdir())


def _commit(tmp: Path, out: Path) -> None:
    """Swap ``tmp`` in as ``out``; an earlier ``out`` goes to a fresh unique name, then away."""
    old = None
    if os.path.lexists(out):
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:12]}")
        os.replace(out, old)  # moves a link itself (a folder the user linked), never its target
    os.replace(tmp, out)
    if old is not None and old.is_symlink():
        old.unlink()
    elif old is not None:
        shutil.rmtree(old, ignore_errors=True)  # rmtree removes links inside, never follows


def _write_artifacts(folder: Path, model: nn.Module, input_shape: Sequence[int],
                     formats: Sequence[str], card: dict[str, Any], opset: int) -> None:
    if "pt2" in formats:
        card["checks"]["pt2"] = write_pt2(model, input_shape, folder / "model.pt2")
        card["files"]["pt2"] = "model.pt2"
    if "onnx" in formats:
        card["checks"]["onnx"] = write_onnx(model, input_shape, folder / "model.onnx", opset)
        card["files"]["onnx"] = "model.onnx"
        if not card["checks"]["onnx"]["ok"]:
            log.warning("ONNX Runtime differs from PyTorch by %.3g",
                        card["checks"]["onnx"]["max_abs_diff"])
    if "weights" in formats:
        info = write_weights(model, folder)
        card["weights"] = {**card.get("weights", {}), **info}
        card["files"]["weights"] = info["file"]
        card["checks"]["reference"] = reference_output(model, input_shape)


def export_trial(run: Any, *, rank: int | None = None, trial_id: int | None = None,
                 formats: str | Sequence[str] | None = None, out: str | Path | None = None,
                 train_epochs: int | None = None, reward: RewardConfig | None = None,
                 opset: int = 17, overwrite: bool = False,
                 from_scratch: bool = False) -> ExportResult:
    """Export one trial of ``run`` (a :class:`nas.run.Run`) as an architecture card folder.

    Args:
        run: the loaded run.
        rank / trial_id: which trial (default: rank 1 under ``reward``).
        formats: subset of ``json,pt2,onnx,weights`` (default: all; onnx where installed).
        out: the folder to create (default ``<run>/export/trial-<id>``).
        train_epochs: train the child this many epochs first (the weights are then trained ones),
            from the search's kept weights or a supernet's inherited ones where there are some.
        from_scratch: with ``train_epochs``, train from a fresh (seeded) initialisation instead.
        reward: ranking settings (default: the run's own); ``opset``: ONNX opset.
        overwrite: replace ``out`` if it holds an earlier export (nothing else is replaced).

    Raises ``UsageError`` (bad selection, format, folder, training failure): nothing is written.
    """
    from nas.analysis.analyze import reward_settings

    wanted = parse_formats(formats)
    _check_epochs(train_epochs)
    if from_scratch and not train_epochs:
        raise UsageError("from_scratch=True: needs train_epochs (nothing to train otherwise)",
                         params=("from_scratch",))
    reward = reward if reward is not None else reward_settings(run.config)
    record, found_rank, value = select_trial(run, rank=rank, trial_id=trial_id, reward=reward)
    target = Path(out) if out is not None else run.path / "export" / f"trial-{record.trial_id}"
    root = None if out is not None else run.path  # RUN/export is the run's: links refused
    _check_out(target, overwrite, root)
    space, arch, model = _rebuild(run.config, record)
    selection = {"rank": found_rank, "reward": value,
                 "reward_settings": None if reward is None else reward.to_dict()}
    card = _card(run, record, space, arch, model, selection)
    card["weights"] = load_card_weights(run, record, model, train_epochs, from_scratch)
    model.eval()
    card = _write_folder(target, model, space.input_shape(), wanted, card, opset, root)
    sizes = {p.name: p.stat().st_size for p in sorted(target.iterdir()) if p.is_file()}
    log.info("exported trial %s to %s", record.trial_id, target)
    return ExportResult(path=target, card=card, sizes=sizes)


def _write_folder(target: Path, model: nn.Module, input_shape: Sequence[int],
                  formats: Sequence[str], card: dict[str, Any], opset: int,
                  root: Path | None = None) -> dict[str, Any]:
    """Write every file into a temp folder beside ``target``, then swap it in (all or nothing).

    ``target``'s parent is made below ``root`` without links (see :func:`_check_out`), or as the
    user named it; the temp folder is new (a unique name made with ``mkdir``, which never
    follows a link), and each file in it is written atomically without following links.
    """
    if root is not None:
        safe_dir(target.parent, root=root)
    else:
        user_dir(target.parent, "out", params=("out",))
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:12]}")
    tmp.mkdir()  # fails on anything already there; the umask applies (unlike mkdtemp's 0700)
    try:
        _write_artifacts(tmp, model, input_shape, formats, card, opset)
        card = clean_json(card)  # NaN -> null, tuples -> lists: the card is plain JSON data
        text = json.dumps(card, indent=2, allow_nan=False)
        write_atomic(tmp / CARD, text + "\n")
        _commit(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return card


def _rebuild(config: Mapping[str, Any], record: Any) -> tuple[Any, Any, nn.Module]:
    """The run's space, the record's architecture and its network, seeded as the run was."""
    from nas.registry import get_space

    name, options = card_space(config)
    space = get_space(name, **options)
    arch = space.validate(record.arch)
    torch.manual_seed(_seed(config))
    return space, arch, space.build(arch)


def _check_epochs(train_epochs: Any) -> None:
    check_int("train_epochs", train_epochs, optional=True)
