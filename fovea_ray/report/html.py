"""A self-contained HTML page: figures embedded as base64 PNG, no external URL at all.

The page must open offline (a laptop on a train, an archived run), so there are no
stylesheets, scripts or fonts from anywhere else; everything is inline.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#1b1f24;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.8rem 0;font-size:.88rem}
th,td{border:1px solid #d0d7de;padding:.25rem .55rem;text-align:right}
th{background:#f6f8fa} td.l,th.l{text-align:left}
figure{margin:1rem 0} figure img{max-width:100%;border:1px solid #eaeef2}
figcaption{font-size:.85rem;color:#57606a}
.banner{background:#fff8c5;border:1px solid #d4a72c;padding:.7rem 1rem;border-radius:6px;margin:1rem 0}
.warn{background:#ffebe9;border:1px solid #ff8182;padding:.5rem 1rem;border-radius:6px;margin:.6rem 0}
.muted{color:#57606a;font-size:.85rem}
"""


@dataclass
class Figure:
    """A PNG figure with a caption."""

    png: bytes
    caption: str
    name: str = ""


@dataclass
class Table:
    """A table; ``left`` names columns aligned left (text)."""

    header: Sequence[str]
    rows: Sequence[Sequence[object]]
    caption: str = ""
    left: Sequence[str] = ()


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    blocks: list[Figure | Table] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _cell(v: object) -> str:
    if isinstance(v, float):
        if v != v:
            return "–"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3g}"
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(t: Table) -> str:
    left = set(t.left)
    head = "".join(f'<th class="{"l" if h in left else ""}">{html.escape(str(h))}</th>' for h in t.header)
    body = []
    for row in t.rows:
        tds = "".join(f'<td class="{"l" if h in left else ""}">{_cell(v)}</td>' for h, v in zip(t.header, row))
        body.append(f"<tr>{tds}</tr>")
    cap = f"<caption class='muted'>{html.escape(t.caption)}</caption>" if t.caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(f: Figure) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    alt = html.escape(f.caption.split(".")[0] if f.caption else f.name)
    return (
        f'<figure id="{html.escape(f.name)}"><img alt="{alt}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"
    )


def render_html(title: str, sections: Sequence[Section], *, banner: str = "", subtitle: str = "") -> str:
    """Assemble the page. Text is escaped; only our own markup is emitted."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if subtitle:
        parts.append(f'<p class="muted">{html.escape(subtitle)}</p>')
    if banner:
        parts.append(f'<div class="banner">{html.escape(banner)}</div>')
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts.extend(f'<div class="warn">{html.escape(w)}</div>' for w in s.warnings)
        parts.extend(f"<p>{html.escape(p)}</p>" for p in s.paragraphs)
        for b in s.blocks:
            parts.append(_table(b) if isinstance(b, Table) else _figure(b))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(path: str | Path, page: str) -> Path | str:
    """Write ``page`` to a local path or an fsspec URL; a local path comes back as a Path."""
    from fovea_ray import io as fio

    out = fio.write_text(path, page)
    return out if fio.is_url(out) else Path(out)
