"""The documentation site makes no request to the internet: no web fonts, no scripts or
stylesheets from elsewhere (links to other sites are fine: a reader follows them)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# An asset the browser fetches by itself: a script, a stylesheet or preconnect, an
# image, or a url() in CSS, at an http(s) address.
_REMOTE_ASSET = re.compile(
    r"<script[^>]*\ssrc=\"https?://|<link[^>]*\shref=\"https?://|<img[^>]*\ssrc=\"https?://"
    r"|url\(\s*['\"]?https?://|@import\s+['\"]?(?:url\()?['\"]?https?://"
)


def test_mkdocs_config_asks_for_no_web_fonts_or_remote_assets() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^  font: false$", config, re.M), "theme.font must be false (no Google Fonts)"
    for key in ("extra_css", "extra_javascript"):
        block = re.search(rf"^{key}:\n((?:\s+- .*\n)*)", config, re.M)
        assert block is None or "http" not in block.group(1), f"{key} loads something from the internet"


def test_the_built_site_references_no_remote_assets(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="building the site needs mkdocs (hatch run docs:build)")
    pytest.importorskip("material", reason="building the site needs mkdocs-material")
    pytest.importorskip("mkdocstrings", reason="building the site needs mkdocstrings")
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    offenders = []
    for path in site.rglob("*"):
        if path.suffix in (".html", ".css", ".js") and path.is_file():
            for match in _REMOTE_ASSET.finditer(path.read_text(encoding="utf-8", errors="replace")):
                offenders.append(f"{path.relative_to(site)}: {match.group(0)}")
    assert not offenders, "\n".join(offenders[:20])
