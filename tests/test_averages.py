"""`use_averages`: the transformer's torch weights are evaluated and saved
with the optimizer's averages, like the thinc layers' (spacy_emotion/training/averages.py)."""

import numpy as np
import pytest
import spacy
import torch
from conftest import TRF_CONFIG
from spacy.util import registry
from spacy_transformers.layers.hf_shim import HFShim
from tiny import make_backbone, toy_training_examples

from spacy_emotion.training.averages import AveragedHFShim


def _trained(tmp_path, averaged: bool = True):
    """A configs/trf.cfg pipeline over a tiny BERT after a few updates with averages kept."""
    overrides = {"paths.backbone": str(make_backbone(tmp_path / "bert", "bert"))}
    config = spacy.util.load_config(TRF_CONFIG, overrides=overrides, interpolate=True)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    shim = nlp.get_pipe("transformer").model.layers[0].shims[0]
    if not averaged:
        shim.__class__ = HFShim
    examples = toy_training_examples(nlp, 2)
    nlp.initialize(lambda: examples)
    optimizer = registry.resolve({"o": {"@optimizers": "Adam.v1", "learn_rate": 0.01, "use_averages": True}})["o"]
    for _ in range(4):
        nlp.update(examples, sgd=optimizer)
    return nlp, shim, optimizer, [e.reference.text for e in examples]


def _weights(shim):
    return {name: p.detach().clone() for name, p in shim._model.named_parameters()}


def test_transformer_is_evaluated_with_its_averages(tmp_path):
    nlp, shim, optimizer, texts = _trained(tmp_path)
    assert isinstance(shim, AveragedHFShim)
    last = _weights(shim)
    # parameters that got no gradient (BERT's pooler under this head) have no averages
    averages = optimizer.averages
    averaged = {n: torch.as_tensor(averages[(shim.id, n)]) for n in last if (shim.id, n) in averages}
    assert "encoder.layer.0.attention.self.query.weight" in averaged
    assert any(not torch.equal(last[n], averaged[n]) for n in averaged)
    outside = [doc.cats for doc in nlp.pipe(texts)]
    with nlp.use_params(optimizer.averages):
        inside = _weights(shim)
        for name in last:
            assert torch.equal(inside[name], averaged.get(name, last[name])), name
        with_averages = [doc.cats for doc in nlp.pipe(texts)]
    assert with_averages != outside
    after = _weights(shim)
    for name in last:
        assert torch.equal(after[name], last[name]), name


def test_saved_pipeline_holds_the_averages(tmp_path):
    nlp, shim, optimizer, texts = _trained(tmp_path)
    with nlp.use_params(optimizer.averages):
        nlp.to_disk(tmp_path / "saved")
        expected = [doc.cats for doc in nlp.pipe(texts)]
    loaded = spacy.load(tmp_path / "saved")
    loaded_shim = loaded.get_pipe("transformer").model.layers[0].shims[0]
    assert isinstance(loaded_shim, AveragedHFShim)
    for name, value in _weights(loaded_shim).items():
        if (shim.id, name) in optimizer.averages:
            np.testing.assert_array_equal(value.numpy(), optimizer.averages[(shim.id, name)])
    got = [doc.cats for doc in loaded.pipe(texts)]
    for a, b in zip(got, expected):
        assert a == pytest.approx(b, abs=1e-5)


def test_thinc_shim_ignores_the_optimizers_keys(tmp_path):
    """Why the subclass exists: spacy-transformers' own shim keeps the last
    weights under `use_params(optimizer.averages)`. If this starts failing,
    the upstream shim reads the optimizer's keys and the subclass can go."""
    nlp, shim, optimizer, _ = _trained(tmp_path, averaged=False)
    assert type(shim) is HFShim
    last = _weights(shim)
    with nlp.use_params(optimizer.averages):
        inside = _weights(shim)
    assert all(torch.equal(inside[n], last[n]) for n in last)


def test_without_averages_nothing_changes(tmp_path):
    nlp, shim, _, texts = _trained(tmp_path)
    last = _weights(shim)
    with nlp.use_params({}):
        assert all(torch.equal(v, last[n]) for n, v in _weights(shim).items())
