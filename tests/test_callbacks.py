"""The training callback of configs/trf.cfg: the dev evaluations' batching must
not change what training learns."""

import hashlib
import random

import pytest
from conftest import TRF_CONFIG, train_tiny

from spacy_emotion.training.callbacks import seed_each_step


def _weights(model_dir) -> str:
    return hashlib.sha1(
        b"".join((model_dir / name / "model").read_bytes() for name in ("transformer", "textcat"))
    ).hexdigest()


@pytest.fixture(scope="module")
def trained_weights(tiny_bert, toy_corpus, tmp_path_factory):
    """Weights after 16 steps (4 epochs of the toy corpus, evaluated every 2 steps)
    with two max_batch_items that split the 24 dev texts into 1 and 12 batches,
    with trf.cfg's before_update and without it."""
    weights = {}
    for callback in ("config", None):
        for max_batch_items in (4096, 16):
            overrides = {
                "paths.backbone": str(tiny_bert),
                "components.transformer.max_batch_items": max_batch_items,
                "training.max_steps": 16,
                "training.eval_frequency": 2,
            }
            if callback is None:
                overrides["training.before_update"] = None
            out = tmp_path_factory.mktemp(f"seeded-{callback}-{max_batch_items}")
            train_tiny(TRF_CONFIG, toy_corpus, out, overrides)
            weights[callback, max_batch_items] = _weights(out / "model-last")
    return weights


def test_dev_batching_does_not_change_training(trained_weights):
    assert trained_weights["config", 4096] == trained_weights["config", 16]


def test_without_the_callback_dev_batching_changes_training(trained_weights):
    # what the callback is for: without it the same run learns other weights,
    # so the test above can fail
    assert trained_weights[None, 4096] != trained_weights[None, 16]


def test_seed_each_step_depends_on_seed_and_step():
    def draws(seed, step):
        seed_each_step(seed)(None, {"step": step, "epoch": 0})
        return [random.random() for _ in range(3)]

    state = random.getstate()
    try:
        assert draws(0, 5) == draws(0, 5)
        assert draws(0, 5) != draws(0, 6)
        assert draws(0, 5) != draws(1, 5)
    finally:
        random.setstate(state)
