"""The book's Jupyter Book setup (_config.yml, _ext/, _theme/), on a one-page book built with it in a temporary
folder: what every page gets from the configuration rather than from a chapter."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PAGE = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# One page

```{code-cell} ipython3
import time

for stage in ("layer1", "layer2", "layer3"):
    print(stage, flush=True)  # each line its own message from the kernel
    time.sleep(0.3)
```
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> str:
    """The HTML of a one-page book built with the book's configuration."""
    book = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "references.bib"):
        shutil.copy(ROOT / name, book / name)
    for folder in ("_ext", "_theme"):
        shutil.copytree(ROOT / folder, book / folder)
    (book / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "chapter_cache.py", book / "tools")  # the other local extension _config.yml loads
    (book / "_toc.yml").write_text("format: jb-book\nroot: index\n")
    (book / "index.md").write_text(PAGE)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    done = subprocess.run([str(jupyter_book), "build", str(book)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return (book / "_build" / "html" / "index.html").read_text()


def test_every_inline_script_is_on_the_page_once(page):
    # twice, sphinx-thebe's `const THEBE_JS_URL = ...` throws "Identifier 'THEBE_JS_URL' has already been declared"
    scripts = Counter(body.strip() for body in re.findall(r"<script>(.*?)</script>", page, flags=re.S))
    assert any("THEBE_JS_URL" in body for body in scripts), "the page has sphinx-thebe's configuration script"
    twice = [body[:80] for body, count in scripts.items() if count > 1]
    assert not twice, f"inline scripts on the page more than once: {twice}"


def test_a_first_visit_starts_in_a_colour_mode_the_theme_knows(page):
    # with none, pydata-sphinx-theme's script logs "Got invalid theme mode: . Resetting to auto." as an error
    (mode,) = re.findall(r'dataset\.mode = localStorage\.getItem\("mode"\) \|\| "([^"]*)"', page)
    assert mode in ("auto", "light", "dark")


def test_what_a_cell_prints_in_a_loop_is_one_output_box(page):
    boxes = re.findall(r'<div class="output stream[^"]*">', page)
    assert len(boxes) == 1, f"the three printed lines came out in {len(boxes)} boxes"
    assert all(stage in page for stage in ("layer1", "layer2", "layer3"))


def _mapping_without_repeated_keys(loader, node):
    """A YAML mapping that refuses a key given twice (PyYAML keeps the last one silently)."""
    keys = [loader.construct_object(key, deep=True) for key, _ in node.value]
    repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
    assert not repeated, f"_config.yml gives {repeated} twice at line {node.start_mark.line + 1}: the last one wins"
    return loader.construct_mapping(node, deep=True)


def test_the_config_names_each_setting_once_so_every_local_extension_loads():
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeated_keys)
    config = yaml.load((ROOT / "_config.yml").read_text(), Loader=Loader)
    extensions = config["sphinx"]["local_extensions"]
    assert extensions == {"chapter_cache": "tools", "js_once": "_ext"}
    for name, folder in extensions.items():
        assert (ROOT / folder / f"{name}.py").is_file()
