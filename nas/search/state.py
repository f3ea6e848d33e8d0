"""Saving and loading controller states: JSON plus a weights-only torch file for tensors.

Controllers never do I/O; the driver calls :func:`save_state` after every tell and
:func:`load_state` on resume. Tensors go to a separate file written by ``torch.save`` and read back
with ``torch.load(..., weights_only=True)``; nothing else is pickled.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas._fs import read_bytes, read_text, write_atomic
from nas.errors import UsageError

__all__ = ["save_state", "load_state", "FILE_FORMAT"]

FILE_FORMAT = "mnas.search.controller-file/1"
_FILE_FORMAT = FILE_FORMAT


def save_state(state: Mapping[str, Any] | Any, path: str | os.PathLike[str]) -> Path:
    """Write a controller state as JSON; tensors go to a sibling weights-only torch file.

    ``path`` (e.g. ``controller.json``) gets the JSON. Tensors, if any, are saved with
    ``torch.save`` to ``<stem>.<content hash>.pt`` next to it and referenced from the JSON, which
    is written last (to a unique temporary name, then renamed; never through a link): a crash at
    any point leaves the previous JSON and the tensor file it names intact. Tensor files no longer
    referenced are removed.

    Returns:
        The path of the JSON file.
    """
    if not isinstance(state, Mapping):  # a Controller
        state = state.state_dict()
    path = Path(path)
    tensors: dict[str, Any] = {}
    body = _split_tensors(state, tensors)
    tensor_name = None
    if tensors:
        import torch

        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        data = buffer.getvalue()
        tensor_name = f"{path.stem}.{hashlib.sha256(data).hexdigest()[:12]}.pt"
        write_atomic(path.with_name(tensor_name), data)
    doc = {"format": _FILE_FORMAT, "tensor_file": tensor_name, "state": body}
    write_atomic(path, json.dumps(doc, allow_nan=False))
    for old in path.parent.glob(f"{path.stem}.*.pt"):
        if old.name != tensor_name and re.fullmatch(r"[0-9a-f]{12}", old.suffixes[-2][1:]):
            old.unlink(missing_ok=True)  # removes a link itself, never what it points to
    return path


STATE_CAP = 1 << 30  # a controller state is kilobytes to megabytes (a predictor's weights)


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a :func:`save_state` file (tensors via ``torch.load(..., weights_only=True)``)."""
    path = Path(path)
    try:
        doc = json.loads(read_text(path, "controller state file", cap=STATE_CAP))
    except FileNotFoundError:
        raise UsageError(f"controller state file not found: {path}") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UsageError(f"controller state file {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != _FILE_FORMAT:
        raise UsageError(f"controller state file {path}: not a {_FILE_FORMAT!r} file")
    tensors: dict[str, Any] = {}
    if doc.get("tensor_file"):
        import torch

        name = str(doc["tensor_file"])
        if "/" in name or name in (".", ".."):
            raise UsageError(f"controller state file {path}: tensor_file {name!r:.60} must be a "
                             "file name beside it")
        tensor_path = path.with_name(name)
        try:
            tensors = torch.load(io.BytesIO(read_bytes(tensor_path, "controller tensor file",
                                                       cap=STATE_CAP)), weights_only=True)
        except Exception as exc:  # missing, torn or not weights-only: torch raises many kinds
            raise UsageError(f"controller tensor file {tensor_path}: cannot load ({exc})") from None
    return _join_tensors(doc["state"], tensors)


def _split_tensors(obj: Any, out: dict[str, Any]) -> Any:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        key = f"t{len(out)}"
        out[key] = obj.detach().cpu().clone()
        return {"__tensor__": key}
    if isinstance(obj, Mapping):
        return {k: _split_tensors(v, out) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_split_tensors(v, out) for v in obj]
    return obj


def _join_tensors(obj: Any, tensors: Mapping[str, Any]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            try:
                return tensors[obj["__tensor__"]]
            except KeyError:
                name = obj["__tensor__"]
                raise UsageError(f"controller state: tensor {name!r} is missing") from None
        return {k: _join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj
