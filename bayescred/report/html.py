"""Self-contained HTML from jinja2 templates (bayescred/report/templates): tables and figures
embedded in one file, no external assets. Every number on the page goes through :func:`fmt`."""

from __future__ import annotations

import base64
import io
import math
from functools import cache

import pandas as pd
from markupsafe import Markup, escape as _escape

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 1em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; margin: .3em 0 .4em; font-size: 1.6em; }
h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: .8em 0; font-size: .85em; }
th, td { border: 1px solid #ccc; padding: .25em .55em; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: .3em 0; white-space: normal; }
figure { margin: .5em 0; } figcaption { font-size: .88em; color: #555; }
img { max-width: 100%; height: auto; }
.lead { font-size: 1.08em; }
.warn { background: #fff4e5; border-left: 4px solid #e69500; padding: .5em 1em; margin: .5em 0; }
.ok { background: #eef8ee; border-left: 4px solid #2e8b57; padding: .5em 1em; margin: .5em 0; }
.fail { background: #fdecea; border-left: 4px solid #c62828; padding: .5em 1em; margin: .5em 0; }
code, pre { background: #f6f6f6; padding: .1em .3em; }
nav { margin: 1em 0; } nav a { margin-right: 1em; }
"""


@cache
def _env():
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(loader=PackageLoader("bayescred.report", "templates"),
                       autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context) -> Markup:
    """A template of bayescred/report/templates, autoescaped (pass trusted HTML as Markup)."""
    return Markup(_env().get_template(template).render(**context))


def escape(text) -> Markup:
    return _escape(str(text))


def fmt(value, digits: int = 4, percent: bool = False) -> str:
    """The one way a number is written in the report: ``digits`` significant digits (integers
    as they are; thousands not abbreviated), a share as a whole percent with ``percent``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if percent:
        return f"{100 * float(value):.0f}%"
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return f"{int(value)}"
    if isinstance(value, (float,)) or hasattr(value, "dtype"):
        v = float(value)
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.{digits}g}"
    return str(value)


def figure(fig, caption: str = "", id: str | None = None) -> Markup:
    """A matplotlib figure as an embedded PNG (closed afterwards)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return render("figure.html.j2", data=data, caption=caption, id=id)


def table(df: pd.DataFrame, caption: str = "", digits: int = 4, index: bool = True) -> Markup:
    """A DataFrame as an HTML table in a horizontally scrolling box, numbers through :func:`fmt`."""
    rows = [(label, [fmt(v, digits) if not isinstance(v, str) else v for v in row])
            for label, row in zip(df.index, df.itertuples(index=False, name=None))]
    return render("table.html.j2", caption=caption, columns=[str(c) for c in df.columns], rows=rows,
                  index=index, index_name=df.index.name or "")


def note(text, kind: str = "warn") -> Markup:
    """A coloured box; ``text`` is escaped unless it is already Markup."""
    return Markup('<div class="{}">{}</div>').format(kind, text)


def page(title: str, first_screen, sections: list[tuple[str, str, str]]) -> str:
    """The whole document: the first screen right under the title, then the navigation and
    ``sections`` (anchor, heading, trusted HTML)."""
    return str(render("page.html.j2", title=title, style=Markup(STYLE), first_screen=Markup(first_screen),
                      sections=[(a, t, Markup(h)) for a, t, h in sections])) + "\n"
