"""Architecture cards on a crafted MnasNet run (no Ray): card, pt2, ONNX, weights, rebuild."""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pytest
import torch

import nas
from nas.errors import UsageError
from nas.export.card import export_trial, parse_formats
from nas.export.formats import seeded_input
from nas.export.rebuild import build_from_card, load_card, verify_card
from nas.results import RunDir

SPACE = {"name": "mnasnet",
         "options": {"input_size": 8, "in_channels": 1, "num_classes": 10, "width_mult": 0.5,
                     "stem_channels": 8, "head_channels": 32, "skeleton": [[16, 1, 1], [24, 1, 2]],
                     "activation": "relu", "dropout": 0.0}}
CONFIG = {"space": SPACE, "controller": {"name": "random", "options": {}},
          "evaluator": {"dataset": "digits", "epochs": 3, "batch_size": 64, "lr": 0.05},
          "latency": {"device": "cpu", "threads": 1},
          "reward": {"preset": "hard", "target": 1.0}, "search": {"trials": 4}}
BLOCK = re.compile(r"^(ir_r\d+_k[35]_s[12]_e[36]|ds_r\d+_k[35]_s[12]|cn_r\d+_k[35]_s[12])"
                   r"_c\d+(_se0\.25)?(_noskip)?$")
FINGERPRINT = {"device": "cpu", "cpu": "test cpu", "threads": 1, "torch": torch.__version__,
               "runtime": "torch", "key": "abc123"}


def make_run(root, name="mnas"):
    space = nas.get_space(SPACE["name"], **SPACE["options"])
    rng = np.random.default_rng(0)
    run = RunDir.create(root, name, CONFIG)
    for tid, (status, acc) in enumerate([("complete", 0.9), ("complete", 0.8),
                                         ("failed", None), ("complete", 0.7)]):
        arch = space.sample(rng)
        metrics = {} if status == "failed" else {
            "accuracy": acc, "latency_ms": 0.5, "latency_p10_ms": 0.45, "latency_p90_ms": 0.6,
            "latency_spread": 0.3, "latency_n": 30, "params": 1000, "macs": 20000,
            "dataset": "digits", "train": {"epochs": 3, "val_accuracy": acc, "history": [{}]}}
        run.append_trial({"trial_id": tid, "tune_trial_id": f"t{tid}", "arch_key": arch.key,
                          "arch": dict(arch.items()), "status": status,
                          "error": "RuntimeError: boom" if status == "failed" else None,
                          "metrics": metrics, "reward": acc, "timings": {"train_s": 1.0},
                          "device": FINGERPRINT, "node": {"hostname": "h"}, "step": tid + 1})
    return nas.load_run(run.path)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    """One full export (pt2, onnx where installed, weights) shared by the card tests."""
    out = tmp_path_factory.mktemp("exports") / "best"
    return export_trial(run, rank=1, out=out)


def test_card_contents(run, exported):
    card = json.loads((exported.path / "arch.json").read_text())
    space = nas.get_space("mnasnet", **SPACE["options"])
    arch = space.validate(card["decisions"])
    assert card["format"] == "mnas-card/1" and card["arch_key"] == arch.key
    assert card["arch_key"] == run.records[0].arch_key  # rank 1: accuracy 0.9, reward 0.9
    assert card["space"] == {"name": "mnasnet", "options": space.options}
    assert card["selection"]["rank"] == 1 and card["selection"]["reward"] == pytest.approx(0.9)
    strings = card["structure"]["block_strings"]
    assert len(strings) == 2 and all(BLOCK.match(s) for s in strings), strings
    assert card["structure"]["block_table"][1]["stride"] == 2
    assert card["input_shape"] == [1, 8, 8]
    assert card["model"]["params"] == sum(p.numel() for p in space.build(arch).parameters())
    assert card["metrics"]["accuracy"] == 0.9 and "history" not in card["metrics"]["train"]
    prov = card["provenance"]
    assert prov["device"] == FINGERPRINT and prov["dataset"] == "digits" and prov["epochs"] == 3
    assert prov["latency"]["spread"] == 0.3 and prov["latency"]["p90_ms"] == 0.6
    assert prov["trial_id"] == 0 and prov["run"] == "mnas"


def test_pt2_archive_and_check(exported):
    check = exported.card["checks"]["pt2"]
    assert check["dynamic_batch"] is True and check["max_abs_diff"] < 1e-5
    with zipfile.ZipFile(exported.path / "model.pt2") as archive:  # read the listing only
        assert any(name.endswith(".json") for name in archive.namelist())
    assert exported.sizes["model.pt2"] > 1000


def test_onnx_matches_pytorch_in_onnxruntime(exported):
    if "onnx" not in exported.card["files"]:
        pytest.skip("the onnx extra (onnx, onnxruntime) is not installed")
    onnx = exported.card["checks"]["onnx"]
    assert onnx["ok"] and onnx["max_abs_diff"] < 1e-4 and onnx["input_shape"] == [1, 1, 8, 8]
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported.path / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    x = seeded_input((1, 1, 8, 8), seed=5)
    ours = session.run(None, {"input": x.numpy()})[0]
    with torch.inference_mode():
        ref = build_from_card(exported.path)(x).numpy()
    assert np.abs(ours - ref).max() < 1e-4


