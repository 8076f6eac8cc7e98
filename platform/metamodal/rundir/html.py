"""``report.html`` beside a run's Markdown report: the same tables, the run's plots, its
configuration and the command that made it, in one self-contained page (images inlined as
base64, styles inline, nothing fetched), so it can be mailed, attached or opened offline."""

from __future__ import annotations

import base64
import html
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from metamodal.rundir.base import atomic_write

STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3}td{text-align:right}td:first-child{text-align:left}
figure{margin:1.5em 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#666;font-size:13px}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:12px}code{background:#f3f3f3;padding:0 3px}
"""


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(path.name)}</figcaption></figure>")  # fmt: skip


def render_html(markdown_text: str, title: str, images: list[Path], config: Any = None,
                command: str | None = None) -> str:  # fmt: skip
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>", body]  # fmt: skip
    if images:
        parts += ["<h2>Plots</h2>", *map(_image, images)]
    if command:
        parts += ["<h2>Command</h2>", f"<pre>{html.escape(command)}</pre>"]
    if config is not None:
        text = json.dumps(config, indent=2, default=str, sort_keys=True)
        parts += ["<h2>Configuration</h2>", f"<pre>{html.escape(text)}</pre>"]
    return "".join(parts) + "</body></html>\n"


def write_html(md_file: Path, config: Any = None, images: list[Path] | None = None,
               title: str | None = None) -> Path:  # fmt: skip
    """``report.html`` (or ``<stem>.html``) beside ``md_file``: every PNG of its folder unless
    ``images`` names them, the configuration given, and this process's command line."""
    md_file = Path(md_file)
    out = md_file.with_name("report.html" if md_file.name == "report.md" else f"{md_file.stem}.html")
    pngs = sorted(md_file.parent.glob("*.png")) if images is None else [Path(p) for p in images]
    argv = [a for a in sys.argv if a]
    command = " ".join(shlex.quote(a) for a in [Path(argv[0]).name, *argv[1:]]) if argv and argv[0] != "-c" else None
    page = render_html(md_file.read_text(), title or md_file.parent.name, [p for p in pngs if p.is_file()],
                       config, command)  # fmt: skip
    atomic_write(out, lambda tmp: tmp.write_text(page))
    return out
