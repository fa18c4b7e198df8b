"""`spacy_emotion.Adam.v1`: the head's parameters get their own learning rate."""

import numpy as np
import pytest
import spacy
from conftest import ROOT
from spacy.util import registry
from tiny import make_backbone, toy_training_examples

from spacy_emotion.training.optimizers import HeadRateOptimizer, is_torch_parameter


def _step(optimizer, key):
    weights = np.zeros(4, dtype="float32")
    gradient = np.ones(4, dtype="float32")
    updated, _ = optimizer(key, weights, gradient)
    return float(-updated[0])


def test_head_parameters_move_by_the_scaled_rate():
    optimizer = registry.resolve(
        {"o": {"@optimizers": "spacy_emotion.Adam.v1", "learn_rate": 0.01, "head_learn_rate_scale": 5.0}}
    )["o"]
    head = _step(optimizer, (1, "W"))
    backbone = _step(optimizer, (2, "encoder.layer.0.attention.self.query.weight"))
    assert backbone > 0
    assert head == pytest.approx(5.0 * backbone, rel=1e-5)


def test_scale_one_is_thincs_adam():
    ours = registry.resolve({"o": {"@optimizers": "spacy_emotion.Adam.v1", "learn_rate": 0.01}})["o"]
    thincs = registry.resolve({"o": {"@optimizers": "Adam.v1", "learn_rate": 0.01}})["o"]
    for key in [(1, "W"), (2, "embeddings.word_embeddings.weight")]:
        assert _step(ours, key) == pytest.approx(_step(thincs, key))


def test_scale_must_be_positive():
    with pytest.raises(ValueError, match="head_learn_rate_scale"):
        HeadRateOptimizer(0.01, head_learn_rate_scale=0.0)


class Recording(HeadRateOptimizer):
    def __init__(self):
        super().__init__(0.001)
        self.keys = []

    def __call__(self, key, weights, gradient, *, lr_scale=1.0):
        self.keys.append(key)
        return super().__call__(key, weights, gradient, lr_scale=lr_scale)


def test_keys_tell_the_transformer_from_the_head(tmp_path):
    """Updates of the [CLS] head's pipeline: the transformer's parameters
    reach the optimizer under dotted torch names, the textcat's under thinc's.
    (The first update sends the transformer no gradient: the softmax layer's
    weights start at zero.)"""
    overrides = {"paths.backbone": str(make_backbone(tmp_path / "bert", "bert"))}
    config = spacy.util.load_config(ROOT / "configs" / "trf_cls.cfg", overrides=overrides, interpolate=True)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    examples = toy_training_examples(nlp, 1)
    nlp.initialize(lambda: examples)
    optimizer = Recording()
    for _ in range(2):
        optimizer.keys.clear()
        nlp.update(examples, sgd=optimizer)
    head_ids = {node.id for node in nlp.get_pipe("textcat").model.walk()}
    shim_ids = {shim.id for node in nlp.get_pipe("transformer").model.walk() for shim in node.shims}
    head_keys = [key for key in optimizer.keys if key[0] in head_ids]
    torch_keys = [key for key in optimizer.keys if key[0] in shim_ids]
    assert head_keys and torch_keys
    assert len(head_keys) + len(torch_keys) == len(optimizer.keys)
    assert not any(is_torch_parameter(key) for key in head_keys)
    assert all(is_torch_parameter(key) for key in torch_keys)
    assert {"W", "b"} <= {name for _, name in head_keys}
