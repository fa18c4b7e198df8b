"""A plain Hugging Face fine-tune of the backbone, as a reference for the spaCy configs.

``AutoModelForSequenceClassification`` over the same backbone and splits as
the spaCy pipelines (the splits from :mod:`.dataset`, the backbone from
:func:`.backbone.resolve_backbone`), trained by a plain torch loop: AdamW
(no weight decay on biases and LayerNorm weights), a linear warmup and decay
of the learning rate, the gradient of the mean cross-entropy of a batch
clipped to a global norm, and a fixed seed for the initialisation, the
shuffling and dropout. The validation and test splits are then scored with
:func:`.metrics.compute_metrics`, so the JSON files it writes have the keys of
``spacy-emotion evaluate``'s.
"""

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ..labels import LABEL_TO_ID, LABELS
from ..safe_loading import NO_REMOTE_CODE, model_kwargs
from .backbone import DEFAULT_BACKBONE, resolve_backbone
from .dataset import Example, load_splits, sample


@dataclass
class FinetuneSettings:
    """The settings of a fine-tune (written next to its metrics)."""

    backbone: str = DEFAULT_BACKBONE
    epochs: int = 2
    batch_size: int = 32
    learn_rate: float = 1e-4
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 256
    seed: int = 0
    limit: int = 0
    eval_batch_size: int = 128

    def check(self) -> None:
        """Raise a ValueError for a setting out of range."""
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "learn_rate": self.learn_rate}
        positive.update({"max_length": self.max_length, "eval_batch_size": self.eval_batch_size})
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0 or self.max_grad_norm < 0 or self.limit < 0:
            raise ValueError("weight_decay, max_grad_norm and limit must be >= 0")


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _batches(examples: List[Example], size: int) -> List[List[Example]]:
    return [examples[i : i + size] for i in range(0, len(examples), size)]


def _encode(tokenizer, examples: List[Example], max_length: int, device) -> Dict[str, Any]:
    encoded = tokenizer(
        [eg.text for eg in examples], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    return {key: value.to(device) for key, value in encoded.items()}


def predict_labels(model, tokenizer, examples: List[Example], settings: FinetuneSettings, device) -> List[str]:
    """The label the model gives each example (batches sorted by length).

    RETURNS (List[str]): the predicted label names, in the examples' order.
    """
    import torch

    order = sorted(range(len(examples)), key=lambda i: len(examples[i].text))
    predicted: List[Optional[str]] = [None] * len(examples)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), settings.eval_batch_size):
            indices = order[start : start + settings.eval_batch_size]
            inputs = _encode(tokenizer, [examples[i] for i in indices], settings.max_length, device)
            ids = model(**inputs).logits.argmax(dim=-1).tolist()
            for i, label_id in zip(indices, ids):
                predicted[i] = model.config.id2label[label_id]
    return [str(label) for label in predicted]


def finetune(
    data: str,
    output: Path,
    settings: FinetuneSettings,
    fallback: Optional[Path] = None,
    device: str = "cpu",
    save_model: bool = True,
    progress: Optional[Callable[[int, int, float, float], None]] = None,
) -> Dict[str, Dict[str, Any]]:
    """Fine-tune the backbone as a sequence classifier and score it.

    data (str): "auto", "hub" or a local folder (see `dataset.load_splits`).
    output (Path): folder for metrics-dev.json, metrics-test.json,
        settings.json and (with save_model) the checkpoint in model/.
    settings (FinetuneSettings): the training settings.
    fallback (Optional[Path]): the local folder "auto" uses without the Hub.
    device (str): the torch device.
    save_model (bool): save the fine-tuned checkpoint (loadable by the
        emotion_classifier component) in output/model.
    progress (Optional[Callable]): called after every update with the step,
        the number of steps, the batch's loss and the seconds since training
        started.
    RETURNS (Dict[str, Dict[str, Any]]): the metrics of "dev" and "test".
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    from .metrics import compute_metrics  # scikit-learn: the train extra

    settings.check()
    splits, _ = load_splits(data, fallback)
    train = sample(splits["train"].examples, settings.limit, settings.seed)
    evaluation = {
        "dev": sample(splits["validation"].examples, settings.limit, settings.seed),
        "test": sample(splits["test"].examples, settings.limit, settings.seed),
    }
    path = resolve_backbone(settings.backbone)
    _seed_everything(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(path, **NO_REMOTE_CODE)
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id=dict(LABEL_TO_ID),
        **model_kwargs(),
    ).to(device)
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "norm" in n.lower()]
    decay = [p for p in model.parameters() if all(p is not q for q in no_decay)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.learn_rate,
    )
    steps = settings.epochs * len(_batches(train, settings.batch_size))
    schedule = get_linear_schedule_with_warmup(optimizer, int(settings.warmup_ratio * steps), steps)
    rng = random.Random(settings.seed)
    started = time.perf_counter()
    step = 0
    for _ in range(settings.epochs):
        model.train()
        order = list(train)
        rng.shuffle(order)
        for batch in _batches(order, settings.batch_size):
            inputs = _encode(tokenizer, batch, settings.max_length, device)
            labels = torch.tensor([LABEL_TO_ID[eg.label] for eg in batch], device=device)
            loss = model(**inputs, labels=labels).loss
            loss.backward()
            if settings.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            if progress is not None:
                progress(step, steps, float(loss.detach()), time.perf_counter() - started)
    train_seconds = time.perf_counter() - started
    output.mkdir(parents=True, exist_ok=True)
    metrics = {}
    for name, examples in evaluation.items():
        predicted = predict_labels(model, tokenizer, examples, settings, device)
        metrics[name] = compute_metrics([eg.label for eg in examples], predicted)
        (output / f"metrics-{name}.json").write_text(json.dumps(metrics[name], indent=2), encoding="utf8")
    record = {**asdict(settings), "steps": steps, "train_seconds": round(train_seconds, 1), "device": device}
    (output / "settings.json").write_text(json.dumps(record, indent=2), encoding="utf8")
    if save_model:
        model.save_pretrained(str(output / "model"))
        tokenizer.save_pretrained(str(output / "model"))
    return metrics
