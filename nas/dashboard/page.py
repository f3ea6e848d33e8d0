"""The dashboard page: its packaged assets, served from ``/static/`` or inlined into one file.

The page is hand-written vanilla JavaScript and CSS shipped in ``nas/dashboard/static/`` (no
third-party code, no CDN, no font or image fetched). It draws into ``<div id="mnas-dash">``.
Served (:func:`served_page`), it polls the same-origin ``/api/run``; inlined (:func:`inline_head`,
:func:`inline_body`, :func:`standalone_page`), it reads the payload from a
``<script type="application/json" id="mnas-data">`` blob and never touches the network.
"""

from __future__ import annotations

import html
import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["ASSETS", "SCRIPTS", "asset", "payload_script", "served_page", "inline_head",
           "inline_body", "standalone_page"]

# the only files served from /static/: name -> content type
ASSETS = {"charts.js": "text/javascript; charset=utf-8",
          "dashboard.js": "text/javascript; charset=utf-8",
          "dashboard.css": "text/css; charset=utf-8"}
SCRIPTS = ("charts.js", "dashboard.js")  # in this order: the second uses the first
ROOT_ID = "mnas-dash"
DATA_ID = "mnas-data"


@cache
def asset(name: str) -> bytes | None:
    """The packaged file ``name`` (one of :data:`ASSETS`), or None for any other name."""
    if name not in ASSETS:
        return None
    return (resources.files("nas.dashboard") / "static" / name).read_bytes()


def _text(name: str) -> str:
    data = asset(name)
    if data is None:  # pragma: no cover - a packaging error
        raise FileNotFoundError(f"nas/dashboard/static/{name} is missing from the package")
    return data.decode("utf-8")


def payload_script(payload: Any) -> str:
    """The payload as an inert JSON ``<script>`` element (``<``, ``>`` and ``&`` escaped, so no
    text of the run can close the element)."""
    text = json.dumps(payload, allow_nan=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{DATA_ID}">{text}</script>'


def _document(title: str, head: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title>{head}</head><body>{body}</body></html>")


def served_page(title: str = "mnas dashboard") -> str:
    """The page ``nas dashboard`` serves at ``/``: assets from ``/static/``, data from
    ``/api/run``."""
    return _document(title, "<link rel='stylesheet' href='/static/dashboard.css'>",
                     f"<div id='{ROOT_ID}' data-live='1'></div>" +
                     "".join(f"<script src='/static/{name}'></script>" for name in SCRIPTS))


def inline_head() -> str:
    """The page's CSS as a ``<style>`` element (for a page of its own or the report's)."""
    return f"<style>{_text('dashboard.css')}</style>"


def inline_body(payload: Any) -> str:
    """The page's root element, the payload blob and the inlined script."""
    scripts = []
    for name in SCRIPTS:
        script = _text(name)
        if "</script" in script.lower():  # would end the inline element early
            raise ValueError(f"nas/dashboard/static/{name} must not contain '</script'")
        scripts.append(f"<script>{script}</script>")
    return f"<div id='{ROOT_ID}'></div>{payload_script(payload)}{''.join(scripts)}"


def standalone_page(payload: Any, title: str = "mnas dashboard") -> str:
    """One self-contained HTML file with the payload and the assets inlined."""
    return _document(title, inline_head(), inline_body(payload))
