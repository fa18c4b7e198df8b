"""`spacy-emotion hf-baseline` (training/hf_finetune.py): a plain Hugging Face
fine-tune on the toy splits, scored with the keys of `spacy-emotion evaluate`,
its checkpoint loadable by the emotion_classifier component."""

import json

import pytest
import spacy
from typer.testing import CliRunner

from spacy_emotion.cli import app
from spacy_emotion.training.hf_finetune import FinetuneSettings, finetune
from spacy_emotion.training.metrics import compute_metrics


def test_hf_baseline_learns_and_writes_evaluate_metrics(tiny_bert, toy_folder, tmp_path):
    settings = FinetuneSettings(backbone=str(tiny_bert), epochs=20, batch_size=8, learn_rate=3e-3, warmup_ratio=0.1)
    metrics = finetune(str(toy_folder), tmp_path / "out", settings)
    keys = set(compute_metrics(["joy"], ["joy"]))
    for split in ("dev", "test"):
        saved = json.loads((tmp_path / "out" / f"metrics-{split}.json").read_text(encoding="utf8"))
        assert set(saved) == keys and saved == metrics[split]
        assert set(saved["per_class"]) == set(saved["labels"])
    assert metrics["dev"]["n"] == 24
    assert metrics["dev"]["accuracy"] >= 0.5  # the keywords are learnt: chance is 1/6
    record = json.loads((tmp_path / "out" / "settings.json").read_text(encoding="utf8"))
    assert record["steps"] == 20 * 15 and record["learn_rate"] == 3e-3
    nlp = spacy.blank("en")
    nlp.add_pipe("emotion_classifier", config={"model": str(tmp_path / "out" / "model")})
    doc = nlp("i feel so happy")
    assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)


def test_hf_baseline_command_rejects_bad_settings(toy_folder, tmp_path):
    result = CliRunner().invoke(app, ["hf-baseline", str(tmp_path / "out"), "--data", str(toy_folder), "--epochs", "0"])
    assert result.exit_code == 1
    assert "epochs must be > 0" in result.output
    assert not (tmp_path / "out").exists()


def test_hf_baseline_command_reports_progress(tiny_bert, toy_folder, tmp_path):
    args = ["hf-baseline", str(tmp_path / "out"), "--data", str(toy_folder), "--backbone", str(tiny_bert)]
    result = CliRunner().invoke(app, [*args, "--epochs", "2", "--batch-size", "4", "--no-save-model"])
    assert result.exit_code == 0, result.output
    # 2 epochs of 120 toy texts in batches of 4: 60 steps, a line every 25 and one at the end
    lines = [line for line in result.output.splitlines() if line.lstrip().startswith("step ")]
    assert [line.split(":")[0].strip() for line in lines] == ["step 25/60", "step 50/60", "step 60/60"]
    assert "mean loss" in lines[0]
    assert not (tmp_path / "out" / "model").exists()
