"""MkDocs hook: the docstrings cross-reference with Sphinx roles (:class:`x`, :func:`~a.b`); mkdocstrings renders
the role's name as plain text before the code span. This drops the role and, for ``~a.b.c``, shows ``c`` as Sphinx
does."""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|obj|exc):<code>(~?)([^<]*)</code>")


def _code(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if short else target}</code>"


def on_page_content(html: str, **kwargs: object) -> str:
    return ROLE.sub(_code, html)
