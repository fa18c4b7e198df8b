import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

from tiny import make_backbone, write_toy_folder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TRF_CONFIG = ROOT / "configs" / "trf.cfg"
BOW_CONFIG = ROOT / "configs" / "bow.cfg"


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False, help="run slow tests (real trained pipeline)")


def pytest_collection_modifyitems(config, items):
    import torch

    skip_slow = pytest.mark.skip(reason="slow: run with --slow")
    skip_gpu = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--slow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


def train_tiny(config: Path, corpus: Path, output: Path, overrides: dict = None, use_gpu: int = -1) -> Path:
    """Train `config` on the toy corpus for a few steps; RETURNS model-best."""
    from spacy.cli.train import train

    settings = {
        "paths.train": str(corpus / "train.spacy"),
        "paths.dev": str(corpus / "dev.spacy"),
        "training.max_epochs": 0,  # the configs count epochs; toy runs count steps
        "training.max_steps": 80,
        "training.eval_frequency": 40,
        "training.logger.progress_bar": None,
    }
    if config.name == "trf.cfg":
        settings.update(
            {"training.optimizer.learn_rate.initial_rate": 0.003, "training.optimizer.learn_rate.warmup_steps": 5}
        )
    settings.update(overrides or {})
    train(config, output, overrides=settings, use_gpu=use_gpu)
    return output / "model-best"


@pytest.fixture(scope="session")
def toy_folder(tmp_path_factory):
    return write_toy_folder(tmp_path_factory.mktemp("toy") / "data", n_train=20, n_eval=4)


@pytest.fixture(scope="session")
def toy_corpus(toy_folder, tmp_path_factory):
    from spacy_emotion.training.corpus import convert

    out = tmp_path_factory.mktemp("corpus")
    convert(out, source=str(toy_folder))
    return out


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return make_backbone(tmp_path_factory.mktemp("bert") / "model", "bert")


@pytest.fixture(scope="session")
def trained_pipeline(tiny_bert, toy_corpus, tmp_path_factory):
    """A transformer + textcat pipeline trained through configs/trf.cfg on toy data."""
    out = tmp_path_factory.mktemp("trained")
    return train_tiny(TRF_CONFIG, toy_corpus, out, {"paths.backbone": str(tiny_bert)})


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory):
    """A tiny HF sequence-classification checkpoint with the six emotions (random weights)."""
    from spacy_emotion.labels import LABELS

    path = tmp_path_factory.mktemp("hf") / "ckpt"
    return make_backbone(path, "bert", num_labels=6, id2label=dict(enumerate(LABELS)))
