"""Speed settings of `emotion_classifier` (sort_by_length, inference_mode,
torch_threads, quantize, autocast, runtime, fast_path, prefetch): each gives the results of the model as
trained (`SpeedOptions.as_trained()`: float32, the pipeline's own batches),
in order; the defaults are checked the same way.

Tolerances. Float32 settings (length buckets, inference mode, threads) only
change how padding and sums are grouped: probabilities agree to 1e-5. int8
rounds every Linear weight to one of 255 levels of its output channel's
range and quantizes activations per batch; bf16 keeps 8 bits of mantissa (~0.4 %
relative error per operation). On these tiny 2-layer models the measured
differences are ~1e-3 (int8) and ~4e-4 (bf16); we allow 0.02 in any
probability, and require the same label wherever the default's top two are
more than 2 x 0.02 apart (a smaller margin may flip under any rounding).
"""

import warnings

import numpy as np
import pytest
import spacy
import torch
from conftest import TRF_CONFIG, train_tiny
from helpers import classifier
from tiny import ARCHITECTURES, make_backbone, toy_examples

from spacy_emotion.component.pipe import DEFAULT_CONFIG
from spacy_emotion.component.speed import (
    Bf16Linear,
    SpeedOptions,
    TorchRuntime,
    amx_cpu,
    batch_budget,
    length_batches,
    native_bf16_cpu,
)
from spacy_emotion.labels import LABELS

TEXTS = (
    [t for t, _ in toy_examples(4, seed=21)]
    + ["", "i adore you", "   ", "i feel so happy " * 40, "scared"]
    + ["i am " + "very " * n + "angry" for n in (1, 9, 3, 30)]
)
FLOAT32 = 1e-5
LOW_PRECISION = 0.02
AS_TRAINED = SpeedOptions.as_trained().to_dict()
# each is applied on top of AS_TRAINED (a setting alone), except "defaults"
OPTIONS = [
    ({"sort_by_length": True, "batch_tokens": 32}, FLOAT32),
    ({"inference_mode": True}, FLOAT32),
    ({"torch_threads": 1}, FLOAT32),
    ({"fast_path": True}, FLOAT32),
    ({"prefetch": True}, FLOAT32),
    ({"quantize": "int8"}, LOW_PRECISION),
    ({"quantize": "bf16"}, LOW_PRECISION),
    ({"quantize": "bf16-full"}, LOW_PRECISION),
    ({"autocast": "bf16"}, LOW_PRECISION),
    ({"sort_by_length": True, "batch_tokens": 48, "inference_mode": True, "quantize": "int8"}, LOW_PRECISION),
    ({"sort_by_length": True, "batch_tokens": 48, "inference_mode": True, "quantize": "bf16"}, LOW_PRECISION),
    ({"sort_by_length": True, "batch_tokens": 48, "inference_mode": True, "quantize": "bf16-full"}, LOW_PRECISION),
    ("defaults", LOW_PRECISION),
]


def settings(options):
    """The component config of an OPTIONS entry."""
    return {} if options == "defaults" else {**AS_TRAINED, **options}


@pytest.fixture(scope="module")
def learned_pipeline(tiny_bert, toy_corpus, tmp_path_factory):
    """A tiny trf pipeline trained for 80 steps whatever the config's epochs,
    so that its predictions depend on the text (labels to compare)."""
    out = tmp_path_factory.mktemp("learned")
    # a padded-batch budget of its own (not the component's batch_tokens), to see which one runs
    settings = {
        "paths.backbone": str(tiny_bert),
        "training.max_epochs": 0,
        "components.transformer.max_batch_items": PIPELINE_BUDGET,
    }
    return train_tiny(TRF_CONFIG, toy_corpus, out, settings)


PIPELINE_BUDGET = 4096


@pytest.fixture(autouse=True)
def keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def predict(nlp, texts=TEXTS, batch_size=64):
    docs = list(nlp.pipe(texts, batch_size=batch_size))
    assert [d.text for d in docs] == list(texts)  # order preserved
    return np.asarray([[d.cats[k] for k in LABELS] for d in docs]), [d._.emotion for d in docs]