def test_build_from_card_same_params_and_outputs(exported):
    card = exported.card
    model = nas.build_from_card(str(exported.path / "arch.json"))
    assert sum(p.numel() for p in model.parameters()) == card["model"]["params"]
    check = verify_card(exported.path)
    assert check["params_match"] and check["outputs_match"] and check["reference_max_abs_diff"] == 0
    # a model built without the weights, then given the same weights, gives the same outputs
    bare = build_from_card(exported.path, weights=False)
    bare.load_state_dict(model.state_dict())
    x = seeded_input((3, 1, 8, 8), seed=9)
    with torch.inference_mode():
        assert torch.equal(bare(x), model(x))


def test_card_is_an_arch_file_for_the_cli(exported):
    from nas.cli._common import load_arch_file

    space, arch = load_arch_file(exported.path / "arch.json")
    assert arch.key == exported.card["arch_key"] and space.options["input_size"] == 8


def test_select_by_trial_and_new_target(run, tmp_path):
    result = export_trial(run, trial_id=3, formats="json", out=tmp_path / "t3")
    assert result.card["selection"]["rank"] == 3 and set(result.sizes) == {"arch.json"}
    # at T = 0.25 ms every trial is over the target: reward = acc * 0.25 / 0.5, same order
    reward = run.reward(0.25)
    result = export_trial(run, rank=2, formats="json", out=tmp_path / "r2", reward=reward)
    assert result.card["provenance"]["trial_id"] == 1
    assert result.card["selection"]["reward"] == pytest.approx(0.4)


def test_weights_without_safetensors_are_a_weights_only_state_dict(run, tmp_path, monkeypatch):
    import nas.export.formats as formats

    monkeypatch.setattr(formats, "safetensors_available", lambda: False)
    result = export_trial(run, rank=1, formats="weights", out=tmp_path / "w")
    assert result.card["files"]["weights"] == "model_weights.pt"
    state = torch.load(result.path / "model_weights.pt", weights_only=True)
    model = build_from_card(result.path)
    assert set(state) == set(model.state_dict())
    assert verify_card(result.path)["outputs_match"]


def test_train_epochs_trains_before_export(run, tmp_path):
    result = export_trial(run, rank=1, formats="json,weights", out=tmp_path / "trained",
                          train_epochs=1)
    weights = result.card["weights"]
    assert weights["trained"] and weights["fine_tuned_epochs"] == 1 and weights["epochs"] == 1
    assert weights["source"] == "export" and weights["train"]["epochs"] == 1
    assert 0.0 <= weights["train"]["val_accuracy"] <= 1.0
    trained = build_from_card(result.path)
    fresh = build_from_card(result.path, weights=False)  # the seeded initial weights
    changed = [k for k, v in trained.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, fresh.state_dict()[k])]
    assert changed and verify_card(result.path)["outputs_match"]


