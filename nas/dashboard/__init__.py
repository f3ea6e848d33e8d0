"""The run dashboard: one JSON payload per run folder, one hand-written page that draws it.

- :mod:`nas.dashboard.payload` turns an :class:`nas.analysis.analyze.Analysis` (and the trial
  records, for the learning curves) into the payload;
- :mod:`nas.dashboard.page` holds the packaged page (``static/``: vanilla JS and CSS, nothing
  fetched from anywhere but the serving process) and assembles it, served or inlined;
- :mod:`nas.dashboard.data` reads a run folder into the payload, again when its files change;
- :mod:`nas.dashboard.server` serves the page and ``/api/run`` on a loopback address
  (``nas dashboard RUN_DIR``), read-only.

The first two sit below :mod:`nas.analysis` (whose ``report.html`` inlines the same page), the
last two above the run-folder store (docs/ARCHITECTURE.md). This package file imports nothing.
"""
