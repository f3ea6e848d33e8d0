"""Experiment trackers (nas.runner.trackers), read back with TensorBoard's and MLflow's own readers:
interleaved children (one failed, one with epochs only in its history), a resume, missing
libraries, stores that cannot be opened, and trackers that fail mid-search. No Ray."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from importlib.util import find_spec

import pytest

from nas.config import LoggingSettings
from nas.errors import UsageError
from nas.records import TrialRecord, TrialStatus
from nas.runner.trackers import Trackers

# find_spec, not an import: MLflow decides about telemetry when imported, and Trackers.create
# has to be first to say no.
pytestmark = pytest.mark.skipif(not (find_spec("tensorboard") and find_spec("mlflow")),
                                reason="needs the test extra: pip install -e '.[test]'")

CONFIG = {"name": None, "search": {"trials": 3, "seed": 0},
          "space": {"name": "mnasnet", "options": {"skeleton": [[16, 1, 1]]}}}
ARCHS = {1: {"b1.op": "conv", "b1.kernel": 3, "b1.se": 0.25},
         2: {"b1.op": "mbconv6", "b1.kernel": 5, "b1.se": 0.0},
         3: {"b1.op": "sepconv", "b1.kernel": 5, "b1.se": 0.25}}
# (epoch, val_accuracy, train_loss, lr)
EPOCHS = {1: [(1, 0.5, 1.25, 0.1), (2, 0.625, 0.75, 0.05), (3, 0.75, 0.5, 0.01)],
          2: [(1, 0.125, 2.25, 0.1)],
          3: [(1, 0.25, 1.5, 0.1), (2, 0.375, 1.0, 0.05), (3, 0.5, 0.875, 0.01)]}


@pytest.fixture(autouse=True)
def _mlflow_env(monkeypatch):
    """What Trackers.create puts in the environment is undone after each test."""
    for name in ("MLFLOW_DISABLE_TELEMETRY", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(name, raising=False)


def settings(tmp_path, tensorboard=True, mlflow=True, experiment=None):
    store = {"tracking_uri": (tmp_path / "mlruns").as_uri(), "experiment": experiment}
    return LoggingSettings(tensorboard=tensorboard, mlflow=store if mlflow else None)


def epoch(trackers, trial_id, index):
    number, accuracy, loss, lr = EPOCHS[trial_id][index]
    trackers.on_epoch(trial_id, f"key{trial_id}", ARCHS[trial_id], number,
                      {"val_accuracy": accuracy, "train_loss": loss, "lr": lr, "epoch": number})


def record(trial_id, status=TrialStatus.COMPLETE, error=None):
    history = [{"epoch": e, "val_accuracy": a, "train_loss": t, "lr": r}
               for e, a, t, r in EPOCHS[trial_id]]
    accuracy = history[-1]["val_accuracy"]
    metrics = {"accuracy": accuracy, "latency_ms": 2.0 + trial_id, "params": 1000 * trial_id,
               "macs": 5000 * trial_id, "train": {"epochs": len(history), "history": history}}
    reward = accuracy * 0.9 if status is TrialStatus.COMPLETE else None
    return TrialRecord(trial_id, f"key{trial_id}", ARCHS[trial_id], status, error, metrics, reward)


def feed_search(trackers):
    """Three children interleaved as a search with concurrency 3 sends them: child 2 fails after
    one epoch, child 3's epochs 2-3 arrive only in its record's history, child 2's late epoch is
    ignored."""
    epoch(trackers, 1, 0)
    epoch(trackers, 2, 0)
    epoch(trackers, 1, 1)
    epoch(trackers, 3, 0)
    trackers.on_trial(record(2, TrialStatus.FAILED, "TrialFailed: loss is NaN at epoch 2"))
    trackers.on_epoch(2, "key2", ARCHS[2], 2, {"val_accuracy": 0.9})  # after its end: ignored
    epoch(trackers, 1, 2)
    trackers.on_trial(record(1))
    trackers.on_trial(record(3))


def tb_run(run, trial_id):
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(run / "tensorboard" / f"trial-{trial_id}"),
                              size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    return acc


def tb_scalars(acc, tag):
    return [(event.step, pytest.approx(event.value, rel=1e-6)) for event in acc.Scalars(tag)]


def tb_hparams(acc):
    from tensorboard.plugins.hparams import api_pb2, metadata

    content = acc.PluginTagToContent("hparams")
    start = metadata.parse_session_start_info_plugin_data(
        content[metadata.SESSION_START_INFO_TAG])
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    values = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
              for k, v in start.hparams.items()}
    return values, api_pb2.Status.Name(end.status)


def mlflow_runs(tmp_path, experiment):
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # undone by _mlflow_env
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id]) if found else []
    return client, {run.info.run_name: run for run in runs}


def history(client, run, key):
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


def expected_epochs(trial_id, column, upto=None):
    return [(row[0], row[column]) for row in EPOCHS[trial_id][:upto]]


def test_interleaved_children_reach_tensorboard_and_mlflow(tmp_path):
    run = tmp_path / "run-a"
    trackers = Trackers.create(settings(tmp_path), run, CONFIG)
    assert sorted(trackers.names) == ["mlflow", "tensorboard"]
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    feed_search(trackers)
    trackers.close()

    assert sorted(p.name for p in (run / "tensorboard").iterdir()) == [
        "trial-1", "trial-2", "trial-3"]
    one, two, three = (tb_run(run, i) for i in (1, 2, 3))
    assert tb_scalars(one, "epoch/val_accuracy") == expected_epochs(1, 1)
    assert tb_scalars(one, "epoch/train_loss") == expected_epochs(1, 2)
    assert tb_scalars(one, "epoch/lr") == expected_epochs(1, 3)
    assert tb_scalars(three, "epoch/val_accuracy") == expected_epochs(3, 1)  # 2-3 from history
    assert tb_scalars(two, "epoch/val_accuracy") == expected_epochs(2, 1)  # late epoch ignored
    finals = {t: tb_scalars(one, f"final/{t}")[0][1] for t in
              ("accuracy", "latency_ms", "reward", "params", "macs")}
    assert finals == {"accuracy": 0.75, "latency_ms": 3.0, "reward": 0.75 * 0.9,
                      "params": 1000, "macs": 5000}
    assert "final/reward" not in two.Tags()["scalars"]
    hparams, status = tb_hparams(one)
    assert status == "STATUS_SUCCESS" and tb_hparams(two)[1] == "STATUS_FAILURE"
    assert {k: hparams[k] for k in ("arch.b1.op", "arch.b1.kernel", "arch_key", "trial_id",
                                    "config.search.trials", "config.space.options.skeleton",
                                    "config.name")} == {
        "arch.b1.op": "conv", "arch.b1.kernel": 3, "arch_key": "key1", "trial_id": 1,
        "config.search.trials": 3, "config.space.options.skeleton": "[[16, 1, 1]]",
        "config.name": "null"}
    text = two.Tensors("status")[0].tensor_proto.string_val[0].decode()
    assert text.startswith("failed") and "loss is NaN at epoch 2" in text

    client, runs = mlflow_runs(tmp_path, "run-a")  # the experiment defaults to the run's name
    assert {n: r.info.status for n, r in runs.items()} == {
        "trial-1": "FINISHED", "trial-2": "FAILED", "trial-3": "FINISHED"}
    first, failed = runs["trial-1"], runs["trial-2"]
    assert {k: first.data.params[k] for k in ("arch.b1.op", "arch.b1.se", "arch_key",
                                              "trial_id", "config.search.trials")} == {
        "arch.b1.op": "conv", "arch.b1.se": "0.25", "arch_key": "key1", "trial_id": "1",
        "config.search.trials": "3"}
    assert history(client, first, "epoch/val_accuracy") == expected_epochs(1, 1)
    assert history(client, first, "epoch/lr") == expected_epochs(1, 3)
    assert history(client, runs["trial-3"], "epoch/train_loss") == expected_epochs(3, 2)
    assert history(client, failed, "epoch/val_accuracy") == expected_epochs(2, 1)
    assert {k: first.data.metrics[f"final/{k}"] for k in ("accuracy", "reward", "macs")} == {
        "accuracy": 0.75, "reward": pytest.approx(0.675), "macs": 5000}
    assert first.data.tags["status"] == "complete" and "error" not in first.data.tags
    assert failed.data.tags["status"] == "failed"
    assert failed.data.tags["error"] == "TrialFailed: loss is NaN at epoch 2"
    assert "final/reward" not in failed.data.metrics


def test_resumed_run_folder_reuses_its_children_mlflow_runs(tmp_path, caplog):
    run = tmp_path / "run-b"
    store = settings(tmp_path, tensorboard=False, experiment="shared")
    with Trackers.create(store, run, CONFIG) as first:
        epoch(first, 1, 0)
    client, runs = mlflow_runs(tmp_path, "shared")
    assert runs["trial-1"].info.status == "KILLED"  # the driver stopped with the child open

    resumed = {**CONFIG, "search": {"trials": 5, "seed": 0}}  # more trials on resume
    with caplog.at_level(logging.WARNING, logger="nas.runner.trackers"):
        with Trackers.create(store, run, resumed) as second:
            epoch(second, 1, 1)
            second.on_trial(record(1))
    assert caplog.records == []
    client, runs = mlflow_runs(tmp_path, "shared")
    assert list(runs) == ["trial-1"] and runs["trial-1"].info.status == "FINISHED"
    assert history(client, runs["trial-1"], "epoch/val_accuracy") == expected_epochs(1, 1)
    assert runs["trial-1"].data.params["config.search.trials"] == "3"  # params are immutable


@pytest.mark.parametrize("library, logging_settings, key, pip", [
    ("mlflow", {"mlflow": {"tracking_uri": "file:./mlruns"}}, "logging.mlflow", "mlflow-skinny"),
    ("tensorboard", {"tensorboard": True}, "logging.tensorboard", "tensorboard"),
])
def test_missing_library_is_a_one_line_usage_error(tmp_path, monkeypatch, library,
                                                   logging_settings, key, pip):
    for name in [m for m in sys.modules if m == library or m.startswith(library + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, library, None)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as caught:
        Trackers.create(LoggingSettings(**logging_settings), tmp_path / "run", CONFIG)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(key) and f"pip install '{pip}" in message
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_mlflow_store_that_cannot_be_opened_fails_at_create(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    blocked = LoggingSettings(mlflow={"tracking_uri": (tmp_path / "afile" / "mlruns").as_uri()})
    with pytest.raises(UsageError, match=r"^logging\.mlflow\.tracking_uri=.*cannot open"):
        Trackers.create(blocked, tmp_path / "run", CONFIG)

    client, _ = mlflow_runs(tmp_path, "gone")
    client.delete_experiment(client.create_experiment("gone"))
    deleted = settings(tmp_path, tensorboard=False, experiment="gone")
    with pytest.raises(UsageError, match=r"^logging\.mlflow\.experiment='gone': .*deleted"):
        Trackers.create(deleted, tmp_path / "run", CONFIG)


def warnings_about(caplog, name):
    return [r for r in caplog.records if r.levelno == logging.WARNING and name in r.getMessage()]


def test_failing_tensorboard_is_switched_off_and_mlflow_goes_on(tmp_path, caplog):
    run = tmp_path / "run-c"
    (run / "tensorboard").mkdir(parents=True)
    (run / "tensorboard" / "trial-2").write_text("a file where the child's folder goes")
    with caplog.at_level(logging.WARNING, logger="nas.runner.trackers"):
        trackers = Trackers.create(settings(tmp_path), run, CONFIG)
        feed_search(trackers)
        assert trackers.names == ["mlflow"]
        trackers.close()
    assert len(warnings_about(caplog, "tensorboard")) == 1
    assert sorted(p.name for p in (run / "tensorboard").iterdir()) == ["trial-1", "trial-2"]
    assert tb_scalars(tb_run(run, 1), "epoch/val_accuracy") == expected_epochs(1, 1, upto=1)
    _, runs = mlflow_runs(tmp_path, "run-c")
    assert {n: r.info.status for n, r in runs.items()} == {
        "trial-1": "FINISHED", "trial-2": "FAILED", "trial-3": "FINISHED"}


def test_failing_mlflow_is_switched_off_and_tensorboard_goes_on(tmp_path, caplog):
    run = tmp_path / "run-d"
    with caplog.at_level(logging.WARNING, logger="nas.runner.trackers"):
        trackers = Trackers.create(settings(tmp_path), run, CONFIG)
        shutil.rmtree(tmp_path / "mlruns")  # the store goes away mid-search
        feed_search(trackers)
        assert trackers.names == ["tensorboard"]
        trackers.close()
    assert len(warnings_about(caplog, "mlflow")) == 1
    assert tb_scalars(tb_run(run, 3), "epoch/val_accuracy") == expected_epochs(3, 1)
    assert tb_hparams(tb_run(run, 1))[1] == "STATUS_SUCCESS"


def test_no_trackers_configured_writes_nothing(tmp_path):
    trackers = Trackers.create(LoggingSettings(), tmp_path / "run", CONFIG)
    assert trackers.names == []
    feed_search(trackers)
    trackers.close()
    assert list(tmp_path.iterdir()) == []
