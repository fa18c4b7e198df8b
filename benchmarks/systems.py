"""The systems the benchmark compares, and how each one is loaded.

  A-component  `nlp.pipe` through `emotion_classifier` in a blank pipeline
  A-pipeline   the trained pipeline itself, `spacy.load` + `nlp.pipe`
  A-hf         `emotion_classifier` over B's exported checkpoint
  B            AutoModelForSequenceClassification, batch 64, dynamic padding
  C-default    transformers.pipeline("text-classification"), batch size 1
  C-batch64    the same with batch_size=64

and the speed settings of `emotion_classifier` measured as variants of
A-component. Only A's runners import spaCy: B's and C's processes load what a
plain Transformers user loads.
"""

from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from benchmarks.measure import batches

# = spacy_emotion.labels.LABELS (a test checks it). Not imported from there:
# importing spacy_emotion imports spaCy, and B's and C's processes must load
# only what a plain Transformers user loads (it shows in their peak RSS).
LABELS = ("sadness", "joy", "love", "anger", "fear", "surprise")

SYSTEMS: Dict[str, str] = {
    "A-component": "spacy-emotion: nlp.pipe through emotion_classifier in a blank pipeline",
    "A-pipeline": "spacy-emotion: the trained pipeline loaded with spacy.load, nlp.pipe",
    "A-hf": "spacy-emotion: emotion_classifier over B's exported HF checkpoint (its HF backend)",
    "B": "Transformers: AutoModelForSequenceClassification, batch 64, dynamic padding, inference_mode",
    "C-default": 'Transformers: pipeline("text-classification"), defaults (batch size 1)',
    "C-batch64": 'Transformers: pipeline("text-classification", batch_size=64)',
}
DEFAULT_SYSTEMS = "A-component,A-pipeline,B,C-batch64,C-default"

# Speed settings of emotion_classifier measured as variants of A-component:
# changes to the component's defaults (sort_by_length, inference_mode, the
# batched fast path and quantize "auto": the whole transformer in bf16 on an
# AMX CPU, bf16 Linear layers on another CPU with native bf16). "as-trained"
# runs the model exactly as trained (float32, the pipeline's own batches,
# nlp.pipe, no prefetch thread); the accuracy change and label agreement of every setting are
# against it.
VARIANTS: Dict[str, Dict[str, Any]] = {
    "as-trained": {
        "sort_by_length": False,
        "inference_mode": False,
        "quantize": "none",
        "fast_path": False,
        "prefetch": False,
    },
    "default": {},
    "no-fast-path": {"fast_path": False},
    "batch-tokens-4096": {"batch_tokens": 4096},  # GPUs: fewer, larger batches
    "float32": {"quantize": "none"},
    "no-sort": {"sort_by_length": False},
    "no-inference-mode": {"inference_mode": False},
    "threads1": {"torch_threads": 1},
    "bf16": {"quantize": "bf16"},
    "bf16-full": {"quantize": "bf16-full"},
    "int8": {"quantize": "int8"},
    "autocast-bf16": {"quantize": "none", "autocast": "bf16"},
    "autocast-fp16": {"quantize": "none", "autocast": "fp16"},
    "onnx": {"runtime": "onnx"},
    "onnx-int8": {"runtime": "onnx", "quantize": "int8"},
}
REFERENCE_VARIANT = "as-trained"
DEFAULT_VARIANTS = (
    "as-trained,default,no-fast-path,float32,no-sort,no-inference-mode,threads1,"
    "int8,bf16,bf16-full,autocast-bf16,onnx,onnx-int8"
)
GPU_VARIANTS = "as-trained,default,no-fast-path,batch-tokens-4096,bf16-full,autocast-bf16,autocast-fp16"
MAX_ACCURACY_LOSS = 0.5  # points of test accuracy a speed setting may cost


def read_split(data: Path, limit: int = 0, name: str = "test") -> Tuple[List[str], List[str]]:
    """Texts and gold labels of a split ("test" by default) in a dataset folder."""
    from spacy_emotion.training.dataset import find_split_file, read_file

    split = read_file(find_split_file(Path(data), name), name=name)
    examples = split.examples[:limit] if limit else split.examples
    return [e.text for e in examples], [e.label for e in examples]


