"""spacy-emotion side by side with plain Transformers: same weights, texts, machine.

One run measures, each system in its own fresh subprocess (so that load time
and peak RSS are its own), on the test texts and on an N-text stream (the test
texts repeated and shuffled):

  A-component  `nlp.pipe` through `emotion_classifier` in a blank pipeline
  A-pipeline   the trained pipeline itself, `spacy.load` + `nlp.pipe`
  A-hf         (optional) `emotion_classifier` over B's exported checkpoint
  B            AutoModelForSequenceClassification with the same backbone
               weights, batch 64, dynamic padding, torch.inference_mode
  C-default    transformers.pipeline("text-classification"), its defaults
               (batch size 1)
  C-batch64    the same with batch_size=64

For each: docs/s and words/s on the test texts (median of --repeats runs after
a warm-up run), single-text latency p50/p95, model load time, peak RSS, and RSS
growth over the stream (from 10k docs to the end; each point is the highest RSS
read since the previous point, read every 16 docs). Then the speed settings of
`emotion_classifier` (--variants), each with its test accuracy, its accuracy
change and label agreement against the model as trained ("as-trained":
float32, the pipeline's own batches, nlp.pipe), and which Linear layers
ran (the component's default quantize "auto" resolved), and training
throughput (examples/s) of `spacy train` with configs/trf.cfg against a plain
PyTorch loop with the same backbone, batch size and precision.

B's weights are exported from the trained pipeline: the encoder is the
transformer component's Hugging Face model, 1:1. The textcat reads the first
token's vector and the mean of the token vectors, which no AutoModelForSequenceClassification
head does, so B's head is the architecture's own (BERT: tanh pooler on [CLS]
from the backbone, then a Linear), with the textcat's output weights copied
into its last Linear where the shapes match (they don't for first token + mean).
B and C are there for speed: their labels are not those of
a trained model, and their accuracy is printed only as a check that they ran.

    python benchmarks/bench.py --model training/trf/model-best \\
        --data ../shared/data/emotion --out benchmarks

writes benchmarks/results.json and benchmarks/results.md. See
benchmarks/RESULTS.md for the commands and the recorded runs. No number in
this file is a target that anything asserts.
"""

