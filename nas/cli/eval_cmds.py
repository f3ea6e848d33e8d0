"""``nas latency`` and ``nas evaluate``.

While ``nas evaluate`` trains, one line per epoch goes to stderr (epoch, mean training loss,
validation accuracy, seconds); the result goes to stdout (a table, or JSON with ``--json``).
Then a warning line on stderr for each of:

- a latency spread ``(p90 - p10) / median`` above :data:`SPREAD_WARNING` (25%): the timing was
  disturbed (also printed by ``nas latency``);
- a child at chance: validation accuracy <= 1/num_classes + 2 standard errors of a guess on the
  validation split (``2 * sqrt(p * (1 - p) / n_val)``, p = 1/num_classes; 0.035 for the digits'
  288 validation images): it learned nothing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nas.cli._common import add_model_args, load_arch_file, print_json, print_table, space_from_args
from nas.errors import ConfigError, UsageError
from nas.records import TrialStatus, chance_bound

__all__ = ["register", "SPREAD_WARNING", "warnings_for"]

SPREAD_WARNING = 0.25  # latency (p90 - p10) / median above this gets a warning

# settings key -> CLI flag, so errors name the argument the user typed
_LATENCY_FLAGS = {"device": "--device", "threads": "--threads", "batch_size": "--batch-size",
                  "warmup": "--warmup", "repeats": "--repeats", "rounds": "--rounds",
                  "runtime": "--runtime"}
_TRAIN_FLAGS = {"epochs": "--epochs", "batch_size": "--batch-size", "optimizer": "--optimizer",
                "lr": "--lr", "momentum": "--momentum", "weight_decay": "--weight-decay",
                "schedule": "--schedule", "warmup_epochs": "--warmup-epochs",
                "label_smoothing": "--label-smoothing", "time_budget_s": "--time-budget",
                "device": "--device", "threads": "--threads", "seed": "--seed"}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``latency`` and ``evaluate``."""
    p = sub.add_parser("latency", help="measure the inference latency of a preset or architecture")
    add_model_args(p)
    _add_latency_flags(p, prefix="")
    p.add_argument("--json", action="store_true",
                   help="print JSON (median_ms, p10_ms, p90_ms, n, device, ...)")
    p.set_defaults(func=cmd_latency)

    p = sub.add_parser("evaluate", help="one trial end to end: cost, latency, training, reward",
                       epilog="Per-epoch lines and warnings (latency spread > 25%, accuracy at "
                              "chance) go to stderr.")
    add_model_args(p)
    _add_data_flags(p)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", default="sgd", help="sgd | rmsprop | adamw")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=4e-5)
    p.add_argument("--schedule", default="cosine", help="cosine | step | constant")
    p.add_argument("--warmup-epochs", type=float, default=0.0)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--time-budget", type=float, help="training wall-time budget in seconds")
    p.add_argument("--device", default="cpu", help="training device: cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, help="training threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and batch order")
    _add_latency_flags(p, prefix="latency-")
    p.add_argument("--latency-input-size", type=int,
                   help="measure latency at this input size (default: the dataset's), e.g. 224")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--reward-target", type=float, help="target T of the MnasNet reward")
    p.add_argument("--reward-preset", default="soft", help="soft | hard")
    p.add_argument("--reward-metric", default="latency", help="latency | macs | params")
    p.add_argument("--evaluator", default="default", help="registered name or module:function")
    p.add_argument("--json", action="store_true", help="print the raw metrics as JSON")
    p.set_defaults(func=cmd_evaluate)


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits",
                   help="digits | cifar10 | npz:PATH | folder:PATH | torchvision:NAME")
    p.add_argument("--val-fraction", type=float, default=0.2, help="held-out share of train data")
    p.add_argument("--max-train", type=int, help="keep at most this many training samples")
    p.add_argument("--data-root", help="CIFAR-10 / torchvision folder (default $MNAS_DATA_DIR or "
                   "~/.cache/mnas)")
    p.add_argument("--download", action="store_true",
                   help="download CIFAR-10 (or a torchvision dataset) if missing")


