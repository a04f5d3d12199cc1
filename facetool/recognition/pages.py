"""Self-contained HTML pages of faces: every thumbnail is a JPEG `data:` URI, so a page opens anywhere, alone.

Every text a user named (paths, identities) is HTML-escaped; links to photos are `file:` URIs of their paths.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

THUMB = 96
STYLE = (
    "body{font-family:sans-serif;margin:1em}figure{display:inline-block;margin:4px;text-align:center;"
    "font-size:11px;max-width:120px;word-break:break-all}img{width:96px;height:96px}"
    "section{border-top:1px solid #ccc;padding:.5em 0}.flag img{outline:3px solid #c00}"
)


def thumbnail_uri(face_rgb: np.ndarray) -> str:
    """A face crop as a small JPEG `data:` URI."""
    small = cv2.resize(face_rgb, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("JPEG encoding of a thumbnail failed")
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii")


def figure(face_rgb: np.ndarray, caption: str, *, link: str | None = None, css: str = "") -> str:
    """One thumbnail with its caption, linked to the photo when `link` (a local path) is given."""
    img = f'<img src="{thumbnail_uri(face_rgb)}" alt="{html.escape(caption)}">'
    if link is not None:
        img = f'<a href="{html.escape(Path(link).absolute().as_uri())}">{img}</a>'
    cls = f' class="{css}"' if css else ""
    return f"<figure{cls}>{img}<figcaption>{html.escape(caption)}</figcaption></figure>"


def page(title: str, sections: Sequence[str], intro: str = "") -> str:
    """A whole HTML document of `sections` (already HTML) under `title` (text)."""
    body = "\n".join(sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>\n"
        f"{body}\n</body></html>\n"
    )


def section(heading: str, figures: Sequence[str]) -> str:
    return f"<section><h2>{html.escape(heading)}</h2>{''.join(figures)}</section>"
