"""The project workflow end to end on a smoke run, and the built wheel in a fresh venv."""

import json
import shutil
import sys

import pytest
import srsly
from conftest import ROOT
from helpers import run_checked, venv_with_wheel

from spacy_emotion.cli.train import last_step_eval_frequency
from spacy_emotion.labels import LABELS

NAME = "emotiontest"  # a package name no real run uses


@pytest.fixture(scope="module")
def project(tmp_path_factory, toy_folder, tiny_bert):
    """Run convert -> train -> evaluate -> package in a copy of the project."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "project.yml", root)
    shutil.copytree(ROOT / "configs", root / "configs")
    overrides = [
        "--vars.name",
        NAME,
        "--vars.data",
        str(toy_folder),
        "--vars.limit",
        "30",
        "--vars.backbone",
        str(tiny_bert),
    ]
    logs = {}
    for command in ("convert", "train", "evaluate", "package"):
        logs[command] = run_checked(
            [sys.executable, "-m", "spacy", "project", "run", command, ".", *overrides], cwd=root
        ).stdout
    return root, logs


def test_workflow_outputs(project):
    root, logs = project
    assert "Data source: local folder" in logs["convert"]
    for name in ("train", "dev", "test"):
        assert (root / "corpus" / f"{name}.spacy").is_file()
    assert (root / "training" / "trf" / "model-best" / "config.cfg").is_file()
    metrics = srsly.read_json(root / "metrics" / "trf.json")
    assert set(metrics) >= {"accuracy", "macro_f1", "weighted_f1", "labels", "per_class", "confusion_matrix"}
    assert metrics["labels"] == list(LABELS)
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["n"] == 24  # 4 per label in the toy test split
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_a_smoke_run_is_evaluated_at_its_last_step(project):
    """30 toy texts: one batch an epoch, 3 epochs, so steps 0-2; spaCy alone evaluates step 0 only."""
    root, logs = project
    assert "evaluating at step 2 as well" in logs["train"]
    rows = [line.split() for line in logs["train"].splitlines() if line.strip()[:1].isdigit()]
    assert [row[1] for row in rows if len(row) > 2 and row[1].isdigit()] == [
        "0",
        "2",
    ]  # the evaluation rows: epoch, step, ...
    assert (root / "training" / "trf" / "model-best" / "meta.json").is_file()


@pytest.mark.parametrize(
    "n_train,expected",
    [(200, 20), (30, 2), (32, 2), (33, 5), (16_000, None), (6_700, None), (0, None)],
)
def test_last_step_eval_frequency(n_train, expected):
    from spacy.util import load_config

    training = load_config(ROOT / "configs" / "trf.cfg", interpolate=True)["training"]
    assert (training["max_epochs"], training["batcher"]["size"], training["eval_frequency"]) == (3, 32, 200)
    # 200 texts: 7 batches an epoch, 21 steps (0-20); 16,000: max_steps (1,000) ends the run at an evaluation;
    # 6,700: 210 batches an epoch, steps 0-629, evaluated at 200, 400 and 600 already
    assert last_step_eval_frequency(training, n_train) == expected
    assert last_step_eval_frequency({**training, "max_epochs": 0}, n_train) is None  # max_steps ends the run
    words = {**training, "batcher": {"@batchers": "spacy.batch_by_words.v1", "size": 1000}}
    assert last_step_eval_frequency(words, n_train) is None  # steps not known in advance


def test_project_yml_shape():
    config = srsly.read_yaml(ROOT / "project.yml")
    assert {"name", "version", "config", "backbone", "gpu_id", "data", "limit"} <= set(config["vars"])
    assert config["workflows"]["all"][:4] == ["convert", "train", "evaluate", "package"]
    scripts = {c["name"]: " ".join(c["script"]) for c in config["commands"]}
    assert "--gpu-id ${vars.gpu_id}" in scripts["train"] and "--gpu-id ${vars.gpu_id}" in scripts["evaluate"]
    assert "configs/${vars.config}.cfg" in scripts["train"]


def test_wheel_in_fresh_venv(project, tmp_path):
    """The wheel installs into a new venv and loads by name in a fresh process.

    The new venv sees this environment's libraries through a .pth file (no
    downloads), but the pipeline package itself is only in the new venv.
    """
    root, _ = project
    wheels = list((root / "packages").glob(f"en_{NAME}_trf-*/dist/*.whl"))
    assert len(wheels) == 1
    py = venv_with_wheel(wheels[0], tmp_path)
    code = (
        "import json, spacy\n"
        f"nlp = spacy.load('en_{NAME}_trf')\n"
        "import importlib; mod = importlib.import_module(nlp.meta['lang'] + '_' + nlp.meta['name'])\n"
        "doc = nlp('i feel so happy today')\n"
        "reqs = nlp.meta.get('requirements', [])\n"
        "print(json.dumps({'file': mod.__file__, 'cats': doc.cats, 'requirements': reqs}))\n"
    )
    out = json.loads(run_checked([str(py), "-c", code], cwd=tmp_path).stdout.strip().splitlines()[-1])
    assert out["file"].startswith(str(py.parent.parent))  # the new venv's copy, not this one's
    assert set(out["cats"]) == set(LABELS)
    assert any(r.startswith("spacy-emotion") or r.startswith("spacy_emotion") for r in out["requirements"]), out[
        "requirements"
    ]