def _add_latency_flags(p: argparse.ArgumentParser, prefix: str) -> None:
    p.add_argument(f"--{prefix}device", default="cpu", help="target device: cpu | cuda | cuda:N")
    p.add_argument(f"--{prefix}threads", type=int, default=1, help="inference threads")
    p.add_argument(f"--{prefix}batch-size", type=int, default=1, help="images per forward pass")
    p.add_argument(f"--{prefix}warmup", type=int, default=10, help="untimed warm-up runs")
    p.add_argument(f"--{prefix}repeats", type=int, default=50, help="timed runs in total")
    p.add_argument(f"--{prefix}rounds", type=int, default=5, help="rounds the runs are split in")
    p.add_argument(f"--{prefix}runtime", default="torch", help="torch | onnxruntime")


def _flag_error(exc: ConfigError, flags: dict[str, str]) -> UsageError:
    """Rewrite ``section.key=value: ...`` as ``--flag value: ...``."""
    text = str(exc)
    head, sep, rest = text.partition("=")
    key = head.rpartition(".")[2]
    if sep and key in flags:
        return UsageError(f"{flags[key]} {rest}")
    return UsageError(text)


def _latency_config(args: argparse.Namespace, prefix: str) -> Any:
    from nas.latency.measure import LatencyConfig

    flags = {k: f"--{prefix}{v[2:]}" for k, v in _LATENCY_FLAGS.items()}
    attr = prefix.replace("-", "_")
    values = {k: getattr(args, attr + k) for k in _LATENCY_FLAGS}
    if prefix:  # nas evaluate: latency may be measured at the deployment resolution
        values["input_size"] = args.latency_input_size
        flags["input_size"] = "--latency-input-size"
    try:
        return LatencyConfig(**values)
    except ConfigError as exc:
        raise _flag_error(exc, flags) from None


def cmd_latency(args: argparse.Namespace) -> int:
    """Measure and print the latency of ``--preset`` or ``--arch``."""
    from nas.cli._common import model_from_args
    from nas.latency.measure import measure_latency

    config = _latency_config(args, "")
    space, model, what, _ = model_from_args(args)
    result = measure_latency(model, space.input_shape(), config)
    if args.json:
        print_json({**result.to_dict(), "space": space.name, "subject": what,
                    "input_shape": list(space.input_shape())})
    else:
        _print_latency(result, space, what)
    _warn(warnings_for({"latency_spread": result.spread, "latency_p10_ms": result.p10_ms,
                        "latency_p90_ms": result.p90_ms, "latency_ms": result.median_ms}))
    return 0


def _print_latency(result: Any, space: Any, what: str) -> None:
    fp = result.device
    hw = fp["gpu"] or fp["cpu"]
    print_table(
        f"latency of {space.name} {what}, input {tuple(space.input_shape())}, batch "
        f"{result.batch_size}, {fp['runtime']} on {fp['device']} ({hw}, {fp['threads']} threads)",
        ["median ms", "p10 ms", "p90 ms", "spread", "n", "rejected"],
        [[f"{result.median_ms:.3f}", f"{result.p10_ms:.3f}", f"{result.p90_ms:.3f}",
          f"{result.spread:.1%}", result.n, result.rejected]],
    )