def test_train_epochs_fine_tunes_kept_weights_or_starts_from_scratch(tmp_path, monkeypatch):
    """Fine-tuning starts from the search's kept weights; ``from_scratch`` from the seeded
    fresh initialisation (the training itself is replaced: only its starting point is asked)."""
    from safetensors.torch import save_file

    import nas.export.provenance as provenance

    loaded = make_run(tmp_path / "runs")
    fresh = export_trial(loaded, trial_id=0, formats="json", out=tmp_path / "fresh").card
    model = build_from_card(tmp_path / "fresh", weights=False)
    kept = {k: (v + 0.5 if v.is_floating_point() else v).contiguous()
            for k, v in model.state_dict().items()}
    path = loaded.dir.weights_path(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(kept, str(path))
    starts = []

    def fake_train(net, config, epochs):
        starts.append({k: v.clone() for k, v in net.state_dict().items()})
        return {"val_accuracy": 0.5, "epochs": epochs}

    monkeypatch.setattr(provenance, "train_for_export", fake_train)
    tuned = export_trial(loaded, trial_id=0, formats="json", out=tmp_path / "tuned",
                         train_epochs=2).card["weights"]
    scratch = export_trial(loaded, trial_id=0, formats="json", out=tmp_path / "scratch",
                           train_epochs=2, from_scratch=True).card["weights"]
    assert all(torch.equal(starts[0][k], kept[k]) for k in kept)
    assert all(torch.equal(starts[1][k], v) for k, v in model.state_dict().items())
    assert tuned["source"] == "search+export" and tuned["epochs"] == 5  # 3 in the search
    assert scratch == {"trained": True, "epochs": 2, "trial": 0, "source": "export",
                       "from_scratch": True, "train": {"val_accuracy": 0.5, "epochs": 2}}
    assert fresh["weights"]["trained"] is False
    with pytest.raises(UsageError, match="from_scratch=True: needs train_epochs"):
        export_trial(loaded, trial_id=0, out=tmp_path / "never", from_scratch=True)
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"rank": 4}, "rank=4: the run has only 3 complete architectures"),
    ({"rank": 0}, "rank=0: must be an integer >= 1"),
    ({"trial_id": 42}, "trial_id=42: no such trial"),
    ({"trial_id": 2}, "trial_id=2: the trial is failed"),
    ({"rank": 1, "trial_id": 0}, "not both"),
    ({"formats": "json,tflite"}, "formats: unknown format 'tflite'"),
    ({"train_epochs": 0}, "train_epochs=0"),
])
def test_bad_selection_writes_nothing(run, tmp_path, kwargs, match):
    with pytest.raises(UsageError, match=re.escape(match)):
        export_trial(run, out=tmp_path / "out", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_and_failures_leave_nothing_half_written(run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    export_trial(run, formats="json", out=out)
    with pytest.raises(UsageError, match="exists; choose another folder or pass overwrite=True"):
        export_trial(run, formats="json", out=out)
    import nas.export.card as export_mod

    def broken(*args, **kwargs):
        raise UsageError("--format pt2: torch.export failed: on purpose")

    monkeypatch.setattr(export_mod, "write_pt2", broken)
    with pytest.raises(UsageError, match="on purpose"):
        export_trial(run, formats="json,pt2", out=out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folders
    assert sorted(p.name for p in out.iterdir()) == ["arch.json"]  # the old export is intact
    monkeypatch.undo()
    result = export_trial(run, formats="json,weights", out=out, overwrite=True)
    weights = result.card["files"]["weights"]  # model.safetensors, or model_weights.pt without it
    assert sorted(p.name for p in out.iterdir()) == sorted(["arch.json", weights])


def test_onnx_format_without_the_extra(monkeypatch):
    import nas.export.card as export_mod

    monkeypatch.setattr(export_mod, "onnx_available", lambda: False)
    with pytest.raises(UsageError, match=re.escape("pip install 'mnas[onnx]'")):
        parse_formats("json,onnx")
    assert parse_formats(None) == ("json", "pt2", "weights")
    monkeypatch.undo()
    assert parse_formats("weights") == ("json", "weights")


def test_bad_cards(exported, tmp_path):
    card, _ = load_card(exported.path)
    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "arch.json").write_text(json.dumps({**card, "arch_key": "0" * 16}))
    with pytest.raises(UsageError, match="does not match its decisions"):
        build_from_card(edited)
    (edited / "arch.json").write_text(json.dumps(card))  # lists weights that are not there
    with pytest.raises(UsageError, match="no such file"):
        build_from_card(edited)
    assert build_from_card(edited, weights=False) is not None
    bad = {**card, "decisions": {**card["decisions"], "b1.kernel": 7}}
    (edited / "arch.json").write_text(json.dumps(bad))
    with pytest.raises(UsageError, match="b1.kernel: value 7 is not allowed"):
        build_from_card(edited)
    (edited / "arch.json").write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        build_from_card(edited)
    with pytest.raises(UsageError, match="no such file"):
        build_from_card(tmp_path / "missing.json")


def test_run_api_export_and_report_blocks(run, tmp_path):
    from nas.analysis.report import chosen_blocks

    result = run.export(2, target_ms=0.25, formats="json", out=tmp_path / "api")
    assert result.card["provenance"]["trial_id"] == 1 and result.sizes["arch.json"] > 0
    blocks = chosen_blocks(run.analyze(k=2))
    space = nas.get_space("mnasnet", **SPACE["options"])
    best = space.validate(run.records[0].arch)
    assert blocks == " ".join(space.describe(best)["block_strings"])


def test_untrained_export_says_so(run, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="nas.export.card"):
        result = export_trial(run, rank=1, formats="json", out=tmp_path / "raw")
    assert result.card["weights"] == {"trained": False}
    assert "UNTRAINED" in caplog.text


def test_export_loads_the_searchs_kept_weights(tmp_path):
    from nas.runner.weights import serialize_weights

    run = make_run(tmp_path)
    record = run.records[0]
    space = nas.get_space(SPACE["name"], **SPACE["options"])
    trained = space.build(space.validate(record.arch))
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.5)  # unlike any seeded initialisation
    path = run.dir.weights_path(record.trial_id)
    path.parent.mkdir(parents=True)
    path.write_bytes(serialize_weights(trained, {"trial": "0", "epochs": "3"}))
    result = export_trial(run, trial_id=record.trial_id, formats="json,weights",
                          out=tmp_path / "kept")
    assert {k: result.card["weights"][k] for k in ("trained", "epochs", "trial", "source")} == {
        "trained": True, "epochs": 3, "trial": 0, "source": "search"}
    rebuilt = build_from_card(result.path)
    x = seeded_input((2, *space.input_shape()))
    assert torch.equal(rebuilt(x), trained.eval()(x))
