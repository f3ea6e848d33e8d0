"""No writes through links (issue 22.2): every file mnas writes into a run folder, an export, an
analysis folder or a shared temp folder is opened without following a symbolic link.

Each test plants a link where a writer writes (the file itself, the fixed temporary name it used
before, or the sub-folder), pointing at a victim outside the run folder, runs the writer (through
``nas.cli.main`` where a command reaches it, with Ray forbidden), and checks that the victim is
unchanged (bytes and mtime), that nothing outside was written, and that the refusal is one line
naming the link (exit 2, or a :class:`~nas._fs.SymlinkError` from the library). The helpers are in
``link_victims.py``; the run folder's own writers are tested in ``test_no_links.py``.
"""

from __future__ import annotations

import json
import os

import pytest
from link_victims import Outside, make_run, plant, refused

from nas._fs import SymlinkError
from nas.cli import main

pytestmark = pytest.mark.usefixtures("no_ray")


@pytest.fixture
def outside(tmp_path):
    return Outside(tmp_path)


# -- latency tables and quiet windows (nas/latency) ---------------------------------------------

def test_a_latency_table_is_saved_past_links(tmp_path, outside):
    from nas.latency.lut import LatencyTable
    from nas.latency.measure import LatencyConfig

    table = LatencyTable(LatencyConfig())
    path = tmp_path / "lut.json"
    plant(tmp_path / f".lut.json.{os.getpid()}.tmp", outside.file("old-tmp"))
    plant(tmp_path / ".lut.json.tmp", outside.file("tmp"))
    outside.freeze()
    table.save(path)  # past the planted temporary names
    assert LatencyTable.load(path).to_dict() == table.to_dict()
    path.unlink()
    plant(path, outside.file())
    outside.freeze()
    with pytest.raises(SymlinkError, match="lut.json"):
        table.save(path)
    outside.unchanged()


@pytest.mark.parametrize("linked", ["folder", "measure.lock", "quiet"])
def test_quiet_windows_refuse_links_in_the_shared_temp_folder(tmp_path, outside, linked):
    from nas.latency.conditions import measuring, training

    folder = tmp_path / "shared-tmp" / "mnas-activity-x"
    if linked == "folder":
        link = plant(folder, outside.folder())
    else:
        folder.mkdir(parents=True)
        link = plant(folder / linked, outside.file())
    outside.freeze()
    with pytest.raises(SymlinkError) as caught, measuring(str(folder), quiet=True):
        pass
    assert str(link) in str(caught.value)
    if linked == "folder":
        with pytest.raises(SymlinkError), training(str(folder)):
            pass
    outside.unchanged()


# -- nas bench --out (nas/search/bench_report.py) -----------------------------------------------

def bench_frames():
    import pandas as pd

    curves = pd.DataFrame({"controller": ["a", "a"], "seed": [0, 0], "trial": [1, 2],
                           "best_metric": [0.1, 0.2]})
    return curves, pd.DataFrame({"controller": ["a"], "x": [1.0]})


def test_bench_outputs_refuse_links_in_the_users_folder(tmp_path, outside):
    from nas.search.bench_report import write_outputs

    curves, summary = bench_frames()
    disk = tmp_path / "disk"
    disk.mkdir()
    out = plant(tmp_path / "bench", disk)  # --out on a link: the user's choice, followed
    paths = write_outputs(curves, summary, out)
    assert sorted(p.name for p in disk.iterdir()) == ["curves.csv", "curves.png", "summary.csv"]
    assert paths["plot"].read_bytes().startswith(b"\x89PNG")
    for name in ("curves.csv", "curves.png"):
        (disk / name).unlink()
        link = plant(disk / name, outside.file(f"victim-{name}"))
        outside.freeze()
        with pytest.raises(SymlinkError, match=name):
            write_outputs(curves, summary, out)
        outside.unchanged()
        link.unlink()


# -- nas analyze / nas compare (nas/analysis) --------------------------------------------------

def test_analyze_refuses_a_linked_analysis_folder(tmp_path, outside, capsys):
    run = make_run(tmp_path)
    link = plant(run.path / "analysis", outside.folder())
    outside.freeze()
    assert main(["analyze", str(run.path)]) == 2
    refused(capsys, "analyze", link)
    outside.unchanged()


def test_analyze_refuses_a_linked_file_before_writing_any(tmp_path, outside, capsys):
    run = make_run(tmp_path)
    link = plant(run.path / "analysis" / "report.html", outside.file())
    outside.freeze()
    assert main(["analyze", str(run.path)]) == 2
    refused(capsys, "analyze", link)
    assert [p.name for p in (run.path / "analysis").iterdir()] == ["report.html"]
    outside.unchanged()


def test_analyze_out_may_be_the_users_link(tmp_path, capsys):
    run = make_run(tmp_path)
    disk = tmp_path / "disk"
    disk.mkdir()
    out = plant(tmp_path / "mine", disk)
    assert main(["analyze", str(run.path), "--out", str(out), "--format", "json"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert len(files) == 11 and (disk / "report.html").is_file()


def test_compare_refuses_a_linked_default_folder(tmp_path, outside, capsys):
    first, second = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    link = plant(first.path.parent / "compare", outside.folder())
    outside.freeze()
    assert main(["compare", str(first.path), str(second.path)]) == 2
    refused(capsys, "compare", link)
    outside.unchanged()


def test_save_png_refuses_a_link(tmp_path, outside):
    from nas.analysis.plots import save_png

    link = plant(tmp_path / "a.png", outside.file())
    outside.freeze()
    with pytest.raises(SymlinkError):
        save_png(b"\x89PNG", link)
    outside.unchanged()


# -- nas export (nas/export) -------------------------------------------------------------------

@pytest.mark.parametrize("linked", ["export", "export/trial-2"])
def test_export_refuses_a_linked_export_folder(tmp_path, outside, capsys, linked):
    run = make_run(tmp_path)
    link = plant(run.path / linked, outside.folder())
    outside.freeze()
    assert main(["export", str(run.path), "--format", "json"]) == 2
    refused(capsys, "export", link)
    outside.unchanged()


def test_export_formats_write_bytes_past_links(tmp_path, outside):
    import torch

    from nas.export.formats import write_pt2, write_weights

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    folder = tmp_path / "card"
    for name in ("model.safetensors", "model.pt2"):
        link = plant(folder / name, outside.file(f"victim-{name}"))
        outside.freeze()
        with pytest.raises(SymlinkError, match=name):
            write_weights(model, folder) if "safe" in name else \
                write_pt2(model, (1, 2, 2), folder / name)
        outside.unchanged()
        link.unlink()
    write_weights(model, folder)
    assert write_pt2(model, (1, 2, 2), folder / "model.pt2")["max_abs_diff"] < 1e-6
    assert (folder / "model.safetensors").stat().st_size > 0


def test_export_onnx_refuses_a_link(tmp_path, outside):
    pytest.importorskip("onnxruntime")
    import torch

    from nas.export.formats import write_onnx

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    link = plant(tmp_path / "model.onnx", outside.file())
    outside.freeze()
    with pytest.raises(SymlinkError, match="model.onnx"):
        write_onnx(model, (1, 2, 2), link)
    outside.unchanged()