def assert_close(probs, labels, base_probs, base_labels, tol):
    assert np.abs(probs - base_probs).max() <= tol
    top2 = np.sort(base_probs, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * tol
    assert [l for l, c in zip(labels, clear) if c] == [l for l, c in zip(base_labels, clear) if c]


def test_default_config_matches_speed_options():
    for key, value in SpeedOptions().to_dict().items():
        assert DEFAULT_CONFIG[key] == value
    assert SpeedOptions() == SpeedOptions(sort_by_length=True, inference_mode=True, quantize="auto", autocast="none")


def test_as_trained_changes_nothing(learned_pipeline):
    """With as_trained settings the component gives spacy.load's own scores."""
    nlp = classifier(learned_pipeline, **AS_TRAINED)
    predictor = nlp.get_pipe("emotion_classifier").predictor
    assert predictor.options == SpeedOptions.as_trained()
    assert predictor.runtime.linear_format == "none"
    assert predictor.nlp.get_pipe("transformer").cfg["max_batch_items"] == PIPELINE_BUDGET
    inner = spacy.load(learned_pipeline)
    probs, _ = predict(nlp, TEXTS[:8])
    direct = np.asarray([[d.cats[k] for k in LABELS] for d in inner.pipe(TEXTS[:8])])
    assert probs == pytest.approx(direct, abs=1e-6)


@pytest.mark.parametrize("native, expected", [(True, "bf16-full"), (False, "none")])
def test_quantize_auto_follows_the_cpu(learned_pipeline, monkeypatch, native, expected):
    """auto: the whole transformer in bf16 on a CPU with native bf16 (AVX-512
    BF16 or AMX), float32 elsewhere."""
    monkeypatch.setattr("spacy_emotion.component.speed.native_bf16_cpu", lambda: native)
    predictor = classifier(learned_pipeline).get_pipe("emotion_classifier").predictor
    assert predictor.options.quantize == "auto"
    assert predictor.runtime.linear_format == expected
    module = predictor.torch_module()
    assert any(isinstance(m, Bf16Linear) for m in module.modules()) == native
    layer_norms = [m for m in module.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert all(m.weight.dtype == (torch.bfloat16 if native else torch.float32) for m in layer_norms) and layer_norms
    # with autocast set, or on a GPU, auto keeps float32 Linear layers
    assert SpeedOptions(autocast="bf16").linear_format("cpu") == "none"
    assert SpeedOptions().linear_format("cuda") == "none"
    assert SpeedOptions(quantize="int8").linear_format("cpu") == "int8"


def test_cpu_checks_read_torch(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert native_bf16_cpu() is False and amx_cpu() is False
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert native_bf16_cpu() is True and amx_cpu() is False
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert native_bf16_cpu() is True and amx_cpu() is True
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert amx_cpu() is False  # a torch without the check


@pytest.mark.parametrize("shape", [(3, 7, 16), (5, 16), (64, 16), (1, 65, 16)])
def test_bf16_linear_matches_float_linear(shape):
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 24)
    fast = Bf16Linear(layer)
    x = torch.randn(*shape)
    out = fast(x)
    assert out.shape == (*shape[:-1], 24) and out.dtype == torch.float32
    assert torch.allclose(out, layer(x), atol=0.05, rtol=0.02)
    # the rows are padded to a multiple of BF16_ROWS, never mixed: row i depends on input row i only
    single = fast(x.reshape(-1, 16)[:1])
    assert torch.allclose(single[0], out.reshape(-1, 24)[0], atol=1e-5)
    assert not any(p.requires_grad for p in fast.parameters()) and fast.weight.dtype == torch.bfloat16


def test_the_learned_model_is_not_uniform(learned_pipeline):
    """Guard for the comparisons below: they are vacuous on a constant model."""
    probs, labels = predict(classifier(learned_pipeline, **AS_TRAINED))
    assert probs.max() > 0.5 and len(set(labels) - {None}) >= 3


def test_the_hf_checkpoint_is_not_uniform(hf_checkpoint):
    """The same guard for the HF backend's comparisons: its scores differ by text."""
    probs, labels = predict(classifier(hf_checkpoint, **AS_TRAINED))
    scored = probs[[bool(t.strip()) for t in TEXTS]]
    assert np.ptp(scored, axis=0).max() > 0.05 and np.abs(scored - 1 / len(LABELS)).max() > 0.1


@pytest.mark.parametrize(
    "options,tol", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) if isinstance(o, dict) else str(o)
)
def test_spacy_backend_option_keeps_results(learned_pipeline, options, tol):
    base_probs, base_labels = predict(classifier(learned_pipeline, **AS_TRAINED))
    fast = classifier(learned_pipeline, **settings(options))
    for batch_size in (64, 5):
        probs, labels = predict(fast, batch_size=batch_size)
        assert_close(probs, labels, base_probs, base_labels, tol)
    assert fast.get_pipe("emotion_classifier").predictor.options == SpeedOptions(**settings(options))


@pytest.mark.parametrize(
    "options,tol", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) if isinstance(o, dict) else str(o)
)
def test_hf_backend_option_keeps_results(hf_checkpoint, options, tol):
    base_probs, base_labels = predict(classifier(hf_checkpoint, **AS_TRAINED))
    probs, labels = predict(classifier(hf_checkpoint, **settings(options)), batch_size=7)
    assert_close(probs, labels, base_probs, base_labels, tol)


