"""The documentation site builds cleanly and the README stays short."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spacy_emotion.component.pipe import DEFAULT_CONFIG

ROOT = Path(__file__).resolve().parent.parent
README_LIMIT = 12_000


def _mkdocs_missing() -> bool:
    return importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None


@pytest.mark.skipif(_mkdocs_missing(), reason='mkdocs or mkdocs-material not installed (pip install -e ".[docs]")')
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """`mkdocs build --strict` passes and logs no warning."""
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml")]
        + ["--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    warnings = [line for line in log.splitlines() if re.search(r"\bWARNING\b", line)]
    assert not warnings, "\n".join(warnings)
    assert (site / "index.html").is_file()
    assert (site / "component" / "index.html").is_file()


def test_component_page_lists_every_setting() -> None:
    """docs/component.md documents every setting of the factory's default config."""
    page = (ROOT / "docs" / "component.md").read_text(encoding="utf8")
    missing = [name for name in DEFAULT_CONFIG if f"| `{name}` |" not in page]
    assert not missing, f"settings missing from the table in docs/component.md: {missing}"


def test_speed_page_describes_every_speed_setting() -> None:
    """docs/speed.md, the home of the speed settings, has a section for each."""
    from spacy_emotion.component.speed import SpeedOptions

    page = (ROOT / "docs" / "speed.md").read_text(encoding="utf8")
    missing = [name for name in SpeedOptions.__dataclass_fields__ if f"`{name}`" not in page.split("## Precision")[0]]
    assert not missing, f"speed settings not described in docs/speed.md: {missing}"


def test_readme_is_short() -> None:
    size = len((ROOT / "README.md").read_text(encoding="utf8"))
    assert size <= README_LIMIT, f"README.md has {size} characters; keep it under {README_LIMIT} and link to docs/"
