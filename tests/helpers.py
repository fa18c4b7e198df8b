"""Helpers shared by several test modules."""

import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, List, Union

import spacy
from spacy.language import Language


def classifier(model: Union[str, Path], *, sentencizer: bool = False, **config: Any) -> Language:
    """A blank English pipeline with `emotion_classifier` over `model`.

    sentencizer (bool): add a sentencizer first (for per_sentence).
    config: further settings of the component.
    RETURNS (Language): the pipeline; the model loads on the first text.
    """
    nlp = spacy.blank("en")
    if sentencizer:
        nlp.add_pipe("sentencizer")
    nlp.add_pipe("emotion_classifier", config={"model": str(model), **config})
    return nlp


def run_checked(cmd: List[Any], cwd: Union[str, Path], **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a command; fail the test with the end of its output when it exits non-zero."""
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def venv_with_wheel(wheel: Path, where: Path) -> Path:
    """A new virtual environment in `where`/venv with `wheel` installed in it
    alone: it sees this environment's libraries through a .pth file (no
    downloads), but the wheel's package is only in the new one.

    RETURNS (Path): the new environment's python.
    """
    venv = where / "venv"
    run_checked([sys.executable, "-m", "venv", "--without-pip", str(venv)], where)
    py = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(run_checked([py, "-c", purelib], where).stdout.strip())
    (site / "parent_env.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    run_checked([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", site, wheel], where)
    return py