# B's checkpoint, exported from the trained pipeline


def export_hf_checkpoint(model_dir: Path, out: Path) -> Dict[str, Any]:
    """Write the trained pipeline's backbone as an AutoModelForSequenceClassification.

    The encoder weights are copied 1:1 from the transformer component. The
    head is the architecture's own; the textcat's output layer (W: 6 x hidden,
    b: 6) goes into the head's last Linear when the shapes match.
    RETURNS (Dict[str, Any]): "path", "architecture", "head" (in words),
        "head_from_textcat" (bool), "backbone_params".
    """
    import copy

    import spacy
    import torch
    from transformers import AutoModelForSequenceClassification

    nlp = spacy.load(model_dir)
    factories = {name: nlp.get_pipe_meta(name).factory for name in nlp.pipe_names}
    trf_name = next((n for n, f in factories.items() if f == "transformer"), None)
    tc_name = next((n for n, f in factories.items() if f == "textcat"), None)
    if trf_name is None or tc_name is None:
        raise SystemExit(
            f"{model_dir}: B needs a transformer + textcat pipeline (configs/trf.cfg), got {nlp.pipe_names}"
        )
    trf = nlp.get_pipe(trf_name)
    encoder = trf.model.layers[0].shims[0]._model
    tokenizer = trf.model.tokenizer
    labels = list(nlp.get_pipe(tc_name).labels)
    config = copy.deepcopy(encoder.config)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.architectures = None
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    missing, unexpected = model.base_model.load_state_dict(encoder.state_dict(), strict=False)
    if unexpected or [k for k in missing if "pooler" not in k]:
        raise SystemExit(f"Exporting the encoder failed: missing {missing}, unexpected {unexpected}")
    head = [
        (n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m.out_features == len(labels)
    ]
    softmax = [node for node in nlp.get_pipe(tc_name).model.walk() if node.name == "softmax" and node.has_param("W")]
    copied = False
    if head and softmax:
        W, b = softmax[0].get_param("W"), softmax[0].get_param("b")
        layer = head[-1][1]
        if tuple(W.shape) == tuple(layer.weight.shape):
            with torch.no_grad():
                layer.weight.copy_(torch.as_tensor(W))
                layer.bias.copy_(torch.as_tensor(b))
            copied = True
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    head_modules = sorted(
        {n.split(".")[0] for n, _ in model.named_modules() if n and not n.startswith(model.base_model_prefix)}
    )
    pooler = getattr(model.base_model, "pooler", None) is not None and not missing
    head_words = (
        f"{type(model).__name__}: encoder = the pipeline's transformer weights, 1:1"
        + (" (with the backbone's [CLS] pooler)" if pooler else "")
        + f"; head = the architecture's own ({', '.join(head_modules)}), "
        + (
            "its last Linear holding the textcat's output weights (trained on token vectors pooled by the "
            "textcat, not on this input)"
            if copied
            else "randomly initialised (seed 0)"
        )
        + ". Speed only: its labels are not a trained model's."
    )
    return {
        "path": str(out),
        "architecture": type(model).__name__,
        "head": head_words,
        "head_from_textcat": copied,
        "backbone_params": sum(p.numel() for p in model.base_model.parameters()),
    }


class Runner:
    """One loaded system. `run` classifies a list, `stream` an iterator, `one`
    a single text; all return label names."""

    def run(self, texts: List[str]) -> List[str]:
        return list(self.stream(iter(texts)))

    def stream(self, texts: Iterator[str]) -> Iterator[str]:
        raise NotImplementedError

    def one(self, text: str) -> str:
        return self.run([text])[0]


class SpacyRunner(Runner):
    """A: a spaCy pipeline whose docs get `doc.cats` with the six emotions.

    module: the torch module of its transformer (spacy-transformers' HF
    model, or the encoder of the component's HF checkpoint), for `time_split`."""

    def __init__(self, nlp, batch_size: int, module=None) -> None:
        self.nlp = nlp
        self.batch_size = batch_size
        self.module = module
        self.linear_format: Optional[str] = None

    def stream(self, texts: Iterator[str]) -> Iterator[str]:
        for doc in self.nlp.pipe(texts, batch_size=self.batch_size):
            yield max(LABELS, key=doc.cats.__getitem__)

    def one(self, text: str) -> str:
        doc = self.nlp(text)
        return max(LABELS, key=doc.cats.__getitem__)


class HFRunner(Runner):
    """B: AutoModelForSequenceClassification; batches in input order, padded to
    their longest text (dynamic padding), under torch.inference_mode."""

    def __init__(self, path: str, batch_size: int, device: str) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from spacy_emotion.safe_loading import NO_REMOTE_CODE, model_kwargs

        self.tokenizer = AutoTokenizer.from_pretrained(path, **NO_REMOTE_CODE)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, **model_kwargs()).eval().to(device)
        self.names = [self.model.config.id2label[i].lower() for i in range(self.model.config.num_labels)]
        self.batch_size = batch_size
        self.device = device

    def _predict(self, batch: List[str]) -> List[str]:
        import torch

        enc = self.tokenizer(batch, padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(**{k: v.to(self.device) for k, v in enc.items()}).logits
        return [self.names[i] for i in logits.argmax(-1).tolist()]

    def stream(self, texts: Iterator[str]) -> Iterator[str]:
        for batch in batches(texts, self.batch_size):
            yield from self._predict(batch)

    def one(self, text: str) -> str:
        return self._predict([text])[0]


class PipelineRunner(Runner):
    """C: transformers.pipeline("text-classification"), batch_size None = its default (1)."""

    def __init__(self, path: str, batch_size: Optional[int], device: str) -> None:
        from transformers import pipeline

        self.pipe = pipeline(
            "text-classification",
            model=path,
            tokenizer=path,
            device=0 if device == "cuda" else -1,
            trust_remote_code=False,
            model_kwargs={"use_safetensors": True},
        )
        self.kwargs = {} if batch_size is None else {"batch_size": batch_size}

    @staticmethod
    def _label(out: Any) -> str:
        return (out[0] if isinstance(out, list) else out)["label"].lower()

    def run(self, texts: List[str]) -> List[str]:
        return [self._label(o) for o in self.pipe(texts, **self.kwargs)]

    def stream(self, texts: Iterator[str]) -> Iterator[str]:
        for out in self.pipe(texts, **self.kwargs):
            yield self._label(out)

    def one(self, text: str) -> str:
        return self._label(self.pipe(text))


def import_libraries(system: str) -> None:
    """Import what a system needs, so that its load time is the model's alone."""
    import torch  # noqa: F401

    if system.startswith("A-"):
        import spacy  # noqa: F401
        import spacy_transformers  # noqa: F401

        import spacy_emotion  # noqa: F401
    elif system.startswith("C-"):
        from transformers import pipeline  # noqa: F401
    else:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: F401


def load_runner(job: Dict[str, Any]) -> Runner:
    """Load the system of an inference job (A's alone import spaCy)."""
    system, bs, device = job["system"], job["batch_size"], job["device"]
    if system.startswith("A-"):
        import spacy

        if device == "cuda":
            spacy.require_gpu(0)
    if system in ("A-component", "A-hf"):
        nlp = spacy.blank("en")
        model = job["model"] if system == "A-component" else job["export"]
        nlp.add_pipe("emotion_classifier", config={"model": model, **job.get("options", {})})
        component = nlp.get_pipe("emotion_classifier")
        component.initialize()
        nlp.max_length = 10**8
        predictor = component.predictor
        runner = SpacyRunner(nlp, bs, predictor.runtime.module)  # the transformer the speed settings apply to
        linear = predictor.runtime.linear_format  # quantize "auto" resolved
        runner.linear_format = f"{linear} (ONNX Runtime)" if component.speed_options.runtime == "onnx" else linear
        return runner
    if system == "A-pipeline":
        nlp = spacy.load(job["model"])
        return SpacyRunner(nlp, bs, nlp.get_pipe("transformer").model.transformer)
    if system == "B":
        return HFRunner(job["export"], bs, device)
    if system == "C-default":
        return PipelineRunner(job["export"], None, device)
    if system == "C-batch64":
        return PipelineRunner(job["export"], bs, device)
    raise SystemExit(f"Unknown system {system!r}: one of {', '.join(SYSTEMS)}")
