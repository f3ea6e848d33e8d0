"""``nas export`` (architecture card + runnable models of one trial) and ``nas build`` (back)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nas.cli._common import add_trust_arg, print_json
from nas.cli.analyze_cmds import add_reward_args, reward_from_args
from nas.errors import UsageError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export`` and ``build``."""
    p = sub.add_parser("export", help="write an architecture card (arch.json), model.pt2, "
                       "model.onnx and weights for one trial of a run")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder (results/<run>)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--rank", type=int, metavar="K", help="K-th best complete trial (1)")
    which.add_argument("--trial", dest="trial_id", type=int, metavar="ID", help="this trial id")
    p.add_argument("--format", dest="formats",
                   help="comma list of json,pt2,onnx,weights (default: all; onnx where "
                   "onnx/onnxruntime are installed); the card arch.json is always written")
    p.add_argument("--out", type=Path, help="folder to create (default RUN_DIR/export/trial-ID)")
    p.add_argument("--train-epochs", type=int, metavar="E",
                   help="train the child E epochs with the run's settings before exporting "
                   "(from its kept or inherited weights, if any)")
    p.add_argument("--from-scratch", action="store_true",
                   help="with --train-epochs: train from a fresh initialisation instead (e.g. a "
                   "supernet child retrained stand-alone)")
    add_reward_args(p)
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (17)")
    p.add_argument("--force", dest="overwrite", action="store_true",
                   help="replace an existing --out folder")
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    add_trust_arg(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("build", help="rebuild the model of an architecture card and check it")
    p.add_argument("card", type=Path, help="arch.json or the export folder")
    p.add_argument("--no-weights", action="store_true", help="do not load the card's weights")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_trust_arg(p)
    p.set_defaults(func=cmd_build)


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{format(value, spec)}{suffix}"


def _print_export(result: Any) -> None:
    card = result.card
    sel, metrics, prov = card["selection"], card["metrics"], card["provenance"]
    rank = f"rank {sel['rank']}" if sel["rank"] is not None else "unranked"
    print(f"exported trial {prov['trial_id']} ({rank}, reward {_fmt(sel['reward'], '.4f')}) of "
          f"{prov['run_dir']} to {result.path}")
    print(f"  arch {card['arch_key']} in space {card['space']['name']}")
    for text in card["structure"].get("block_strings", []):
        print(f"    {text}")
    print(f"  accuracy {_fmt(metrics.get('accuracy'), '.4f')}, params "
          f"{card['model']['params']:,}, MACs {_fmt(metrics.get('macs'), ',')}; dataset "
          f"{prov['dataset']}, epochs {prov['epochs']}")
    print(f"  latency {_latency_text(prov.get('latency') or {})}")
    _print_weights(card.get("weights") or {})
    checks = card["checks"]
    if "pt2" in checks:
        batch = "dynamic" if checks["pt2"]["dynamic_batch"] else "fixed"
        print(f"  model.pt2: torch.export ({batch} batch), max abs diff vs eager "
              f"{checks['pt2']['max_abs_diff']:.3g}")
    if "onnx" in checks:
        o = checks["onnx"]
        print(f"  model.onnx: ONNX Runtime {o['onnxruntime']} vs PyTorch on random input "
              f"{tuple(o['input_shape'])}: max abs diff {o['max_abs_diff']:.3g} "
              f"({'ok' if o['ok'] else 'MISMATCH'})")
    print("  files: " + ", ".join(f"{k} {_size(v)}" for k, v in result.sizes.items()))


def _latency_text(latency: dict[str, Any]) -> str:
    """The card's latency (``provenance.latency``): its median, whether it is the final
    (re-measured) or the search-time figure, and the p10/p90 of that same measurement (left out
    when it has none)."""
    median, p10, p90 = (latency.get(k) for k in ("median_ms", "p10_ms", "p90_ms"))
    if median is None:
        return "- (not measured)"
    spread = f"; p10 {p10:.3f}, p90 {p90:.3f}" if p10 is not None and p90 is not None else ""
    if latency.get("source") == "remeasured":
        search = latency.get("search_median_ms")
        was = f"; the search measured {search:.3f} ms" if search is not None else ""
        return f"{median:.3f} ms, final (re-measured after the search{spread}{was})"
    return f"{median:.3f} ms, search-time (measured during the search{spread})"


def _print_weights(weights: dict[str, Any]) -> None:
    if not weights.get("trained"):
        print("  WARNING: the exported weights are UNTRAINED (freshly initialised): the accuracy "
              "above is the search's, not theirs; keep the search's weights with "
              "search.keep_weights or train them with --train-epochs E", file=sys.stderr)
        return
    line = f"  weights: trained {weights.get('epochs')} epochs ({weights.get('source')})"
    if weights.get("train"):
        line += f", validation accuracy after export {weights['train']['val_accuracy']:.4f}"
    print(line)


def cmd_export(args: argparse.Namespace) -> int:
    """Export one trial of a run."""
    from nas.export.card import export_trial, parse_formats
    from nas.run import load_run

    formats = parse_formats(args.formats)  # fail fast on a bad --format
    if not args.run_dir.is_dir():
        raise UsageError(f"run folder {str(args.run_dir)!r}: no such folder")
    run = load_run(args.run_dir, trust_code=args.trust_code)
    if not run.records:
        raise UsageError(f"run folder {str(args.run_dir)!r}: no finished trials yet")
    if args.opset < 7:
        raise UsageError(f"--opset {args.opset}: must be >= 7")
    if args.from_scratch and not args.train_epochs:
        raise UsageError("--from-scratch: needs --train-epochs E (nothing to train otherwise)")
    with run.names():
        result = export_trial(run, rank=args.rank, trial_id=args.trial_id, formats=formats,
                              out=args.out, train_epochs=args.train_epochs,
                              from_scratch=args.from_scratch,
                              reward=reward_from_args(args, run.config), opset=args.opset,
                              overwrite=args.overwrite)
    if args.json:
        print_json(result.card)
    else:
        _print_export(result)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Rebuild a card's model; exit 1 if its parameters or reference outputs differ."""
    from nas.evaluation.cost import count_cost
    from nas.export.rebuild import build_from_card, load_card, verify_card

    card, folder = load_card(args.card)
    model = build_from_card(args.card, weights=not args.no_weights, trust_code=args.trust_code)
    check = verify_card(args.card, model, weights=not args.no_weights)
    shape = tuple(card.get("input_shape") or ())
    cost = count_cost(model, shape) if shape else None
    info = {"card": str(args.card), "space": card["space"]["name"],
            "arch_key": card.get("arch_key"),
            "weights": None if args.no_weights else (card.get("files") or {}).get("weights"),
            "macs": None if cost is None else int(cost.macs), **check}
    ok = check["params_match"] and check["outputs_match"] is not False
    if args.json:
        print_json({**info, "ok": ok})
        return 0 if ok else 1
    print(f"built {info['space']} arch {info['arch_key']} from {folder}")
    print(f"  params {check['params']:,} (card {_fmt(check['card_params'], ',')}: "
          f"{'match' if check['params_match'] else 'MISMATCH'}), MACs {_fmt(info['macs'], ',')}")
    if info["weights"]:
        diff = check["reference_max_abs_diff"]
        verdict = "no reference stored" if diff is None else \
            f"max abs diff {diff:.3g} ({'match' if check['outputs_match'] else 'MISMATCH'})"
        print(f"  weights {info['weights']} loaded; outputs vs the card's reference: {verdict}")
    else:
        print("  weights: none loaded (initial weights of the card's seed)")
    return 0 if ok else 1
