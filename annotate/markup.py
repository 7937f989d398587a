"""Guidelines Markdown as HTML: rendered once per saved version (GuidelineVersion.html),
never per request; a long guideline took seconds to render on every annotator page."""

from __future__ import annotations

import markdown
import nh3


def render_markdown(text: str) -> str:
    """Sanitised HTML for `text` ("" for a blank one): leads may paste raw HTML into the
    Markdown, and nh3 keeps only harmless tags and attributes."""
    if not text.strip():
        return ""
    return nh3.clean(markdown.markdown(text, extensions=["extra", "sane_lists"]))
