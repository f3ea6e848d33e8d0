"""A supernet's checkpoint folder: ``supernet.safetensors`` and ``supernet.json``.

``supernet.safetensors`` holds the model's state (``model.<name>``: parameters and BN buffers) and
the SGD momentum buffers (``optimizer.<parameter name>``), so a resumed run continues exactly as if
it had not stopped; its metadata ``mnas`` holds the same JSON as ``supernet.json``. Both files are
written to a unique temporary name (never through a link) and moved into place with
``os.replace``; the tensor file goes first and is the commit point: its metadata names the epochs
its weights have seen, and a JSON left one epoch behind by a kill between the two moves is
rewritten from it on resume. Nothing is ever unpickled: tensors are read with
:func:`safetensors.torch.load_file`.

``supernet.json`` (format ``mnas-supernet/1``): ``space`` (name and options), ``dataset`` (name,
shape, classes, sizes), ``options`` (:class:`~nas.supernet.options.SupernetOptions`, with
``supernet`` the space's own supernet options, defaults filled in), ``seed``, ``epochs``,
``epochs_done``, ``complete``, ``seconds`` (training time over every call) and ``history`` (per
epoch: ``epoch``, ``loss``, ``seconds``). Folders written before issue 23 hold MnasNet's
``kernel`` among the options; they read as ``supernet.kernel``. A checkpoint is refused, with one
line, by a space other than the one it records.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from nas._fs import read_json as read_json_file
from nas._fs import write_atomic
from nas.errors import ConfigError, UsageError
from nas.space import Space
from nas.supernet.base import make_supernet
from nas.supernet.options import TRAINING_KEYS, SupernetOptions

__all__ = ["FORMAT", "MODEL_FILE", "INFO_FILE", "save_checkpoint", "write_info", "read_json",
           "read_info", "check_info", "load_tensors", "load_supernet", "dataset_summary",
           "stored_options"]

FORMAT = "mnas-supernet/1"
MODEL_FILE = "supernet.safetensors"
INFO_FILE = "supernet.json"


def dataset_summary(dataset: Any) -> dict[str, Any]:
    """What identifies a dataset in a checkpoint (name, shape, classes, split sizes)."""
    s = dataset.summary()
    return {k: s.get(k) for k in ("name", "input_shape", "num_classes", "train", "val")}


def _plain(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples become lists)."""
    return json.loads(json.dumps(value))


def write_info(folder: Path, info: dict[str, Any]) -> None:
    """``supernet.json``, atomically."""
    write_atomic(folder / INFO_FILE, json.dumps(info, indent=2, allow_nan=False) + "\n")


def save_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    info: dict[str, Any]) -> None:
    """The tensor file (model and momentum buffers, ``info`` as metadata), then the JSON."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous()
               for k, v in model.state_dict().items()}
    if optimizer is not None:
        for name, p in model.named_parameters():
            buf = optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                tensors[f"optimizer.{name}"] = buf.detach().cpu().contiguous()
    data = save(tensors, metadata={"mnas": json.dumps(info, allow_nan=False)})
    write_atomic(folder / MODEL_FILE, data)
    write_info(folder, info)


def _tensor_info(path: Path) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return json.loads(meta["mnas"])
    except Exception as exc:  # safetensors raises its own SafetensorError; a missing key
        raise ConfigError(f"supernet checkpoint {str(path)!r}: not a readable mnas supernet "
                          f"file ({type(exc).__name__}: {exc})") from None


def read_json(folder: Path) -> dict[str, Any] | None:
    """``supernet.json`` of ``folder`` (None when there is none)."""
    path = folder / INFO_FILE
    try:
        info = read_json_file(path, "supernet checkpoint")
    except FileNotFoundError:
        return None
    except UsageError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(info, dict):
        raise ConfigError(f"supernet checkpoint {str(path)!r}: expected a JSON object")
    return info


def read_info(folder: Path) -> dict[str, Any] | None:
    """The checkpoint's info: the tensor file's (the commit point) when there is one, else the
    JSON's (a run that has not finished an epoch), else None (an empty folder)."""
    if (folder / MODEL_FILE).is_file():
        return _tensor_info(folder / MODEL_FILE)
    return read_json(folder)