def test_options_are_applied(learned_pipeline, hf_checkpoint):
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

    nlp = classifier(
        learned_pipeline, quantize="int8", inference_mode=True, sort_by_length=True, batch_tokens=100, torch_threads=1
    )
    predictor = nlp.get_pipe("emotion_classifier").predictor
    module = predictor.torch_module()
    assert any(isinstance(m, Int8Linear) for m in module.modules())
    assert not any(type(m) is torch.nn.Linear for m in module.modules())
    assert predictor.nlp.get_pipe("transformer").cfg["max_batch_items"] == 100
    modes, threads = [], []
    handle = module.register_forward_pre_hook(
        lambda m, a: modes.append(torch.is_inference_mode_enabled()) or threads.append(torch.get_num_threads())
    )
    nlp("i feel happy")
    handle.remove()
    assert modes and all(modes)
    assert threads and set(threads) == {1}
    # autocast: the encoder's matmuls run in bf16, its outputs come back as float32
    nlp = classifier(hf_checkpoint, quantize="none", autocast="bf16")
    model = nlp.get_pipe("emotion_classifier").predictor.model
    dtypes = []
    query = model.base_model.encoder.layer[0].attention.self.query
    handles = [
        query.register_forward_hook(lambda m, a, out: dtypes.append(out.dtype)),
        model.base_model.register_forward_hook(lambda m, a, out: dtypes.append(out.last_hidden_state.dtype)),
    ]
    nlp("i feel happy")
    for handle in handles:
        handle.remove()
    assert dtypes == [torch.bfloat16, torch.float32]


@pytest.mark.parametrize("backend", ["spacy", "huggingface"])
def test_bf16_full_runs_the_whole_transformer_in_bf16(learned_pipeline, hf_checkpoint, backend):
    """quantize="bf16-full": every saved float weight of the transformer is bf16
    (Linear layers, embeddings, LayerNorm), the activations between layers are
    bf16, and what leaves the transformer is float32 again; float_weights()
    gives back the exact float32 weights, then bf16 again."""
    model = learned_pipeline if backend == "spacy" else hf_checkpoint
    nlp = classifier(model, quantize="bf16-full")
    predictor = nlp.get_pipe("emotion_classifier").predictor
    module = predictor.runtime.module
    original = classifier(model, **AS_TRAINED).get_pipe("emotion_classifier").predictor
    original = original.runtime.module
    assert predictor.runtime.linear_format == "bf16-full"
    assert any(isinstance(m, Bf16Linear) for m in module.modules())
    floats = {n: t for n, t in module.state_dict().items() if t.is_floating_point()}
    assert floats and all(t.dtype == torch.bfloat16 for t in floats.values())
    dtypes = []
    layer_norm = next(m for m in module.modules() if isinstance(m, torch.nn.LayerNorm))
    handles = [
        layer_norm.register_forward_hook(lambda m, a, out: dtypes.append(out.dtype)),
        module.register_forward_hook(lambda m, a, out: dtypes.append(out.last_hidden_state.dtype)),
    ]
    nlp("i feel happy")
    for handle in handles:
        handle.remove()
    assert dtypes[0] == torch.bfloat16 and dtypes[-1] == torch.float32
    with predictor.runtime.float_weights():
        for name, tensor in original.state_dict().items():
            assert torch.equal(module.state_dict()[name], tensor), name
    assert all(module.state_dict()[n].dtype == torch.bfloat16 for n in floats)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("quantize", ["bf16", "bf16-full"])
