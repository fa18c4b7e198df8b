"""Training throughput: `spacy train` with configs/trf.cfg against a plain
PyTorch loop with the same backbone, batch size and precision. Each trainer
runs as a job of its own process (see benchmarks/jobs.py).
"""

import os
import random
import sys
import time
from typing import Any, Callable, Dict, List

from benchmarks.measure import log, peak_rss_mb
from benchmarks.systems import LABELS

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

    from spacy_emotion.safe_loading import NO_REMOTE_CODE, model_kwargs
    from spacy_emotion.training.backbone import resolve_backbone

    steps, warmup, bs = job["steps"], job["warmup"], job["batch_size"]
    device = job["device"]
    docs = list(DocBin().from_disk(job["train"]).get_docs(Vocab()))
    rng = random.Random(0)
    rng.shuffle(docs)
    data = [(d.text, LABELS.index(max(d.cats, key=d.cats.get))) for d in docs]
    path = resolve_backbone(job["backbone"])
    tokenizer = AutoTokenizer.from_pretrained(path, **NO_REMOTE_CODE)
    encoder = AutoModel.from_pretrained(path, **model_kwargs()).to(device)
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
