"""A tiny report document rendered to both Markdown and self-contained HTML."""
from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from connectome.analysis.units import DIGITS, is_points

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child,td.t{text-align:left}img{max-width:100%}
figure{margin:1em 0}figcaption{font-size:.85em;color:#555}pre{background:#f6f6f6;padding:.8em;overflow-x:auto}
details{margin:.6em 0}summary{cursor:pointer;color:#1a5fb4}p.answer{font-size:1.05em;border-left:4px solid #1a5fb4;
padding:.2em .8em;background:#f4f8fd}"""


def format_value(value, digits: int | None = None) -> str:
    """Cell text: integers as is, floats to 4 significant digits (or `digits` decimals), missing as an en dash."""
    if digits is not None and isinstance(value, (int, float, np.integer, np.floating)) \
            and not isinstance(value, (bool, np.bool_)) and math.isfinite(value):
        return f"{value:.{digits}f}"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        if float(value).is_integer() and abs(value) >= 1e4:
            return f"{int(value):,}"  # sizes: 1,234,567 rather than 1.235e+06
        return f"{value:.4g}" if isinstance(value, (float, np.floating)) else str(value)
    try:
        if pd.isna(value):
            return "–"
    except (TypeError, ValueError):
        pass
    return str(value)


@dataclass
class Document:
    """Ordered blocks (heading, text, table, figure, code, answer) with two renderers."""

    blocks: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def text(self, text: str) -> None:
        self.blocks.append(("text", text))

    def table(self, frame: pd.DataFrame, points: tuple[str, ...] = ()) -> None:
        """A table; `points` columns (and every `*_pts` one) are errors in points, shown with fixed decimals."""
        self.blocks.append(("table", (frame, points)))

    def figure(self, png: Path, svg: Path, caption: str, folded: bool = False) -> None:
        """A figure shown inline, or `folded`: a link in Markdown, a click-to-open box in HTML (a large map)."""
        self.blocks.append(("folded" if folded else "figure", (png, svg, caption)))

    def answer(self, text: str) -> None:
        """A line of the study's answer, set apart from the text around it."""
        self.blocks.append(("answer", text))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def to_markdown(self, base: Path) -> str:
        """Markdown with figures linked relative to `base` (the report's folder)."""
        return "\n\n".join(_markdown_block(kind, value, base) for kind, value in self.blocks) + "\n"

    def to_html(self, title: str) -> str:
        """One HTML file with the PNG figures embedded, so it can be mailed or moved alone."""
        body = "\n".join(_html_block(kind, value) for kind, value in self.blocks)
        return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def _markdown_block(kind: str, value, base: Path) -> str:
    if kind == "heading":
        level, text = value
        return f"{'#' * level} {text}"
    if kind == "table":
        return _markdown_table(*value)
    if kind == "figure":
        png, svg, caption = value
        return (f"![{caption}]({png.relative_to(base).as_posix()})\n\n"
                f"*{caption}* ([SVG]({svg.relative_to(base).as_posix()}))")
    if kind == "folded":
        png, svg, caption = value
        return (f"*{caption}* ([PNG]({png.relative_to(base).as_posix()}), "
                f"[SVG]({svg.relative_to(base).as_posix()}))")
    if kind == "answer":
        return f"**{value}**"
    if kind == "code":
        return f"```\n{value.rstrip()}\n```"
    return str(value)


def _markdown_table(frame: pd.DataFrame, points: tuple[str, ...] = ()) -> str:
    if frame.empty:
        return "*(none)*"
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    digits = _column_digits(frame, points)
    rows = ["| " + " | ".join(format_value(v, d).replace("|", "\\|") for v, d in zip(row, digits)) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _html_block(kind: str, value) -> str:
    if kind == "heading":
        level, text = value
        return f"<h{level}>{_inline_code(html.escape(text))}</h{level}>"
    if kind == "table":
        return html_table(*value)
    if kind == "figure":
        return _html_figure(*value)
    if kind == "folded":
        return (f"<details><summary>{html.escape(value[2])} (click to open)</summary>"
                f"{_html_figure(*value)}</details>")
    if kind == "answer":
        return f"<p class=answer>{_inline_code(html.escape(str(value)))}</p>"
    if kind == "code":
        return f"<pre>{html.escape(value)}</pre>"
    return f"<p>{_inline_code(html.escape(str(value)))}</p>"


def _html_figure(png: Path, svg: Path, caption: str) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return (f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def html_table(frame: pd.DataFrame, points: tuple[str, ...] = ()) -> str:
    """A frame as an HTML table, cells formatted as in the report."""
    if frame.empty:
        return "<p><em>(none)</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    digits = _column_digits(frame, points)
    rows = "".join("<tr>" + "".join(_html_cell(v, d) for v, d in zip(row, digits)) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _column_digits(frame: pd.DataFrame, points: tuple[str, ...]) -> list[int | None]:
    """Per column: the fixed decimals of an error in points, None for the rest."""
    return [DIGITS if is_points(c) or c in points else None for c in frame.columns]


def _html_cell(value, digits: int | None = None) -> str:
    """A table cell: numbers right-aligned (the CSS default), text such as errors left-aligned."""
    numeric = isinstance(value, (int, float, np.integer, np.floating)) or value is None or value is pd.NA
    return f"<td{'' if numeric else ' class=t'}>{html.escape(format_value(value, digits))}</td>"


def _inline_code(text: str) -> str:
    """Markdown `code` spans to <code> in already-escaped text."""
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