def test_bf16_settings_on_every_architecture(arch, quantize, tmp_path):
    """bf16 Linear layers and the all-bf16 transformer run BERT, DistilBERT,
    RoBERTa and ModernBERT (their own attention, embeddings and rotary
    positions in bf16 too) and stay close to float32; saving gives back float32."""
    from spacy_emotion.component.predictors import HFPredictor

    path = make_backbone(tmp_path / arch, arch, num_labels=6, id2label=dict(enumerate(LABELS)))
    expected = HFPredictor(path).predict(TEXTS)
    predictor = HFPredictor(path, options=SpeedOptions(quantize=quantize))
    assert predictor.runtime.linear_format == quantize
    assert np.abs(predictor.predict(TEXTS) - expected).max() <= LOW_PRECISION
    predictor.to_disk(tmp_path / "saved")
    assert np.abs(HFPredictor(tmp_path / "saved").predict(TEXTS) - expected).max() <= FLOAT32


def test_torch_threads_apply_to_the_components_own_calls_only(learned_pipeline):
    """torch's thread count is the process's: a component with torch_threads sets it for its model
    calls and puts it back, so another component (and other torch code) keeps its own."""
    torch.set_num_threads(2)
    one = classifier(learned_pipeline, torch_threads=1)
    default = classifier(learned_pipeline)
    seen = {}
    for name, nlp in (("one", one), ("default", default)):
        module = nlp.get_pipe("emotion_classifier").predictor.torch_module()
        module.register_forward_pre_hook(
            lambda m, a, name=name: seen.setdefault(name, set()).add(torch.get_num_threads())
        )
    for _ in range(2):
        one("i feel happy")
        assert torch.get_num_threads() == 2
        default("i feel sad")
    assert seen == {"one": {1}, "default": {2}}


def test_sort_by_length_restores_order_across_many_buckets(learned_pipeline, hf_checkpoint):
    texts = [("i feel happy " * (n % 7 + 1)) + str(n) for n in range(40)][::-1]
    for model in (learned_pipeline, hf_checkpoint):
        default = classifier(model, **AS_TRAINED)
        expected = np.asarray([[default(t).cats[k] for k in LABELS] for t in texts])
        probs, _ = predict(
            classifier(model, **{**AS_TRAINED, "sort_by_length": True, "batch_tokens": 20}), texts, batch_size=40
        )
        assert probs == pytest.approx(expected, abs=FLOAT32)


def test_length_batches():
    lengths = [5, 1, 9, 3, 3, 40, 2, 8]
    batches = length_batches(lengths, budget=12)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)
    for batch in batches:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 12
    assert length_batches([], 10) == []


@pytest.mark.parametrize("quantize", ["int8", "bf16", "bf16-full"])
def test_quantized_pipeline_saves_float_weights(learned_pipeline, tmp_path, quantize):
    fast = classifier(learned_pipeline, quantize=quantize, sort_by_length=True, batch_tokens=64)
    quantized_probs, _ = predict(fast)
    fast.to_disk(tmp_path / "saved")
    # the saved model is the float one: loaded as trained it predicts like the original
    plain = spacy.load(tmp_path / "saved", config={"components": {"emotion_classifier": {**AS_TRAINED}}})
    assert plain.get_pipe("emotion_classifier").predictor.options == SpeedOptions.as_trained()
    assert (
        plain.get_pipe("emotion_classifier").predictor.nlp.get_pipe("transformer").cfg["max_batch_items"]
        == PIPELINE_BUDGET
    )
    base_probs, _ = predict(classifier(learned_pipeline, **AS_TRAINED))
    assert predict(plain)[0] == pytest.approx(base_probs, abs=1e-6)
    # loaded as saved, it runs quantized again
    again = spacy.load(tmp_path / "saved")
    assert again.get_pipe("emotion_classifier").predictor.options.quantize == quantize
    assert predict(again)[0] == pytest.approx(quantized_probs, abs=1e-6)
    # and the quantized pipeline itself still works after saving
    assert predict(fast)[0] == pytest.approx(quantized_probs, abs=1e-6)


@pytest.mark.parametrize(
    "bad",
    [
        {"quantize": "int4"},
        {"autocast": "fp8"},
        {"quantize": "int8", "autocast": "bf16"},
        {"quantize": "bf16", "autocast": "fp16"},
        {"quantize": "bf16-full", "autocast": "bf16"},
        {"torch_threads": -1},
        {"batch_tokens": 0},
        {"batch_tokens": "many"},
        {"batch_tokens": 1.5},
    ],
)
def test_bad_settings_are_clear_errors(bad):
    with pytest.raises(ValueError, match="|".join(bad)):
        classifier("en_emotion_does_not_exist", **bad)


