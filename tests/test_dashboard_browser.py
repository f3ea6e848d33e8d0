"""The dashboard in a real browser: headless Chromium (the Debian package) loads the page served
for a real run folder, and the standalone report.html, and the test reads the DOM it built.

Skipped with a reason where no Chromium is installed (``apt-get install chromium``; ``.ci/run``
installs it).
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from test_dashboard import COMPLETE, make_real_run, serving

import nas
from nas.analysis.analyze import rank_trials
from nas.dashboard.data import load_payload

pytestmark = pytest.mark.browser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


# after the page drew itself: hover the first point of the front plot, note which trial it is
HOVER = """<script>
var point = document.querySelector('#md-front circle.pt');
point.dispatchEvent(new MouseEvent('mouseover', {bubbles: true, clientX: 50, clientY: 50}));
var note = document.createElement('p');
note.id = 'hovered';
note.textContent = point.getAttribute('data-id');
document.body.appendChild(note);
</script>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("headless Chromium not installed (apt-get install chromium)")
    return found


class Dom(HTMLParser):
    """Every element as (tag, attributes, ids of its ancestors), and the text under each id."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str], tuple[str, ...]]] = []
        self.texts: dict[str, list[str]] = {}
        self._stack: list[tuple[str, str | None]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        ids = tuple(i for _, i in self._stack if i)
        self.elements.append((tag, attrs, ids))
        if tag not in VOID:
            self._stack.append((tag, attrs.get("id")))

    def handle_endtag(self, tag):
        while self._stack and self._stack.pop()[0] != tag:
            pass

    def handle_data(self, data):
        for _, i in self._stack:
            if i:
                self.texts.setdefault(i, []).append(data)

    def find(self, tag: str, inside: str, cls: str | None = None) -> list[dict[str, str]]:
        return [a for t, a, ids in self.elements if t == tag and inside in ids
                and (cls is None or cls in a.get("class", "").split())]

    def text(self, id_: str) -> str:
        return "".join(self.texts.get(id_, []))


def render(url: str, tmp_path) -> Dom:
    """The DOM after the page's script ran (5 s of virtual time: fetches, timers)."""
    out = subprocess.run(
        [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "mnas-dash" in out.stdout, out.stderr[-2000:]
    return Dom(out.stdout)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    chromium()  # skip before building anything
    return make_real_run(tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def served(real_run):
    with serving(real_run.path) as server:
        yield server


def check_views(dom: Dom, payload: dict) -> None:
    """The front (one point per complete trial, the front's marked) and the best trial's curve."""
    points = dom.find("circle", "md-front", "pt")
    assert sorted(int(p["data-id"]) for p in points) == sorted(
        t["id"] for t in payload["trials"] if t["status"] == "complete")
    assert len(points) == COMPLETE
    assert sorted(int(p["data-id"]) for p in points if "front" in p["class"].split()) == \
        sorted(payload["front"])
    best = payload["run"]["best"]["trial_id"]
    curve = dom.find("path", "md-curve", "curve")
    assert [c["data-id"] for c in curve] == [str(best)] and curve[0]["d"].count("L") == 1
    assert len(dom.find("path", "md-curve", "bg-curve")) == COMPLETE - 1
    assert len(dom.find("path", "md-parallel", "pline")) == COMPLETE
    assert f"trial {best}" in dom.text("md-curve-title")


def test_served_page_renders_the_run(served, real_run, tmp_path):
    payload = load_payload(real_run.path)
    dom = render(served.url, tmp_path)
    rows = dom.find("tr", "md-table")
    ids = [int(r["data-id"]) for r in rows if "data-id" in r]
    run = nas.load_run(real_run.path)
    ranked = rank_trials(run.trials, run.reward())["trial_id"].tolist()  # best reward first
    unranked = sorted(t["id"] for t in payload["trials"] if t["id"] not in ranked)
    assert ids == ranked + unranked and len(ids) == 7  # by reward, descending; no reward last
    assert "7 / 8 trials" in dom.text("md-counts") and "running" in dom.text("md-state")
    assert "live" in dom.text("md-mode")
    check_views(dom, payload)


def test_static_report_renders_the_same_views_sorted_and_filtered(real_run, tmp_path):
    from nas.analysis.report import write_analysis

    run = nas.load_run(real_run.path)
    page = write_analysis(run.analyze(), tmp_path / "out", records=run.records,
                          meta=real_run.meta())["report.html"]
    probed = page.with_name("probed.html")  # the report, then a script that hovers one point
    probed.write_text(page.read_text().replace("</body>", HOVER + "</body>"))
    payload = load_payload(real_run.path)
    trials = run.trials.set_index("trial_id")
    depth = int(trials.loc[payload["run"]["best"]["trial_id"], "arch.depth"])
    dom = render(f"{probed.as_uri()}#sort=accuracy:asc&status=complete&q=depth%3D{depth}",
                 tmp_path)
    ids = [int(r["data-id"]) for r in dom.find("tr", "md-table") if "data-id" in r]
    done = run.trials[(run.trials["status"] == "complete") & (run.trials["arch.depth"] == depth)]
    assert ids == done.sort_values(["accuracy", "trial_id"], kind="stable")["trial_id"].tolist()
    assert dom.text("md-shown") == f"{len(ids)} of 7 trials shown" and len(ids) >= 1
    assert "snapshot" in dom.text("md-mode")
    check_views(dom, payload)
    hovered = next(t for t in payload["trials"] if t["id"] == int(dom.text("hovered")))
    tip = dom.find("div", "mnas-dash")
    assert not any(a.get("id") == "md-tip" and "hidden" in a for a in tip)  # shown
    assert f"trial {hovered['id']}" in dom.text("md-tip")
    assert f"accuracy {float(hovered['accuracy']):.4g}" in dom.text("md-tip")
    assert "width" + str(hovered["decisions"]["width"]) in dom.text("md-tip")


def test_a_warm_started_run_is_marked(tmp_path):
    chromium()
    run = make_real_run(tmp_path / "runs", "warm", warm=2)
    with serving(run.path) as server:
        dom = render(server.url, tmp_path)
    assert "warm start: results/pilot (12 records); 2 children from their knowledge" in \
        dom.text("md-counts")
    rows = {int(r["data-id"]): r for r in dom.find("tr", "md-table") if "data-id" in r}
    marked = sorted(t["id"] for t in load_payload(run.path)["trials"]
                    if t["origin"] == "warm-start")
    assert len(marked) == 2 and set(marked) <= set(rows)
    table = dom.text("md-table")
    assert table.count("warm-start") == 2  # the origin column, one cell per such trial
