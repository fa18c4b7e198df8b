"""runtime="onnx": ONNX Runtime runs the transformer in place of torch.

The export must give the torch model's outputs for other batch sizes and
lengths than the example it was traced on, with padding, for every
architecture we train (BERT, DistilBERT, RoBERTa, ModernBERT); the component
must give the as-trained probabilities; saving must write the torch weights.
Float32 tolerance: ONNX Runtime fuses and reorders sums (measured ~1e-6 on
these tiny models); int8: see test_speed_options.
"""

import builtins

import numpy as np
import pytest
import spacy
import torch
from helpers import classifier
from tiny import ARCHITECTURES, make_backbone, toy_examples

from spacy_emotion.component import onnx_runtime
from spacy_emotion.component.predictors import HFPredictor, SpacyPredictor
from spacy_emotion.component.speed import SpeedOptions
from spacy_emotion.labels import LABELS

pytest.importorskip("onnxruntime")

FLOAT32 = 1e-4
LOW_PRECISION = 0.02
TEXTS = [t for t, _ in toy_examples(3, seed=5)] + [
    "",
    "i adore you",
    "i feel so happy " * 40,
    "scared",
    "i am " + "very " * 30 + "angry",
]
AS_TRAINED = SpeedOptions.as_trained().to_dict()


def batch_of(tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return {k: v for k, v in enc.items() if k in onnx_runtime.MODEL_INPUTS}


@pytest.fixture(scope="module", params=ARCHITECTURES)
def encoder(request, tmp_path_factory):
    from transformers import AutoModel, AutoTokenizer

    path = make_backbone(tmp_path_factory.mktemp(request.param) / "model", request.param)
    return AutoModel.from_pretrained(str(path)).eval(), AutoTokenizer.from_pretrained(str(path))


@pytest.mark.parametrize("int8", [False, True])
def test_onnx_forward_matches_torch(encoder, int8):
    model, tokenizer = encoder
    texts = ["i feel so happy", "a much longer text " * 9, "x", "am i scared or am i angry now"]
    batch = batch_of(tokenizer, texts)
    with torch.no_grad():
        expected = model(**batch)
    onnx_runtime.attach(model, tokenizer.model_input_names, int8=int8)
    try:
        assert isinstance(model.forward, onnx_runtime.OnnxForward)
        got = model(**batch)
        assert type(got) is type(expected)
        assert list(got.keys()) == [k for k, v in expected.items() if isinstance(v, torch.Tensor)]
        mask = batch["attention_mask"].bool()
        diff = (got.last_hidden_state - expected.last_hidden_state)[mask].abs().max().item()
        assert diff < (0.05 if int8 else FLOAT32), diff
        # one text alone (batch 1, no padding) gives the same rows as inside the batch
        one = model(**batch_of(tokenizer, texts[2:3])).last_hidden_state[0]
        n = int(mask[2].sum())
        assert np.allclose(one[:n].numpy(), got.last_hidden_state[2, :n].numpy(), atol=FLOAT32 if not int8 else 0.05)
    finally:
        onnx_runtime.detach(model)
    assert "forward" not in model.__dict__
    with torch.no_grad():
        again = model(**batch)
    assert torch.equal(again.last_hidden_state, expected.last_hidden_state)


def probs(nlp, texts):
    return np.asarray([[doc.cats[label] for label in LABELS] for doc in nlp.pipe(texts, batch_size=8)])


@pytest.fixture(scope="module")
def as_trained(trained_pipeline):
    return probs(classifier(trained_pipeline, **AS_TRAINED), TEXTS)


@pytest.mark.parametrize(
    "settings,tolerance",
    [
        ({**AS_TRAINED, "runtime": "onnx"}, FLOAT32),
        ({"runtime": "onnx"}, FLOAT32),  # the other defaults: length buckets, inference mode, "auto" = float32
        ({"runtime": "onnx", "quantize": "int8", "torch_threads": 1}, LOW_PRECISION),
    ],
)
def test_component_onnx_gives_as_trained_probabilities(trained_pipeline, as_trained, settings, tolerance):
    nlp = classifier(trained_pipeline, **settings)
    got = probs(nlp, TEXTS)
    predictor = nlp.get_pipe("emotion_classifier").predictor
    forward = predictor.torch_module().forward
    assert isinstance(forward, onnx_runtime.OnnxForward)
    assert forward.int8 == (settings.get("quantize") == "int8")
    assert np.abs(got - as_trained).max() < tolerance
    assert np.allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(got[TEXTS.index("")], 1 / 6)


def test_component_onnx_saves_the_torch_weights(trained_pipeline, as_trained, tmp_path):
    nlp = classifier(trained_pipeline, runtime="onnx", quantize="int8")
    nlp.get_pipe("emotion_classifier").predictor  # load now
    nlp.to_disk(tmp_path / "saved")
    # the saved pipeline, loaded as trained in torch, is the original model
    reloaded = SpacyPredictor.from_disk(tmp_path / "saved" / "emotion_classifier" / "model")
    assert not isinstance(reloaded.torch_module().__dict__.get("forward"), onnx_runtime.OnnxForward)
    assert np.abs(reloaded.predict(TEXTS) - as_trained).max() < 1e-5
    # and with its own config (runtime onnx) it runs through ONNX Runtime again
    again = spacy.load(tmp_path / "saved")
    assert again.get_pipe("emotion_classifier").cfg["runtime"] == "onnx"
    assert isinstance(again.get_pipe("emotion_classifier").predictor.torch_module().forward, onnx_runtime.OnnxForward)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_hf_checkpoint_onnx(arch, tmp_path):
    path = make_backbone(tmp_path / arch, arch, num_labels=6, id2label=dict(enumerate(LABELS)))
    expected = HFPredictor(path).predict(TEXTS)
    predictor = HFPredictor(path, options=SpeedOptions(runtime="onnx"))
    assert isinstance(predictor.model.base_model.forward, onnx_runtime.OnnxForward)
    assert np.abs(predictor.predict(TEXTS) - expected).max() < FLOAT32


@pytest.mark.parametrize(
    "settings",
    [
        {"runtime": "onnx", "quantize": "bf16"},
        {"runtime": "onnx", "quantize": "bf16-full"},
        {"runtime": "onnx", "quantize": "none", "autocast": "bf16"},
        {"runtime": "tensorrt"},
    ],
)
def test_onnx_bad_combinations(settings):
    with pytest.raises(ValueError, match="runtime"):
        SpeedOptions(**settings)


def test_auto_means_float32_with_onnx():
    assert SpeedOptions(runtime="onnx").linear_format("cpu") == "none"
    assert SpeedOptions(runtime="onnx", quantize="int8").linear_format("cpu") == "int8"


def test_missing_onnxruntime_says_what_to_install(monkeypatch, encoder):
    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name.split(".")[0] == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    model, tokenizer = encoder
    with pytest.raises(ImportError, match=r"spacy-emotion\[onnx\]"):
        onnx_runtime.attach(model, tokenizer.model_input_names)
    assert "forward" not in model.__dict__


def test_export_failure_is_a_clear_error(monkeypatch, encoder):
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.onnx, "export", broken)
    model, tokenizer = encoder
    with pytest.raises(ValueError, match='could not be exported.*runtime="torch"'):
        onnx_runtime.attach(model, tokenizer.model_input_names)
    assert "forward" not in model.__dict__
    assert not model.training
