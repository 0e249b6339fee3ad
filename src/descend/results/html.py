"""Self-contained HTML reports, shared by every family (bench, bilevel, claims, classic, rl, surrogate, ...).

Figures are matplotlib figures embedded as base64 PNG, so a report is one file that opens anywhere.  Every page
carries :data:`RENDER_CHECK`: after load, ``<body>`` gets ``data-figures`` (how many images) and ``data-rendered``
(how many decoded), which the tests read back from headless Chromium.

    body = figure_html(fig, "loss vs step") + table_html([{"method": "adamw", "final": "0.12"}])
    write_page("descend claims", body, "claims.html")
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["RENDER_CHECK", "STYLE", "colors", "figure_html", "page", "png_base64", "table_html", "write_document",
           "write_page"]

STYLE = """<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1300px}table{border-collapse:collapse;
font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}td.hp{font-size:11px}
figure{display:inline-block;margin:6px}figcaption{font-size:12px;color:#444}.warn{color:#a40}
.pass{color:#060;font-weight:600}.fail{color:#a00;font-weight:600}</style>"""

#: After load, the page records how many of its figures rendered (``data-figures`` / ``data-rendered`` on
#: ``<body>``), so a headless browser can check the report.
RENDER_CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++;
  document.body.setAttribute("data-figures", imgs.length);
  document.body.setAttribute("data-rendered", ok);
});
</script>"""


def png_base64(fig: Any, dpi: int = 90) -> str:
    """The matplotlib figure ``fig`` as base64 PNG text; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def figure_html(fig: Any, caption: str = "") -> str:
    """A ``<figure>`` embedding ``fig`` (a matplotlib Figure, or base64 PNG text already made)."""
    data = fig if isinstance(fig, str) else png_base64(fig)
    cap = html.escape(caption)
    return f'<figure><img alt="{cap}" src="data:image/png;base64,{data}"><figcaption>{cap}</figcaption></figure>'


def table_html(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
               classes: Mapping[str, str] | None = None) -> str:
    """An HTML table of ``rows`` (header = ``columns`` or the first row's keys; cells escaped).

    ``classes`` maps a cell's text to a CSS class (e.g. ``{"PASS": "pass", "FAIL": "fail"}``).
    """
    if not rows:
        return "<p>No results.</p>"
    cols = list(columns or rows[0].keys())
    cls = classes or {}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)

    def cell(v: Any) -> str:
        text = "–" if v is None else str(v)
        c = cls.get(text)
        return f"<td class={c}>{html.escape(text)}</td>" if c else f"<td>{html.escape(text)}</td>"

    body = "".join("<tr>" + "".join(cell(r.get(c)) for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, body_html: str) -> str:
    """A whole HTML document: ``title`` as ``<title>`` and ``<h1>``, then ``body_html``, then a generation line."""
    t = html.escape(title)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{t}</title>\n{STYLE}</head>\n'
            f"<body><h1>{t}</h1>\n{body_html}\n<p>Generated {time.strftime('%Y-%m-%d %H:%M:%S')} by descend.</p>\n"
            "</body></html>\n")


def write_document(doc: str, path: str | Path) -> Path:
    """Write the HTML document ``doc`` to ``path`` (parents created), with the render check before ``</body>``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc.replace("</body>", RENDER_CHECK + "</body>", 1), encoding="utf-8")
    return path


def write_page(title: str, body_html: str, path: str | Path) -> Path:
    """Write :func:`page` ``(title, body_html)`` to ``path``; the path."""
    return write_document(page(title, body_html), path)


def colors(names: Sequence[str]) -> dict[str, Any]:
    """One stable tab10 colour per name (sorted), so a method has the same colour in every figure."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(sorted(names))}