def test_no_torch_model_warns_and_ignores():
    with pytest.warns(UserWarning, match="no transformer"):
        runtime = TorchRuntime(None, SpeedOptions(quantize="int8"))
    with runtime.running(), runtime.float_weights():
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TorchRuntime(None, SpeedOptions(inference_mode=True))


@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_length_buckets_pad_only_bf16_batches(learned_pipeline, quantize):
    """Float32 and int8 batches are not padded past their longest text (the
    padded wordpieces would cost their full compute)."""
    nlp = classifier(learned_pipeline, **{**AS_TRAINED, "sort_by_length": True, "quantize": quantize})
    predictor = nlp.get_pipe("emotion_classifier").predictor
    assert predictor.runtime.linear_format == quantize
    tokenizer = predictor.nlp.get_pipe("transformer").model.tokenizer
    assert getattr(type(tokenizer), "_pad_multiple", None) is None
    assert len(tokenizer(["i"], padding="longest")["input_ids"][0]) == 3  # [CLS] i [SEP]
    float_model = classifier(learned_pipeline, **AS_TRAINED).get_pipe("emotion_classifier").predictor.torch_module()
    budget = SpeedOptions().batch_budget(float_model)  # the default, "auto", from the float weights
    assert DEFAULT_CONFIG["batch_tokens"] == "auto" and budget > 512  # a tiny model: larger buckets
    assert predictor.nlp.get_pipe("transformer").cfg["max_batch_items"] == budget


@pytest.mark.parametrize("quantize", ["bf16", "bf16-full"])
def test_length_buckets_pad_wordpieces_to_a_multiple(learned_pipeline, tmp_path, quantize):
    """With sort_by_length and bf16 Linear layers the pipeline's tokenizer pads
    batches to a multiple of WORDPIECE_MULTIPLE (spacy-transformers still sees a
    fast tokenizer, for offsets); saving writes the tokenizer unchanged, and
    as_trained leaves it alone."""
    from transformers import PreTrainedTokenizerFast

    from spacy_emotion.component.predictors import WORDPIECE_MULTIPLE

    nlp = classifier(learned_pipeline, **{**AS_TRAINED, "sort_by_length": True, "quantize": quantize})
    predictor = nlp.get_pipe("emotion_classifier").predictor
    tokenizer = predictor.nlp.get_pipe("transformer").model.tokenizer
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    lengths = [
        len(tokenizer(texts, padding="longest")["input_ids"][0])
        for texts in (["i"], ["i am " + "very " * 20 + "sad", "ok"])
    ]
    assert lengths == [WORDPIECE_MULTIPLE, 2 * WORDPIECE_MULTIPLE]  # 3 and 25 wordpieces, padded
    # saving goes through the plain tokenizer class; the padding comes back afterwards
    nlp.to_disk(tmp_path / "saved")
    assert type(tokenizer) is predictor.nlp.get_pipe("transformer").model.tokenizer.__class__
    assert getattr(type(tokenizer), "_pad_multiple", None) == WORDPIECE_MULTIPLE
    plain = spacy.load(tmp_path / "saved", config={"components": {"emotion_classifier": {**AS_TRAINED}}})
    inner = plain.get_pipe("emotion_classifier").predictor.nlp.get_pipe("transformer").model.tokenizer
    assert getattr(type(inner), "_pad_multiple", None) is None
    assert len(inner(["i"], padding="longest")["input_ids"][0]) == 3  # [CLS] i [SEP]


def test_auto_batch_tokens_grow_only_for_cheap_models():
    """batch_tokens "auto" (`batch_budget`): 512 padded tokens, raised for a
    model whose bucket of 512 would cost under 1 GFLOP on a CPU; a number is
    kept as given."""
    from transformers import BertConfig, BertModel

    tiny = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    minilm_shape = BertModel(
        BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536, vocab_size=99)
    )
    assert SpeedOptions().batch_budget(tiny) > 10 * 512
    assert SpeedOptions().batch_budget(minilm_shape) == 512
    assert 40 < batch_budget(minilm_shape, 40) < 60  # 1 GFLOP / (2 x some 10.7M weights)
    assert SpeedOptions(batch_tokens=24).batch_budget(tiny) == 24
    assert SpeedOptions(batch_tokens="24").batch_tokens == 24  # a number from a config string
    assert SpeedOptions().batch_budget(None) == 512