def _settings(args: argparse.Namespace) -> Any:
    from nas.evaluation.evaluate import EvalSettings
    from nas.evaluation.train import TrainConfig
    from nas.reward import RewardConfig

    try:
        train = TrainConfig(**{k: getattr(args, {"time_budget_s": "time_budget"}.get(k, k))
                               for k in _TRAIN_FLAGS})
    except ConfigError as exc:
        raise _flag_error(exc, _TRAIN_FLAGS) from None
    latency = _latency_config(args, "latency-")
    if args.no_latency:
        latency = type(latency)(**{**latency.to_dict(), "mode": "skip"})
    reward = None
    if args.reward_target is not None:
        try:
            reward = RewardConfig.from_preset(args.reward_preset, args.reward_target,
                                              args.reward_metric)
        except ConfigError as exc:
            flags = {"preset": "--reward-preset", "target": "--reward-target",
                     "metric": "--reward-metric"}
            raise _flag_error(exc, flags) from None
    try:
        return EvalSettings(dataset=args.dataset, val_fraction=args.val_fraction,
                            max_train=args.max_train, data_root=args.data_root,
                            download=args.download, train=train, latency=latency, reward=reward,
                            evaluator=args.evaluator)
    except ConfigError as exc:
        raise _flag_error(exc, {"val_fraction": "--val-fraction",
                                "max_train": "--max-train"}) from None


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate ``--preset`` or ``--arch`` on ``--dataset``; exit 1 when the trial failed."""
    from nas.evaluation.evaluate import evaluate_arch, get_dataset

    settings = _settings(args)
    data = get_dataset(settings)
    c, h, _ = data.input_shape
    for key, value in (("in_channels", c), ("input_size", h), ("num_classes", data.num_classes)):
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    report = _epoch_printer(settings.train.epochs)
    if args.arch is not None:
        space, arch = load_arch_file(args.arch, args)
        record = evaluate_arch(space, arch, settings, dataset=data, report=report)
    else:
        space = space_from_args(args)
        record = evaluate_arch(space, None, settings, preset=args.preset, dataset=data,
                               report=report)
    if args.json:
        print_json(record)
    else:
        _print_record(record)
    _warn(warnings_for(record, data.num_classes, len(data.y_val)))
    return 0 if TrialStatus(record["status"]) is TrialStatus.COMPLETE else 1


def _epoch_printer(epochs: int) -> Any:
    """The ``report`` callback of :func:`evaluate_arch`: one line per epoch on stderr."""

    def report(m: dict[str, Any]) -> None:
        print(f"epoch {m.get('epoch', '?')}/{epochs}: train loss "
              f"{_fmt(m.get('train_loss'), '.4f')}, val accuracy "
              f"{_fmt(m.get('val_accuracy'), '.4f')}, {_fmt(m.get('epoch_s'), '.1f')} s",
              file=sys.stderr, flush=True)

    return report


def warnings_for(record: dict[str, Any], num_classes: int | None = None,
                 n_val: int = 0) -> list[str]:
    """Warning lines for a record: a latency spread over 25%, a completed child at chance."""
    out = []
    spread = record.get("latency_spread")
    if spread is not None and spread > SPREAD_WARNING:
        out.append(f"warning: latency spread {spread:.0%} > {SPREAD_WARNING:.0%} (p10 "
                   f"{record['latency_p10_ms']:.3f} ms, median {record['latency_ms']:.3f} ms, "
                   f"p90 {record['latency_p90_ms']:.3f} ms): the timing was disturbed, likely "
                   "by other processes; rerun on idle cores or with more repeats")
    accuracy, done = record.get("accuracy"), record.get("status", "complete") == "complete"
    bound = chance_bound(num_classes or 0, n_val)
    if done and accuracy is not None and bound is not None and accuracy <= bound:
        out.append(f"warning: accuracy {accuracy:.4f} is at chance (1/{num_classes} = "
                   f"{1.0 / num_classes:.4f}, + 2 standard errors on {n_val} validation images = "
                   f"{bound:.4f}): the child learned nothing; train longer or "
                   "check the learning rate and the data")
    return out


def _warn(lines: list[str]) -> None:
    for line in lines:
        print(line, file=sys.stderr, flush=True)


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _print_record(r: dict[str, Any]) -> None:
    what = f"preset {r['preset']}" if r["preset"] else f"arch {r['arch_key']}"
    rows = [["status", r["status"] + (f" ({r['error']})" if r["error"] else "")],
            ["accuracy (val)", _fmt(r.get("accuracy"), ".4f")],
            ["latency ms (median)", _fmt(r.get("latency_ms"), ".3f")],
            ["latency p10/p90 ms", f"{_fmt(r.get('latency_p10_ms'), '.3f')} / "
                                   f"{_fmt(r.get('latency_p90_ms'), '.3f')}"],
            ["params", _fmt(r.get("params"), ",")], ["MACs", _fmt(r.get("macs"), ",")]]
    if "reward" in r:
        rows.append(["reward", _fmt(r["reward"], ".4f")])
    rows.append(["timings s", ", ".join(f"{k[:-2]} {v:.2f}" for k, v in r["timings"].items())])
    print_table(f"{r['space']} {what} on {r['dataset']}", ["metric", "value"], rows)
