"""Each inline script once per page: Sphinx's fix for scripts added as ``add_js_file(None, body=...)``, backported.

Sphinx 7.4 (the newest Jupyter Book 1.x allows) adds such a script to the HTML builder twice when an extension
adds it after the builder started, as sphinx-thebe does: once with the file name ``None`` and once, from the
registry, with ``''``, which its duplicate check takes for different files. sphinx-thebe's script declares
``const THEBE_JS_URL``, so the second copy throws "Identifier 'THEBE_JS_URL' has already been declared" on every
page. Sphinx 8.2 passes ``''`` both times (sphinx-doc/sphinx#13402); so does this extension, for older versions.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx
from sphinx.builders.html import StandaloneHTMLBuilder

_add_js_file = StandaloneHTMLBuilder.add_js_file


def _add_js_file_once(self: StandaloneHTMLBuilder, filename: str | None, **kwargs: Any) -> None:
    _add_js_file(self, filename or "", **kwargs)


def setup(app: Sphinx) -> dict[str, Any]:
    """Make the HTML builder name a script without a file ``''``, as its registry does."""
    StandaloneHTMLBuilder.add_js_file = _add_js_file_once  # type: ignore[method-assign]
    return {"parallel_read_safe": True, "parallel_write_safe": True}
