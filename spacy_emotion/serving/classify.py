"""The one way front ends (CLI, REST, batch jobs, benchmarks) classify text.

Each builds a pipeline with :func:`build_pipeline` and turns docs into plain
dicts with :func:`doc_result`, so label order, thresholds, batching and
sentence handling live in `emotion_classifier` alone.
"""

from typing import Any, Dict, Iterable, Iterator, List, Optional

import spacy
from spacy.language import Language
from spacy.tokens import Doc

from ..labels import LABELS

COMPONENT = "emotion_classifier"


def build_pipeline(
    model: str = "en_emotion_trf",
    *,
    threshold: float = 0.0,
    per_sentence: bool = False,
    gpu_id: int = -1,
    lang: str = "en",
    speed: Optional[Dict[str, Any]] = None,
) -> Language:
    """A blank pipeline with a sentencizer and `emotion_classifier`, model loaded.

    model (str): package name or directory (see EmotionClassifier).
    gpu_id (int): GPU to run on; -1 for the CPU.
    speed (Optional[Dict[str, Any]]): speed settings of the component
        (`runtime`, `quantize`, ...; see speed.SpeedOptions); None: its defaults.
    RETURNS (Language): the pipeline.
    """
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.blank(lang)
    nlp.add_pipe("sentencizer")
    nlp.add_pipe(
        COMPONENT, config={"model": model, "threshold": threshold, "per_sentence": per_sentence, **(speed or {})}
    )
    nlp.get_pipe(COMPONENT).initialize()  # load the model now, not on the first text
    nlp.max_length = 10**8
    return nlp


def doc_result(doc: Doc, *, sentences: bool = False, prefix: str = "") -> Dict[str, Any]:
    """A JSON-ready dict of a doc's emotion: emotion, score, the six probabilities.

    sentences (bool): add "sentences": per sentence text, character offsets,
        emotion, score and probabilities (the doc must have been annotated
        per sentence).
    """
    result: Dict[str, Any] = {
        "emotion": doc._.emotion,
        "score": doc._.emotion_score,
        "cats": {label: doc.cats[prefix + label] for label in LABELS},
    }
    if sentences:
        result["sentences"] = [
            {
                "text": sent.text,
                "start_char": sent.start_char,
                "end_char": sent.end_char,
                "emotion": sent._.emotion,
                "score": sent._.emotion_score,
                "cats": sent._.emotion_cats,
            }
            for sent in (doc.sents if len(doc) else [])
        ]
    return result


def classify(
    nlp: Language, texts: Iterable[str], *, batch_size: int = 64, sentences: Optional[bool] = None
) -> Iterator[Dict[str, Any]]:
    """Classify texts in batches; yields one `doc_result` per text, in order.

    sentences (Optional[bool]): per-sentence results for this call; None
        follows the component's per_sentence setting.
    """
    cfg = {COMPONENT: {"per_sentence": sentences}} if sentences is not None else {}
    prefix = nlp.get_pipe(COMPONENT).cfg["cats_prefix"]
    with_sents = nlp.get_pipe(COMPONENT).cfg["per_sentence"] if sentences is None else sentences
    for doc in nlp.pipe(texts, batch_size=batch_size, component_cfg=cfg):
        yield doc_result(doc, sentences=with_sents, prefix=prefix)


def classify_one(nlp: Language, text: str, *, sentences: Optional[bool] = None) -> Dict[str, Any]:
    """`classify` for a single text."""
    return next(classify(nlp, [text], batch_size=1, sentences=sentences))


def model_info(nlp: Language) -> Dict[str, Any]:
    """What a front end reports about the loaded model (e.g. `GET /health`).

    RETURNS (Dict[str, Any]): "model" (the component's model setting),
        "backend" ("spacy" or "huggingface"), "model_version" (the trained
        pipeline's meta version, None for other backends), "threshold",
        "per_sentence", "labels" (in LABELS order), "runtime" ("torch" or
        "onnx"), "linear_layers" (the Linear layers' format as it runs:
        "none" = float32, "int8", "bf16" or "bf16-full") and "fast_path"
        (whether a trained pipeline runs through its batched fast path;
        False for the HF backend, which has none).
    """
    pipe = nlp.get_pipe(COMPONENT)
    predictor = pipe.predictor
    inner = getattr(predictor, "nlp", None)
    return {
        "model": pipe.cfg["model"],
        "backend": predictor.kind,
        "model_version": inner.meta.get("version") if inner is not None else None,
        "threshold": pipe.cfg["threshold"],
        "per_sentence": pipe.cfg["per_sentence"],
        "labels": list(LABELS),
        "runtime": pipe.cfg["runtime"],
        "linear_layers": predictor.runtime.linear_format,
        "fast_path": getattr(predictor, "fast_path", None) is not None,
    }


def set_cpu_threads(n: int) -> None:
    """Threads PyTorch may use for one model call on the CPU, in this thread and
    threads started after it (`torch.set_num_threads`); 0 leaves the default.

    torch's default is one thread per core. On a small or busy machine (other
    processes on the same cores) its threads wait on each other, and a call
    on one short text can take much longer than with 1 thread; measure
    (benchmarks/load_test.py) before choosing.
    """
    if n > 0:
        import torch

        torch.set_num_threads(n)


__all__: List[str] = [
    "build_pipeline",
    "doc_result",
    "classify",
    "classify_one",
    "model_info",
    "set_cpu_threads",
    "COMPONENT",
]
