"""The GPU paths: training through configs/trf.cfg with a GPU id, and the
component on the GPU. Skipped where torch sees no CUDA device (see conftest);
run on a GPU machine with `pytest -m gpu`."""

import pytest
import spacy
from conftest import TRF_CONFIG, train_tiny
from tiny import toy_examples

from spacy_emotion.labels import LABELS

pytestmark = pytest.mark.gpu

TEXTS = [t for t, _ in toy_examples(4, seed=3)]


@pytest.fixture(scope="module")
def gpu():
    from thinc.api import require_cpu, require_gpu

    require_gpu(0)
    yield 0
    require_cpu()


@pytest.mark.parametrize("mixed_precision", [False, True])
def test_trf_config_trains_on_gpu(gpu, mixed_precision, tiny_bert, toy_corpus, tmp_path):
    import cupy
    import torch

    best = train_tiny(
        TRF_CONFIG,
        toy_corpus,
        tmp_path,
        {
            "paths.backbone": str(tiny_bert),
            "components.transformer.model.mixed_precision": mixed_precision,
        },
        use_gpu=gpu,
    )
    nlp = spacy.load(best)
    hf_model = nlp.get_pipe("transformer").model.transformer
    assert next(hf_model.parameters()).device.type == "cuda"
    doc = nlp(TEXTS[0])
    assert set(doc.cats) == set(LABELS)
    assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-4)
    head = [node for node in nlp.get_pipe("textcat").model.walk() if node.has_param("W")]
    assert head and all(isinstance(node.get_param("W"), cupy.ndarray) for node in head)
    assert torch.cuda.max_memory_allocated() > 0


@pytest.mark.parametrize("autocast", ["none", "bf16", "fp16"])
def test_component_on_gpu_matches_cpu(gpu, trained_pipeline, autocast):
    """emotion_classifier on the GPU gives the CPU's labels (fp32) or nearly its scores (autocast)."""
    from thinc.api import require_cpu, require_gpu

    from spacy_emotion.component.speed import SpeedOptions

    require_cpu()
    cpu = spacy.blank("en")
    cpu.add_pipe("emotion_classifier", config={"model": str(trained_pipeline), **SpeedOptions.as_trained().to_dict()})
    expected = [doc.cats for doc in cpu.pipe(TEXTS)]
    require_gpu(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("emotion_classifier", config={"model": str(trained_pipeline), "autocast": autocast})
    # quantize "auto" keeps float32 Linear layers on a GPU: autocast alone sets the precision
    assert nlp.get_pipe("emotion_classifier").predictor.runtime.linear_format == "none"
    assert nlp.get_pipe("emotion_classifier").predictor.fast_path is not None  # the default: batched on the GPU too
    got = [doc.cats for doc in nlp.pipe(TEXTS)]
    tolerance = 1e-4 if autocast == "none" else 0.05
    for want, have in zip(expected, got):
        assert have == pytest.approx(want, abs=tolerance)
        assert all(isinstance(v, float) for v in have.values())


def test_fast_path_on_gpu_gives_the_scores_of_nlp_pipe(gpu, trained_pipeline):
    """The batched fast path (cupy arrays, one alignment and softmax per batch)
    against nlp.pipe, both on the GPU, on texts of every kind."""
    import numpy as np

    from spacy_emotion.component.predictors import from_directory
    from spacy_emotion.component.speed import SpeedOptions

    texts = TEXTS + ["", "\u200b", "i feel \u200b happy", "i feel so happy today and " * 60]
    fast = from_directory(trained_pipeline, SpeedOptions.as_trained(fast_path=True))
    assert fast.fast_path is not None
    reference = from_directory(trained_pipeline, SpeedOptions.as_trained())
    assert np.abs(fast.predict(texts) - reference.predict(texts)).max() <= 1e-5


def test_hf_checkpoint_on_gpu(gpu, hf_checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("emotion_classifier", config={"model": str(hf_checkpoint)})
    docs = list(nlp.pipe(TEXTS + [""]))
    assert all(sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-4) for doc in docs)
    predictor = nlp.get_pipe("emotion_classifier").predictor
    assert next(predictor.model.parameters()).device.type == "cuda"
