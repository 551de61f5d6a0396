"""Self-contained HTML: tables and figures embedded in one file (no external assets)."""

from __future__ import annotations

import base64
import html
import io

import pandas as pd

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; margin: .8em 0; font-size: .88em; }
th, td { border: 1px solid #ccc; padding: .25em .55em; text-align: right; }
th { background: #f0f0f0; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: .3em 0; }
figure { margin: 1em 0; } figcaption { font-size: .88em; color: #555; }
img { max-width: 100%; }
.warn { background: #fff4e5; border-left: 4px solid #e69500; padding: .5em 1em; }
.ok { background: #eef8ee; border-left: 4px solid #2e8b57; padding: .5em 1em; }
.fail { background: #fdecea; border-left: 4px solid #c62828; padding: .5em 1em; }
code, pre { background: #f6f6f6; padding: .1em .3em; }
nav a { margin-right: 1em; }
"""


def escape(text) -> str:
    return html.escape(str(text))


def figure(fig, caption: str = "") -> str:
    """A matplotlib figure as an embedded PNG (closed afterwards)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{data}"/>{cap}</figure>'


def table(df: pd.DataFrame, caption: str = "", digits: int = 4, index: bool = True) -> str:
    """A DataFrame as an HTML table, numbers to ``digits`` significant digits."""
    formatted = df.copy()
    for col in formatted.columns:
        if pd.api.types.is_float_dtype(formatted[col]):
            formatted[col] = formatted[col].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}g}")
    body = formatted.to_html(index=index, border=0, escape=True)
    if caption:  # the first '>' closes the opening <table ...> tag
        body = body.replace(">", f"><caption>{escape(caption)}</caption>", 1)
    return body


def note(text: str, kind: str = "warn") -> str:
    return f'<div class="{kind}">{text}</div>'


def section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>\n' + "\n".join(parts) + "\n</section>"


def page(title: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document; ``sections`` is a list of (anchor, title, html)."""
    nav = " ".join(f'<a href="#{a}">{escape(t)}</a>' for a, t, _ in sections)
    body = "\n".join(section(a, t, h) for a, t, h in sections)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>"
        f"<h1>{escape(title)}</h1><nav>{nav}</nav>\n{body}\n</body></html>\n"
    )