def stored_options(info: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's training options as plain data, a legacy top-level ``kernel`` moved into
    ``supernet`` (left as stored when they do not parse: the comparison then names them)."""
    options = info.get("options") or {}
    try:
        return _plain(SupernetOptions.from_dict(options).to_dict())
    except ConfigError:
        return dict(options)


def _flat(options: dict[str, Any]) -> dict[str, Any]:
    """The options that change the weights (:data:`~nas.supernet.options.TRAINING_KEYS`; device,
    threads, calibration and scoring may change), ``supernet`` spelt out as ``supernet.<key>``
    (what differs is named key by key)."""
    out = {k: v for k, v in options.items() if k in TRAINING_KEYS and k != "supernet"}
    nested = options.get("supernet")
    if isinstance(nested, dict):
        out.update({f"supernet.{k}": v for k, v in nested.items()})
    elif "supernet" in options:
        out["supernet"] = nested
    return out


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for section, label in (("space", "space"), ("dataset", "dataset"), ("options", "option")):
        a, b = old.get(section) or {}, _plain(new[section])
        if section == "space" and a.get("name") != b.get("name"):
            out.append(f"space {a.get('name')!r} (asked: {b.get('name')!r})")
            continue
        if section == "space":
            a, b, label = a.get("options") or {}, b["options"], "space option"
        if section == "options":
            a, b = _flat(stored_options(old)), _flat(b)
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out.append(f"{label} {key}={a.get(key)!r} (asked: {b.get(key)!r})")
    return out


def check_info(folder: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    """ConfigError naming what differs when ``folder`` holds another supernet than ``new``."""
    if old.get("format") != FORMAT:
        raise ConfigError(f"supernet checkpoint {str(folder)!r}: format {old.get('format')!r}, "
                          f"expected {FORMAT!r}")
    diffs = _differences(old, new)
    if diffs:
        raise ConfigError(f"supernet checkpoint {str(folder)!r} holds another supernet: "
                          f"{'; '.join(diffs)}; use another folder")


def load_tensors(folder: Path, device: str | torch.device = "cpu"
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(model state, momentum buffers by parameter name)`` of the tensor file."""
    try:
        tensors = load_file(str(folder / MODEL_FILE), device=str(device))
    except Exception as exc:  # safetensors raises its own error types for a torn file
        raise ConfigError(f"supernet checkpoint {str(folder / MODEL_FILE)!r}: not a readable "
                          f"safetensors file ({type(exc).__name__}: {exc})") from None
    model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    optim = {k[10:]: v for k, v in tensors.items() if k.startswith("optimizer.")}
    return model, optim


def _space_of(folder: Path, info: dict[str, Any], space: Space | None) -> Space:
    """``space`` checked against the checkpoint's, or the checkpoint's registered space."""
    recorded = info.get("space") or {}
    name, options = recorded.get("name"), recorded.get("options") or {}
    if space is None:
        from nas.registry import SPACES

        if not isinstance(name, str) or ":" in name or name not in SPACES.names():
            raise ConfigError(f"supernet checkpoint {str(folder)!r}: space {name!r} is not a "
                              "registered space; pass the space (load_supernet(folder, space))")
        return SPACES.create(name, **options)
    mine = _plain(dict(space.options))
    differ = sorted(k for k in set(mine) | set(options) if mine.get(k) != options.get(k))
    if name != space.name or differ:
        detail = f"options that differ: {', '.join(differ)}" if name == space.name else \
            f"not {space.name!r}"
        raise ConfigError(f"supernet checkpoint {str(folder)!r}: a supernet of space {name!r} "
                          f"({detail})")
    return space


def load_supernet(checkpoint_dir: str | os.PathLike[str], space: Space | None = None, *,
                  device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained supernet of a checkpoint folder (eval mode) and its info.

    Args:
        checkpoint_dir: the folder (``supernet.safetensors`` and ``supernet.json``).
        space: the space it must be a supernet of (None: the registered space it records).
        device: where to load it.

    Raises:
        ConfigError: no checkpoint, an unreadable one, or one of another space than ``space``
            (one line naming both, or the space options that differ).
    """
    folder = Path(checkpoint_dir)
    if not (folder / MODEL_FILE).is_file():
        raise ConfigError(f"supernet checkpoint {str(folder)!r}: no {MODEL_FILE} (train one with "
                          "nas.supernet.train_supernet)")
    info = _tensor_info(folder / MODEL_FILE)
    space = _space_of(folder, info, space)
    options = SupernetOptions.from_dict(info.get("options", {}))
    with torch.random.fork_rng(devices=[]):  # the builder's initialisation is overwritten
        model = make_supernet(space, options.supernet)
    state, _ = load_tensors(folder, device)
    model.to(device).load_state_dict(state, strict=True)
    return model.eval(), info