import argparse
import json
import math
import os
import platform
import random
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
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
# nlp.pipe); the accuracy change and label agreement of every setting are
# against it.
VARIANTS: Dict[str, Dict[str, Any]] = {
    "as-trained": {"sort_by_length": False, "inference_mode": False, "quantize": "none", "fast_path": False},
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


# ---------------------------------------------------------------------------
# small helpers


def log(name: str, message: str) -> None:
    """A progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {name}: {message}", file=sys.stderr, flush=True)


RSS_SAMPLE_DOCS = 16
"""Over the stream, the RSS is read every this many docs (/proc/self/statm: ~10 us)."""


def rss_mb() -> float:
    """Resident set size of this process now, in MB (Linux /proc; else peak)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def rss_curve(
    stream: Iterable[Any],
    marks: Iterable[int],
    read: Callable[[], float] = rss_mb,
    every: int = RSS_SAMPLE_DOCS,
    on_mark: Optional[Callable[[int, float], None]] = None,
) -> Dict[int, float]:
    """Consume a stream, reading the RSS every `every` items and at each mark.

    The value at a mark is the highest RSS read since the previous mark, so
    that memory handed back between two marks (a heap trim, say) can't hide
    what the process held in between.
    RETURNS (Dict[int, float]): {mark: MB} for the marks the stream reached.
    """
    marks = set(marks)
    curve: Dict[int, float] = {}
    high = 0.0
    for done, _ in enumerate(stream, 1):
        if done % every == 0 or done in marks:
            high = max(high, read())
        if done in marks:
            curve[done], high = high, 0.0
            if on_mark is not None:
                on_mark(done, curve[done])
    return curve


def percentile(values: List[float], q: float) -> float:
    """Nearest-rank percentile of `values` (q in [0, 100])."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def n_words(texts: Iterable[str]) -> int:
    """Words as the benchmark counts them: whitespace-separated."""
    return sum(len(t.split()) for t in texts)


def batches(items: Iterable[Any], size: int) -> Iterator[List[Any]]:
    batch: List[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def stream_order(n_texts: int, n: int, seed: int) -> List[int]:
    """Indices of an n-text stream: the texts repeated, then shuffled."""
    order = [i % n_texts for i in range(n)]
    random.Random(seed).shuffle(order)
    return order


def read_split(data: Path, limit: int = 0, name: str = "test") -> Tuple[List[str], List[str]]:
    """Texts and gold labels of a split ("test" by default) in a dataset folder."""
    from spacy_emotion.training.dataset import find_split_file, read_file

    split = read_file(find_split_file(Path(data), name), name=name)
    examples = split.examples[:limit] if limit else split.examples
    return [e.text for e in examples], [e.label for e in examples]


# ---------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------
# the systems: load, then run over a list / a stream / one text


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

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).eval().to(device)
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

        self.pipe = pipeline("text-classification", model=path, tokenizer=path, device=0 if device == "cuda" else -1)
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


def time_split(runner: "SpacyRunner", texts: List[str], device: str) -> Dict[str, float]:
    """One more run over the texts with the transformer's forward pass timed
    by torch hooks; on a GPU each forward call is bracketed by
    torch.cuda.synchronize(), so its kernels count as forward time (and the
    work queued before it does not). Not one of the timed runs.

    RETURNS (Dict[str, float]): ms per doc: "total", "forward" (the
    transformer's forward calls) and "other" (everything else: tokenizers,
    alignment, pooling, textcat, Docs), and "forward_calls" (per run).
    """
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    spent = {"forward": 0.0, "calls": 0, "start": 0.0}

    def before(module, args, kwargs=None):
        sync()
        spent["start"] = time.perf_counter()

    def after(module, args, output):
        sync()
        spent["forward"] += time.perf_counter() - spent["start"]
        spent["calls"] += 1

    handles = [runner.module.register_forward_pre_hook(before), runner.module.register_forward_hook(after)]
    try:
        t0 = time.perf_counter()
        runner.run(texts)
        sync()
        total = time.perf_counter() - t0
    finally:
        for handle in handles:
            handle.remove()
    n = len(texts)
    return {
        "total": 1000 * total / n,
        "forward": 1000 * spent["forward"] / n,
        "other": 1000 * (total - spent["forward"]) / n,
        "forward_calls": spent["calls"],
    }


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


# ---------------------------------------------------------------------------
# workers: each job runs in its own `python bench.py --worker JOB.json`


def run_inference_job(job: Dict[str, Any]) -> Dict[str, Any]:
    """Load one system and measure it. RETURNS its metrics."""
    name = job["name"]
    t0 = time.perf_counter()
    import_libraries(job["system"])
    import_s = time.perf_counter() - t0
    import torch

    if job["device"] == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_before = rss_mb()
    t0 = time.perf_counter()
    runner = load_runner(job)
    load_s = time.perf_counter() - t0
    rss_after_load = rss_mb()
    log(name, f"loaded in {load_s:.2f} s (RSS {rss_after_load:.0f} MB)")
    texts = json.loads(Path(job["data"]).read_text(encoding="utf8"))["texts"]
    words = n_words(texts)

    # throughput on the test texts: a warm-up on the first 256 (kernels, allocator, length
    # buckets' shapes), then the median of the repeats over all of them
    runner.run(texts[: min(len(texts), 256)])
    runs: List[float] = []
    predictions: List[str] = []
    for rep in range(job["repeats"]):
        t0 = time.perf_counter()
        predictions = runner.run(texts)
        runs.append(time.perf_counter() - t0)
        log(name, f"test run {rep + 1}/{job['repeats']}: {len(texts) / runs[-1]:.1f} docs/s")
    median = statistics.median(runs)
    split = time_split(runner, texts, job["device"]) if getattr(runner, "module", None) is not None else None
    result: Dict[str, Any] = {
        "system": job["system"],
        "description": SYSTEMS[job["system"]],
        "options": job.get("options", {}),
        "linear_format": getattr(runner, "linear_format", None),
        # the component's torch_threads holds during its model calls only (restored after)
        "torch_threads": int(job.get("options", {}).get("torch_threads") or 0) or torch.get_num_threads(),
        "import_s": import_s,
        "load_s": load_s,
        "load_rss_mb": rss_after_load - rss_before,
        "test": {
            "docs": len(texts),
            "words": words,
            "repeats": len(runs),
            "runs_s": runs,
            "docs_per_s": len(texts) / median,
            "words_per_s": words / median,
        },
        "predictions": predictions,  # scored by the parent process (no scikit-learn import here)
    }
    if split:
        result["time_split_ms_per_doc"] = split
        log(
            name,
            f"time per doc: {split['total']:.3f} ms, of which the transformer's forward pass {split['forward']:.3f} ms "
            f"({100 * split['forward'] / split['total']:.0f} %), the rest {split['other']:.3f} ms",
        )

    # single-text latency
    if job["latency"]:
        sample = random.Random(1).sample(texts, min(job["latency"], len(texts)))
        runner.one(sample[0])
        times = []
        for text in sample:
            t0 = time.perf_counter()
            runner.one(text)
            times.append((time.perf_counter() - t0) * 1000)
        result["latency_ms"] = {
            "n": len(times),
            "p50": percentile(times, 50),
            "p95": percentile(times, 95),
            "mean": statistics.mean(times),
        }
        log(name, f"latency p50 {result['latency_ms']['p50']:.2f} ms, p95 {result['latency_ms']['p95']:.2f} ms")

    # the stream: RSS at rss_from docs and at the end (and every 10 % for the curve)
    n = job["stream"]
    if n:
        order = stream_order(len(texts), n, job["seed"])
        rss_from = job["rss_from"] if job["rss_from"] < n else max(1, n // 10)
        marks = {rss_from, n} | {max(1, n * k // 10) for k in range(1, 10)}
        t0 = time.perf_counter()

        def progress(done: int, rss: float) -> None:
            if done % max(1, n // 10) == 0 or done == n:
                log(name, f"stream {done}/{n} docs, {done / (time.perf_counter() - t0):.1f} docs/s, RSS {rss:.0f} MB")

        curve = rss_curve(runner.stream(texts[i] for i in order), marks, on_mark=progress)
        seconds = time.perf_counter() - t0
        stream_words = sum(len(texts[i].split()) for i in order)
        result["stream"] = {
            "docs": n,
            "seconds": seconds,
            "docs_per_s": n / seconds,
            "words_per_s": stream_words / seconds,
            "rss_from_docs": rss_from,
            "rss_to_docs": n,
            "rss_from_mb": curve[rss_from],
            "rss_to_mb": curve[n],
            "rss_growth_pct": 100 * (curve[n] - curve[rss_from]) / curve[rss_from],
            "rss_curve_mb": {str(k): v for k, v in sorted(curve.items())},
        }
    result["peak_rss_mb"] = peak_rss_mb()
    if job["device"] == "cuda":
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


_STEP_TIMES: List[float] = []
_BATCH_SIZES: List[int] = []


def _register_training_hooks() -> None:
    """A before_update callback that times each step, and a batcher that
    counts each batch (spaCy's batch_by_sequence, unchanged)."""
    from spacy.util import registry

    if "bench_step_timer.v1" in registry.callbacks:
        return

    @registry.callbacks("bench_step_timer.v1")
    def step_timer() -> Callable:
        def before_update(nlp, args: Dict[str, Any]) -> None:
            _STEP_TIMES.append(time.perf_counter())

        return before_update

    @registry.batchers("bench_counting_batcher.v1")
    def counting_batcher(size, get_length=None) -> Callable:
        inner = registry.batchers.get("spacy.batch_by_sequence.v1")(size=size, get_length=get_length)

        def batcher(items):
            for batch in inner(items):
                _BATCH_SIZES.append(len(batch))
                yield batch

        return batcher


def throughput(times: List[float], sizes: List[int], warmup: int, steps: int) -> Dict[str, Any]:
    """Examples/s of steps warmup..steps-1 (times[s]: when step s began)."""
    seconds = times[steps] - times[warmup]
    examples = sum(sizes[warmup:steps])
    return {
        "steps_timed": steps - warmup,
        "examples": examples,
        "seconds": seconds,
        "examples_per_s": examples / seconds,
    }


def run_spacy_train_job(job: Dict[str, Any]) -> Dict[str, Any]:
    """`spacy train` with configs/trf.cfg (its own loop, init_nlp + train),
    timing steps after the warm-up; no evaluation inside the timed steps."""
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train as train_nlp
    from spacy.util import load_config

    _register_training_hooks()
    steps, warmup = job["steps"], job["warmup"]
    overrides = {
        "paths.train": job["train"],
        "paths.dev": job["dev"],
        "paths.backbone": job["backbone"],
        "corpora.dev.limit": 32,  # step 0 is always evaluated: keep it short (it is before the timed steps)
        "training.max_steps": steps,
        "training.max_epochs": 0,
        "training.eval_frequency": steps + 1000,
        "training.logger.progress_bar": None,
        "components.transformer.model.mixed_precision": job["mixed_precision"],
    }
    config = load_config(job["config"], overrides=overrides, interpolate=False)
    config["training"]["before_update"] = {"@callbacks": "bench_step_timer.v1"}
    config["training"]["batcher"]["@batchers"] = "bench_counting_batcher.v1"
    gpu = 0 if job["device"] == "cuda" else -1
    if gpu >= 0:
        import spacy
        import torch

        # what `spacy train --gpu-id 0` does before init_nlp; without it the
        # model stays on the CPU (init_nlp's use_gpu does not move it)
        spacy.require_gpu(gpu)
        torch.cuda.reset_peak_memory_stats()
    nlp = init_nlp(config, use_gpu=gpu)
    log(job["name"], f"training {steps} steps of batch {config['training']['batcher']['size']}")
    with open(os.devnull, "w") as quiet:
        train_nlp(nlp, None, use_gpu=gpu, stdout=quiet, stderr=sys.stderr)
    result = throughput(_STEP_TIMES, _BATCH_SIZES, warmup, steps)
    result.update(
        {
            "trainer": "spacy train configs/trf.cfg",
            "mixed_precision": job["mixed_precision"],
            "peak_rss_mb": peak_rss_mb(),
        }
    )
    if gpu >= 0:
        import torch

        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    log(job["name"], f"{result['examples_per_s']:.1f} examples/s")
    return result


def run_torch_train_job(job: Dict[str, Any]) -> Dict[str, Any]:
    """A plain PyTorch loop: the same backbone (AutoModel), [CLS] and mean
    pooling + a Linear head (as the textcat), AdamW (lr 1e-4, weight decay 0.01), gradient
    clipping 1.0, the same batch size and precision, the same training docs."""
    import torch
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab
    from transformers import AutoModel, AutoTokenizer

    from spacy_emotion.training.backbone import resolve_backbone

    steps, warmup, bs = job["steps"], job["warmup"], job["batch_size"]
    device = job["device"]
    docs = list(DocBin().from_disk(job["train"]).get_docs(Vocab()))
    rng = random.Random(0)
    rng.shuffle(docs)
    data = [(d.text, LABELS.index(max(d.cats, key=d.cats.get))) for d in docs]
    path = resolve_backbone(job["backbone"])
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path).to(device)
    head = torch.nn.Linear(2 * encoder.config.hidden_size, len(LABELS)).to(device)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    mixed = job["mixed_precision"]
    scaler = torch.amp.GradScaler("cuda", enabled=mixed and device == "cuda")
    encoder.train()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, sizes = [], []
    log(job["name"], f"training {steps} steps of batch {bs}")
    for step in range(steps + 1):
        times.append(time.perf_counter())
        if step == steps:
            break
        batch = [data[(step * bs + i) % len(data)] for i in range(bs)]
        sizes.append(len(batch))
        enc = tokenizer([t for t, _ in batch], padding=True, truncation=True, max_length=512, return_tensors="pt").to(
            device
        )
        gold = torch.tensor([y for _, y in batch], device=device)
        with torch.autocast(device_type=device, dtype=torch.float16, enabled=mixed):
            hidden = encoder(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = torch.cat([hidden[:, 0], (hidden * mask).sum(1) / mask.sum(1)], dim=-1)
            loss = torch.nn.functional.cross_entropy(head(torch.nn.functional.dropout(pooled, 0.1)).float(), gold)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        if device == "cuda":
            torch.cuda.synchronize()
    result = throughput(times, sizes, warmup, steps)
    result.update({"trainer": "plain PyTorch loop", "mixed_precision": mixed, "peak_rss_mb": peak_rss_mb()})
    if device == "cuda":
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    log(job["name"], f"{result['examples_per_s']:.1f} examples/s")
    return result


def worker(job_file: Path) -> None:
    """Run one job from its JSON file and write its result next to it."""
    job = json.loads(Path(job_file).read_text(encoding="utf8"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    kind = job["kind"]
    if job.get("threads"):
        import torch

        torch.set_num_threads(job["threads"])
    if kind == "inference":
        result = run_inference_job(job)
    elif kind == "train-spacy":
        result = run_spacy_train_job(job)
    elif kind == "train-torch":
        result = run_torch_train_job(job)
    else:
        raise SystemExit(f"unknown job kind {kind}")
    Path(job["out"]).write_text(json.dumps(result), encoding="utf8")


def run_job(job: Dict[str, Any], work: Path) -> Dict[str, Any]:
    """Run a job in a fresh `python bench.py --worker` process; RETURNS its result."""
    job_file = work / f"job-{job['name']}.json"
    job["out"] = str(work / f"result-{job['name']}.json")
    job_file.write_text(json.dumps(job), encoding="utf8")
    log(job["name"], "starting")
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(job_file)], cwd=str(ROOT))
    if proc.returncode != 0:
        raise SystemExit(f"{job['name']} failed (exit {proc.returncode}); its output is above")
    return json.loads(Path(job["out"]).read_text(encoding="utf8"))


def score(result: Dict[str, Any], gold: List[str]) -> None:
    """Add test accuracy and macro-F1 of an inference job's predictions."""
    from sklearn.metrics import accuracy_score, f1_score

    predictions = result["predictions"]
    result["accuracy"] = float(accuracy_score(gold, predictions))
    result["macro_f1"] = float(f1_score(gold, predictions, labels=list(LABELS), average="macro", zero_division=0))


# ---------------------------------------------------------------------------
# the report


def machine_info(device: str) -> Dict[str, Any]:
    """What the numbers were measured on."""
    from importlib.metadata import PackageNotFoundError, version

    info: Dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("model name")), "")
        flags = next((l.split(":", 1)[1].split() for l in cpuinfo.splitlines() if l.startswith("flags")), [])
        info["cpu_flags"] = sorted(
            f for f in flags if f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
        )
        mem = next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
        info["memory_gb"] = round(int(mem.split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        pass
    for package in ("torch", "transformers", "spacy", "spacy-transformers", "thinc"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = None
    if device == "cuda":
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        load = os.getloadavg()
        info["load_average_at_start"] = [round(x, 2) for x in load]
    except OSError:
        pass
    return info


def git_commit() -> str:
    """HEAD's hash, with '+dirty' when tracked files differ from it.

    Where the checkout has no .git (a copy of the working tree sent to a GPU
    machine), $SPACY_EMOTION_COMMIT names the commit instead."""
    if os.environ.get("SPACY_EMOTION_COMMIT"):
        return os.environ["SPACY_EMOTION_COMMIT"]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a and b else None


def docs_per_s(systems: Dict[str, Any], name: str, where: str = "test") -> Optional[float]:
    return (systems.get(name) or {}).get(where, {}).get("docs_per_s")


def headline(results: Dict[str, Any]) -> Dict[str, Any]:
    """The ratios the issue asks for, and whether each target is met."""
    systems, variants, training = results["systems"], results["variants"], results["training"]
    head: Dict[str, Any] = {
        "A_over_B": ratio(docs_per_s(systems, "A-component"), docs_per_s(systems, "B")),
        "A_over_B_stream": ratio(docs_per_s(systems, "A-component", "stream"), docs_per_s(systems, "B", "stream")),
        "A_pipeline_over_B": ratio(docs_per_s(systems, "A-pipeline"), docs_per_s(systems, "B")),
        "A_over_C_default": ratio(docs_per_s(systems, "A-component"), docs_per_s(systems, "C-default")),
        "A_rss_growth_pct": (systems.get("A-component") or {}).get("stream", {}).get("rss_growth_pct"),
    }
    ok = {k: v for k, v in variants.items() if v.get("accuracy_ok")}
    if ok:
        best = max(ok, key=lambda k: ok[k]["test"]["docs_per_s"])
        head["best_variant"] = best
        head["best_variant_options"] = ok[best]["options"]
        head["best_variant_over_B"] = ratio(ok[best]["test"]["docs_per_s"], docs_per_s(systems, "B"))
    cpu = training.get("fp32") or {}
    head["train_spacy_over_torch"] = cpu.get("ratio")
    targets = {
        "A >= 1.0 x B docs/s": (head["A_over_B"], 1.0),
        "A >= 3 x C-default docs/s": (head["A_over_C_default"], 3.0),
        "RSS growth <= 5 %": (None if head["A_rss_growth_pct"] is None else -head["A_rss_growth_pct"], -5.0),
        "training >= 0.8 x plain loop": (head["train_spacy_over_torch"], 0.8),
        "stretch: best A setting >= 1.5 x B": (head.get("best_variant_over_B"), 1.5),
    }
    head["targets"] = {k: (None if v is None else v >= t) for k, (v, t) in targets.items()}
    return head


def fmt(value: Optional[float], digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def markdown(results: Dict[str, Any]) -> str:
    """results.md: the tables of one run."""
    meta, head = results["meta"], results["headline"]
    m = meta["machine"]
    lines = [
        "# spacy-emotion vs plain Transformers",
        "",
        f"- date: {meta['date']}",
        f"- machine: {m.get('cpu', '')} ({m.get('cpu_count')} CPUs, {', '.join(m.get('cpu_flags', []))}), "
        f"{m.get('memory_gb', '?')} GB, {m.get('platform')}"
        + (f", GPU {m['gpu']}" if m.get("gpu") else "")
        + f"; load average at start {m.get('load_average_at_start')}",
        f"- versions: torch {m.get('torch')}, transformers {m.get('transformers')}, spacy {m.get('spacy')}, "
        f"spacy-transformers {m.get('spacy-transformers')}",
        f"- commit: {meta['commit']}",
        f"- command: `{meta['command']}`",
        f"- model: {meta['model']}; device {meta['device']}; {meta['test_texts']} test texts; batch size "
        f"{meta['batch_size']}; "
        f"{meta['repeats']} timed runs (median) after a warm-up run; latency over {meta['latency']} single texts",
        f"- stream: {meta['stream']} docs (test texts repeated, shuffled); C-default: {meta['stream_c']} docs",
        f"- B: {meta['B']['head']}",
        "",
        "## Headline",
        "",
        f"**A/B = {fmt(head.get('A_over_B'), 2)}x** docs/s on the test texts "
        f"(stream: {fmt(head.get('A_over_B_stream'), 2)}x); A/C-default = {fmt(head.get('A_over_C_default'), 2)}x; "
        f"A's RSS growth over the stream {fmt(head.get('A_rss_growth_pct'), 2)} %; "
        f"training spacy/plain loop = {fmt(head.get('train_spacy_over_torch'), 2)}x.",
    ]
    if head.get("best_variant"):
        lines.append(
            f"Fastest setting within {MAX_ACCURACY_LOSS} accuracy points: **{head['best_variant']}** "
            f"`{json.dumps(head['best_variant_options'])}` = {fmt(head.get('best_variant_over_B'), 2)}x B."
        )
    lines += ["", "| target | met |", "|---|---|"]
    lines += [f"| {k} | {'–' if v is None else ('yes' if v else 'no')} |" for k, v in head["targets"].items()]
    lines += [
        "",
        "## Inference",
        "",
        "| system | docs/s | words/s | stream docs/s | latency p50 ms | p95 ms | load s | peak RSS MB | RSS "
        "growth % (docs) | accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["systems"].items():
        stream = r.get("stream") or {}
        lat = r.get("latency_ms") or {}
        growth = (
            f"{fmt(stream.get('rss_growth_pct'), 2)} ({stream.get('rss_from_docs')}→{stream.get('rss_to_docs')})"
            if stream
            else "–"
        )
        lines.append(
            f"| {name} | {fmt(r['test']['docs_per_s'])} | {fmt(r['test']['words_per_s'], 0)} | "
            f"{fmt(stream.get('docs_per_s'))} | "
            f"{fmt(lat.get('p50'), 2)} | {fmt(lat.get('p95'), 2)} | {fmt(r['load_s'], 2)} | "
            f"{fmt(r['peak_rss_mb'], 0)} | {growth} | "
            f"{fmt(100 * r['accuracy'], 2)}{'' if name.startswith('A') else '*'} |"
        )
    lines.append("")
    lines.append("\\* B and C: not a trained head (see B above); accuracy only shows they ran.")
    splits = {n: r["time_split_ms_per_doc"] for n, r in results["systems"].items() if r.get("time_split_ms_per_doc")}
    if splits:
        lines += [
            "",
            "Where A's time goes (one more run over the test texts, the transformer's forward calls timed by "
            "torch hooks):",
            "",
            "| system | ms per doc | forward pass ms | rest ms | forward share | forward calls |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {n} | {fmt(t['total'], 3)} | {fmt(t['forward'], 3)} | {fmt(t['other'], 3)} | "
            f"{fmt(100 * t['forward'] / t['total'], 0)} % | {t['forward_calls']} |"
            for n, t in splits.items()
        ]
    if any("gpu_peak_mb" in r for r in results["systems"].values()):
        lines += ["", "| system | GPU peak MB |", "|---|---:|"]
        lines += [f"| {n} | {fmt(r.get('gpu_peak_mb'), 0)} |" for n, r in results["systems"].items()]
    if results["variants"]:
        ref = meta.get("reference_variant")
        lines += [
            "",
            "## Speed settings of emotion_classifier (A-component)",
            "",
            f"Accuracy change and label agreement against **{ref}**"
            + (" (the model as trained: float32, the pipeline's own batches)." if ref == REFERENCE_VARIANT else "."),
            "",
            f"| setting | options | Linear layers | docs/s | x {ref} | x B | latency p50 ms | load s | peak "
            f"RSS MB | accuracy | Δ accuracy (points) | agreement with {ref} | ≤ {MAX_ACCURACY_LOSS} pt |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        base = results["variants"].get(ref, {}).get("test", {}).get("docs_per_s")
        for name, r in results["variants"].items():
            lines.append(
                f"| {name} | `{json.dumps(r['options'])}` | {r.get('linear_format', '–')} | "
                f"{fmt(r['test']['docs_per_s'])} | {fmt(ratio(r['test']['docs_per_s'], base), 2)} | "
                f"{fmt(ratio(r['test']['docs_per_s'], docs_per_s(results['systems'], 'B')), 2)} | "
                f"{fmt((r.get('latency_ms') or {}).get('p50'), 2)} | "
                f"{fmt(r.get('load_s'), 2)} | {fmt(r['peak_rss_mb'], 0)} | {fmt(100 * r['accuracy'], 2)} | "
                f"{fmt(r.get('accuracy_delta_points'), 2)} | "
                f"{fmt(100 * r['agreement'], 2) if r.get('agreement') is not None else '–'} % | "
                f"{'yes' if r.get('accuracy_ok') else 'no'} |"
            )
    if results["training"]:
        lines += [
            "",
            "## Training throughput",
            "",
            "| precision | spacy train ex/s | plain loop ex/s | spacy/plain | epoch s (spacy) | epoch s (plain) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for precision, t in results["training"].items():
            lines.append(
                f"| {precision} | {fmt(t['spacy']['examples_per_s'])} | {fmt(t['torch']['examples_per_s'])} | "
                f"{fmt(t.get('ratio'), 2)} | "
                f"{fmt(t.get('epoch_s_spacy'), 0)} | {fmt(t.get('epoch_s_torch'), 0)} |"
            )
        lines.append("")
        lines.append(
            f"{meta['train_steps']} steps of batch {meta['train_batch_size']}, the first "
            f"{meta['train_warmup']} not timed; "
            f"epoch = {meta['train_examples']} training examples at that rate."
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# the run


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="training/trf/model-best", help="the trained trf pipeline (directory or package)"
    )
    parser.add_argument(
        "--data",
        default=str(ROOT.parent / "shared" / "data" / "emotion"),
        help="dataset folder with the test (and train) split",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks"), help="folder for results.json and results.md")
    parser.add_argument("--systems", default=DEFAULT_SYSTEMS, help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument(
        "--variants",
        default=None,
        help=f"emotion_classifier settings to measure, of {', '.join(VARIANTS)}; 'none' for none "
        f"(default: {DEFAULT_VARIANTS}; with --gpu {GPU_VARIANTS})",
    )
    parser.add_argument(
        "--stream", type=int, default=100000, help="docs in the stream (test texts repeated, shuffled); 0: no stream"
    )
    parser.add_argument("--stream-c", type=int, default=20000, help="docs in C-default's stream (batch size 1 is slow)")
    parser.add_argument(
        "--variant-stream", type=int, default=0, help="docs in each setting's stream (0: test texts only)"
    )
    parser.add_argument(
        "--rss-from", type=int, default=10000, help="RSS growth is measured from this many streamed docs to the end"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs over the test texts (median), after a warm-up run"
    )
    parser.add_argument("--latency", type=int, default=200, help="single texts timed for latency; 0: none")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--test-limit", type=int, default=0, help="use only the first N test texts (0: all)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in every system (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-steps", type=int, default=40, help="training steps per trainer; 0: skip training")
    parser.add_argument("--train-warmup", type=int, default=5, help="first steps not timed")
    parser.add_argument(
        "--train-corpus", default=None, help="folder with train.spacy and dev.spacy (default: converted from --data)"
    )
    parser.add_argument("--config", default=str(ROOT / "configs" / "trf.cfg"))
    parser.add_argument("--backbone", default=None, help="backbone for training (default: the model's own)")
    parser.add_argument("--export-dir", default=None, help="where B's checkpoint goes (default: a temporary folder)")
    parser.add_argument("--gpu", action="store_true", help="run everything on CUDA device 0 (fails without CUDA)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def check_gpu() -> None:
    """--gpu: fail clearly without CUDA or without CuPy (spaCy's GPU arrays)."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(
            "--gpu: no CUDA device (torch.cuda.is_available() is False; torch "
            f"{torch.__version__}). Run without --gpu, or on a machine with an NVIDIA GPU and a CUDA build of torch."
        )
    try:
        import cupy  # noqa: F401
    except ImportError:
        raise SystemExit(
            "--gpu: spaCy runs on the GPU through CuPy; install the CuPy build for your CUDA (e.g. pip "
            "install cupy-cuda12x)."
        )


def model_backbone(model: str) -> str:
    """The backbone a trained pipeline was built from (its transformer's `name`)."""
    import spacy

    from spacy_emotion.training.backbone import DEFAULT_BACKBONE

    path = Path(model)
    if not (path / "config.cfg").is_file():
        path = Path(spacy.util.get_package_path(model))
    config = spacy.util.load_config(path / "config.cfg", interpolate=True)
    try:
        return str(config["components"]["transformer"]["model"]["name"])
    except KeyError:
        return DEFAULT_BACKBONE


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.worker:
        worker(Path(args.worker))
        return {}
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    device = "cuda" if args.gpu else "cpu"
    if args.gpu:
        check_gpu()
    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in SYSTEMS]
    variant_names = args.variants or (GPU_VARIANTS if args.gpu else DEFAULT_VARIANTS)
    variant_names = [] if variant_names == "none" else [v for v in variant_names.split(",") if v]
    unknown += [v for v in variant_names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown system or setting: {', '.join(unknown)}")
    if args.gpu and any(
        VARIANTS[v].get("quantize") == "int8" for v in variant_names
    ):  # bf16 Linear layers run on a GPU too
        raise SystemExit("--gpu: int8 dynamic quantization runs on the CPU only; leave int8 out of --variants")
    import spacy

    if not Path(args.model).exists() and not spacy.util.is_package(args.model):
        raise SystemExit(
            f"--model {args.model}: no such pipeline. Train one (spacy project run train) or pass its folder."
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="spacy-emotion-bench-") as tmp:
        work = Path(tmp)
        texts, labels = read_split(Path(args.data), args.test_limit)
        data_file = work / "test.json"
        data_file.write_text(json.dumps({"texts": texts, "labels": labels}), encoding="utf8")
        export_dir = Path(args.export_dir) if args.export_dir else work / "hf-export"
        log("export", f"B's checkpoint from {args.model} -> {export_dir}")
        export = export_hf_checkpoint(Path(args.model), export_dir)
        meta = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_info(device),
            "commit": git_commit(),
            "command": " ".join(
                shlex.quote(a) for a in ["python", "benchmarks/bench.py"] + (sys.argv[1:] if argv is None else argv)
            ),
            "model": str(args.model),
            "data": str(args.data),
            "device": device,
            "test_texts": len(texts),
            "stream": args.stream,
            "stream_c": min(args.stream, args.stream_c),
            "rss_from": args.rss_from,
            "repeats": args.repeats,
            "latency": args.latency,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "B": export,
        }
        common = {
            "kind": "inference",
            "model": str(args.model),
            "export": str(export_dir),
            "data": str(data_file),
            "device": device,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "latency": args.latency,
            "threads": args.threads,
            "seed": args.seed,
            "rss_from": args.rss_from,
        }
        results: Dict[str, Any] = {"meta": meta, "systems": {}, "variants": {}, "training": {}}
        for system in systems:
            stream = meta["stream_c"] if system == "C-default" else args.stream
            result = run_job({**common, "name": system, "system": system, "stream": stream}, work)
            score(result, labels)
            result.pop("predictions")
            results["systems"][system] = result

        # the reference first: the others compare with it (accuracy change, label agreement)
        reference = (
            REFERENCE_VARIANT if REFERENCE_VARIANT in variant_names else (variant_names[0] if variant_names else None)
        )
        base_predictions: Optional[List[str]] = None
        for name in sorted(variant_names, key=lambda v: v != reference):
            job = {
                **common,
                "name": f"setting-{name}",
                "system": "A-component",
                "options": VARIANTS[name],
                "stream": args.variant_stream,
            }
            result = run_job(job, work)
            score(result, labels)
            predictions = result.pop("predictions")
            if name == reference:
                base_predictions = predictions
            result["agreement"] = sum(a == b for a, b in zip(predictions, base_predictions)) / len(predictions)
            results["variants"][name] = result
        results["meta"]["reference_variant"] = reference
        base = results["variants"].get(reference)
        for name, result in results["variants"].items():
            result["accuracy_delta_points"] = 100 * (result["accuracy"] - base["accuracy"])
            result["accuracy_ok"] = result["accuracy_delta_points"] >= -MAX_ACCURACY_LOSS

        if args.train_steps:
            if args.train_corpus:
                corpus = Path(args.train_corpus)
            else:
                from spacy_emotion.training.corpus import convert

                corpus = work / "corpus"
                log("train", f"converting {args.data} into {corpus}")
                convert(corpus, source=str(args.data))
            backbone = args.backbone or model_backbone(args.model)
            from spacy.tokens import DocBin

            n_train = len(DocBin().from_disk(corpus / "train.spacy"))
            train_common = {
                "config": args.config,
                "train": str(corpus / "train.spacy"),
                "dev": str(corpus / "dev.spacy"),
                "backbone": backbone,
                "steps": args.train_steps,
                "warmup": min(args.train_warmup, args.train_steps - 1),
                "batch_size": 32,
                "device": device,
                "threads": args.threads,
            }
            meta.update(
                {
                    "train_steps": args.train_steps,
                    "train_warmup": train_common["warmup"],
                    "train_batch_size": 32,
                    "train_examples": n_train,
                    "train_backbone": backbone,
                }
            )
            for precision in ["fp32", "fp16-mixed"] if args.gpu else ["fp32"]:
                mixed = precision != "fp32"
                row: Dict[str, Any] = {}
                for kind in ("spacy", "torch"):
                    row[kind] = run_job(
                        {
                            **train_common,
                            "kind": f"train-{kind}",
                            "name": f"train-{kind}-{precision}",
                            "mixed_precision": mixed,
                        },
                        work,
                    )
                row["ratio"] = ratio(row["spacy"]["examples_per_s"], row["torch"]["examples_per_s"])
                row["epoch_s_spacy"] = n_train / row["spacy"]["examples_per_s"]
                row["epoch_s_torch"] = n_train / row["torch"]["examples_per_s"]
                results["training"][precision] = row

    meta["wall_s"] = time.perf_counter() - started
    results["headline"] = headline(results)
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf8")
    (out / "results.md").write_text(markdown(results), encoding="utf8")
    log("done", f"{out / 'results.json'}, {out / 'results.md'} in {meta['wall_s']:.0f} s")
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
