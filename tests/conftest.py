import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

from tiny import make_backbone, toy_examples, toy_training_examples, write_toy_folder  # noqa: E402

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


def random_head_pipeline(arch: str, path, config_path=TRF_CONFIG) -> str:
    """`config_path` over a tiny random `arch`, initialised on toy data, with
    a random softmax layer (an untrained one is all zeros: uniform scores)
    and, for a first-wordpiece head, a random pooler."""
    import numpy as np
    import spacy

    backbone = make_backbone(path / "backbone", arch)
    config = spacy.util.load_config(config_path, overrides={"paths.backbone": str(backbone)}, interpolate=True)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    examples = toy_training_examples(nlp, 2)
    nlp.initialize(lambda: examples)
    rng = np.random.default_rng(0)
    for node in nlp.get_pipe("textcat").model.walk():
        if node.name == "softmax":
            node.set_param("W", rng.normal(0, 0.3, node.get_param("W").shape).astype("float32"))
            node.set_param("b", rng.normal(0, 1, node.get_param("b").shape).astype("float32"))
        if node.name == "cls_pooler":
            _spread_pooler(nlp, node, rng)
    nlp.to_disk(path / "pipeline")
    return path / "pipeline"


def _spread_pooler(nlp, pooler, rng) -> None:
    """Set a random pooler that spreads the toy texts' [CLS] vectors (which a
    random backbone makes nearly equal) over the range of its tanh."""
    import numpy as np

    docs = list(nlp.pipe(t for t, _ in toy_examples(3, seed=5)))
    first = np.stack([doc._.trf_data.model_output.last_hidden_state[:, 0, :].mean(axis=0) for doc in docs])
    centre = first.mean(axis=0)
    spread = np.linalg.norm(first - centre, axis=1).mean()
    W = rng.normal(0, 0.1, pooler.get_param("W").shape) / spread
    pooler.set_param("W", W.astype("float32"))
    pooler.set_param("b", (-W @ centre).astype("float32"))


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
