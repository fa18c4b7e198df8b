"""The models behind `emotion_classifier`: one `predict(texts)` for every backend.

A predictor turns a list of texts into a ``(n, 6)`` array of probabilities in
:data:`LABELS` order, in two steps that may run in different threads:
``prepare(texts)`` (the host work without the model: tokens, wordpieces) and
``run(prepared)`` (the model). Two backends exist:

* :class:`SpacyPredictor`: a trained spaCy pipeline with a ``textcat``
  component (what ``spacy project run all`` builds: an installed package such
  as ``en_emotion_trf`` or a directory like ``training/trf/model-best``).
  Long texts are covered by spacy-transformers' strided windows (window 128,
  stride 96 spaCy tokens in ``configs/trf.cfg``): every token is seen,
  unless a window's tokens make more wordpieces than the model takes (512),
  whose excess spacy-transformers truncates.
  By default it runs through its batched fast path (:mod:`fast_path`).
* :class:`HFPredictor`: a Hugging Face sequence-classification checkpoint
  directory (``config.json`` with ``id2label``, weights, tokenizer). Texts
  longer than the model's window are split into overlapping windows
  (stride :data:`HF_STRIDE`) and the windows' probabilities are averaged,
  weighted by their number of tokens.

Empty or whitespace-only texts are never sent to a model: they get the
uniform distribution (1/6 for every label).

Weights load without running code from the model files: a Hugging Face
checkpoint from its safetensors files only (a pickle-only checkpoint is
refused unless ``allow_pickle_weights``; see :mod:`spacy_emotion.safe_loading`),
a spaCy pipeline through spaCy's own serialisation, whose transformer weights
torch reads with ``weights_only`` (the default since torch 2.6). The model's
own code (``trust_remote_code``) is never run.

Both backends take :class:`SpeedOptions` (the speed settings of
`emotion_classifier`; docs/speed.md).
Without options a predictor runs the model as trained
(:meth:`SpeedOptions.as_trained`: float32, the pipeline's own batching);
the component passes its own settings, fast by default.
"""

import contextlib
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Union

import numpy as np
import spacy
import srsly

from ..labels import LABELS, normalize
from ..safe_loading import NO_REMOTE_CODE, check_weights, model_kwargs
from .fast_path import BatchedTextcat
from .speed import BF16_FORMATS, SpeedOptions, TorchRuntime, length_batches

if TYPE_CHECKING:
    import torch
    from spacy.tokens import Doc

HF_STRIDE = 128
"""Wordpieces shared by consecutive windows of a long text (HF backend)."""

INSTALL_HINT = (
    "Train and install it with `spacy project run all` in the spacy-emotion "
    "project (it builds and installs the package en_emotion_trf), or pass "
    "config={'model': PATH} with PATH a trained pipeline directory (such as "
    "training/trf/model-best) or a Hugging Face sequence-classification "
    "checkpoint directory."
)


class ModelNotFoundError(OSError):
    """The emotion model named in the config can't be found."""


def uniform(n: int) -> np.ndarray:
    """RETURNS (np.ndarray): n rows of the uniform distribution over LABELS."""
    return np.full((n, len(LABELS)), 1.0 / len(LABELS), dtype="float32")


def _non_empty(texts: List[str]) -> List[int]:
    return [i for i, text in enumerate(texts) if text.strip()]


def _label_order(names: List[str], source: str) -> List[int]:
    """Map a model's label names onto LABELS; RETURNS the model column of each label."""
    lowered = [normalize(name) for name in names]
    if sorted(lowered) != sorted(LABELS):
        raise ValueError(
            f"The labels of {source} ({', '.join(map(str, names))}) are not the six "
            f"emotions ({', '.join(LABELS)}): it is not an emotion model."
        )
    return [lowered.index(label) for label in LABELS]


WORDPIECE_MULTIPLE = 16
"""With sort_by_length and a bf16 format (quantize "bf16" or "bf16-full"), the
spaCy backend pads each model batch to a multiple of this many wordpieces:
fewer distinct tensor shapes, so that the memory the allocator keeps after a
long stream stays lower (docs/speed.md). Float32, int8 and ONNX Runtime
batches are not padded: there the padded wordpieces cost their full compute.
Padding is masked: the scores don't change beyond float rounding."""


def pad_to_multiple(tokenizer, multiple: int) -> None:
    """Make a Hugging Face tokenizer pad to a multiple of `multiple` by default.

    spacy-transformers calls the tokenizer with padding="longest" and no
    pad_to_multiple_of, and checks `isinstance(tokenizer,
    PreTrainedTokenizerFast)` for offsets: the instance gets a subclass of
    its own class whose `__call__` supplies the default (undone by `unpad`).
    """
    base = type(tokenizer)
    if getattr(base, "_pad_multiple", None) is not None:
        return

    class Padded(base):  # type: ignore[misc, valid-type]
        _pad_multiple = multiple

        def __call__(self, *args, **kwargs):
            kwargs.setdefault("pad_to_multiple_of", self._pad_multiple)
            return super().__call__(*args, **kwargs)

    Padded.__name__ = Padded.__qualname__ = base.__name__
    tokenizer.__class__ = Padded


def unpad(tokenizer) -> None:
    """Undo `pad_to_multiple` (a no-op on a tokenizer it didn't change)."""
    if getattr(type(tokenizer), "_pad_multiple", None) is not None:
        tokenizer.__class__ = type(tokenizer).__mro__[1]


class PreparedTexts(NamedTuple):
    """A predictor's `prepare` of a list of texts, for its `run`."""

    texts: List[str]
    keep: List[int]
    """The texts with a token (the others get the uniform distribution)."""
    work: Any
    """The backend's prepared input (None: none, or nothing to prepare)."""


class SpacyPredictor:
    """A trained spaCy pipeline whose textcat predicts the six emotions."""

    kind = "spacy"

    def __init__(self, nlp: spacy.Language, source: str = "", options: Optional[SpeedOptions] = None) -> None:
        self.nlp = nlp
        textcats = self._components("textcat")
        if not textcats:
            raise ValueError(f"The pipeline {source} has no 'textcat' component to predict emotions.")
        self.textcat = textcats[0]
        labels = list(nlp.get_pipe(self.textcat).labels)
        self._columns = _label_order(labels, f"the pipeline {source}")  # textcat column of each of LABELS
        self._cats_keys = [labels[i] for i in self._columns]  # its doc.cats key ("Joy" for joy)
        self.source = source
        self.runtime = self._apply(options or SpeedOptions.as_trained())
        self.fast_path: Optional[BatchedTextcat] = None
        self.fast_path_reason = "off (fast_path=false)"
        if self.options.fast_path:
            self.fast_path, self.fast_path_reason = BatchedTextcat.from_pipeline(nlp)

    def _components(self, factory: str) -> List[str]:
        """Names of the pipeline's components made by `factory`, in pipeline order."""
        return [n for n in self.nlp.pipe_names if self.nlp.get_pipe_meta(n).factory == factory]

    def _transformer_model(self):
        """The thinc model of the pipeline's (first) transformer component, or None."""
        transformers = self._components("transformer")
        return self.nlp.get_pipe(transformers[0]).model if transformers else None

    def torch_module(self) -> Optional["torch.nn.Module"]:
        """The Hugging Face model inside the pipeline's (first) transformer
        component, or None for a pipeline without one."""
        model = self._transformer_model()
        return model.transformer if model is not None else None

    def _apply(self, options: SpeedOptions) -> TorchRuntime:
        """Apply speed options to the pipeline (once, when it loads)."""
        self._saved_batch_items: Dict[str, int] = {}
        self._padded_tokenizers: List[object] = []
        budget = options.batch_budget(self.torch_module())  # of the float model, before int8 packs its weights
        runtime = TorchRuntime(self.torch_module(), options, self._input_names())
        if options.sort_by_length:
            for name in self._components("transformer"):
                pipe = self.nlp.get_pipe(name)
                self._saved_batch_items[name] = pipe.cfg["max_batch_items"]
                pipe.cfg["max_batch_items"] = budget
                tokenizer = getattr(pipe.model, "tokenizer", None)
                if tokenizer is not None and runtime.linear_format in BF16_FORMATS:
                    pad_to_multiple(tokenizer, WORDPIECE_MULTIPLE)
                    self._padded_tokenizers.append(tokenizer)
        return runtime

    def _input_names(self) -> List[str]:
        """The inputs spacy-transformers passes the model: its tokenizer's."""
        tokenizer = getattr(self._transformer_model(), "tokenizer", None)
        return list(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))

    @contextlib.contextmanager
    def _as_trained(self) -> Iterator[None]:
        """The pipeline as it was loaded (float weights, own batch settings), to save it."""
        changed = {name: self.nlp.get_pipe(name).cfg["max_batch_items"] for name in self._saved_batch_items}
        for name, value in self._saved_batch_items.items():
            self.nlp.get_pipe(name).cfg["max_batch_items"] = value
        padded = [(tokenizer, type(tokenizer)) for tokenizer in self._padded_tokenizers]
        for tokenizer in self._padded_tokenizers:
            unpad(tokenizer)
        try:
            with self.runtime.float_weights():
                yield
        finally:
            for name, value in changed.items():
                self.nlp.get_pipe(name).cfg["max_batch_items"] = value
            for tokenizer, cls in padded:
                tokenizer.__class__ = cls

    @property
    def options(self) -> SpeedOptions:
        """RETURNS (SpeedOptions): the speed options this model runs with."""
        return self.runtime.options

    def tokenizes_like(self, tokenizer) -> bool:
        """Whether docs made by `tokenizer` (another pipeline's) can be passed
        to `predict` as they are: the fast path runs, and the model's pipeline
        tokenizes as `tokenizer` does."""
        return self.fast_path is not None and self.fast_path.tokenizes_like(tokenizer)

    def predict(self, texts: List[str], docs: Optional[Sequence[Optional["Doc"]]] = None) -> np.ndarray:
        """RETURNS (np.ndarray): (len(texts), 6) probabilities in LABELS order.

        docs (Optional[Sequence[Optional[Doc]]]): per text, a Doc of it made by
            a tokenizer for which `tokenizes_like` holds (the fast path then
            takes its tokens instead of tokenizing the text again), or None.
        """
        return self.run(self.prepare(texts, docs))

    def prepare(self, texts: List[str], docs: Optional[Sequence[Optional["Doc"]]] = None) -> "PreparedTexts":
        """The host work of `predict` that needs no model: on the fast path
        the tokens, batches and wordpieces (`BatchedTextcat.prepare`); `run`
        does the rest. One call's `prepare` may run in another thread while
        `run` runs on an earlier call's (the component's `prefetch`).
        RETURNS (PreparedTexts): what `run` takes."""
        keep = _non_empty(texts)
        work = None
        if keep:
            longest = max(len(texts[i]) for i in keep)
            if longest >= self.nlp.max_length:
                self.nlp.max_length = longest + 1
            if self.fast_path is not None:
                kept_docs = None if docs is None else [docs[i] for i in keep]
                work = self.fast_path.prepare([texts[i] for i in keep], kept_docs)
        return PreparedTexts(texts, keep, work)

    def run(self, prepared: "PreparedTexts") -> np.ndarray:
        """RETURNS (np.ndarray): the probabilities of `prepare`'s texts (see `predict`)."""
        texts, keep = prepared.texts, prepared.keep
        probs = uniform(len(texts))
        if not keep:
            return probs
        with self.runtime.running():
            if prepared.work is not None:
                rows = self.fast_path.run(prepared.work)[:, self._columns]
            else:
                docs = list(self.nlp.pipe((texts[i] for i in keep), batch_size=len(keep)))
                rows = np.asarray([[doc.cats[key] for key in self._cats_keys] for doc in docs], dtype="float32")
        probs[keep] = rows / rows.sum(axis=1, keepdims=True)
        return probs

    def to_disk(self, path: Path) -> None:
        with self._as_trained():
            self.nlp.to_disk(path)

    @classmethod
    def from_disk(cls, path: Path, options: Optional[SpeedOptions] = None) -> "SpacyPredictor":
        return cls(spacy.load(path), str(path), options)


class HFPredictor:
    """A Hugging Face sequence-classification checkpoint with the six emotions."""

    kind = "huggingface"

    def __init__(
        self,
        path: Union[str, Path],
        batch_size: int = 64,
        options: Optional[SpeedOptions] = None,
        allow_pickle_weights: bool = False,
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        check_weights(path, allow_pickle_weights, opt_in=PICKLE_OPT_IN)
        self.source = str(path)
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf8"))
        id2label = config.get("id2label") or {}
        names = [id2label[k] for k in sorted(id2label, key=int)]
        self.columns = _label_order(names, f"the checkpoint {path}")
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), **NO_REMOTE_CODE)
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path), **model_kwargs(allow_pickle_weights))
        self.model.eval()
        self.model.to(_torch_device())
        self.batch_size = batch_size
        limit = getattr(self.model.config, "max_position_embeddings", 512) or 512
        self.max_length = min(self.tokenizer.model_max_length, limit, 512)
        options = options or SpeedOptions.as_trained()
        self.budget = options.batch_budget(self.model.base_model)  # of the float model, before int8 packs its weights
        # int8, autocast and ONNX Runtime apply to the encoder; the small classification head stays torch float32
        self.runtime = TorchRuntime(self.model.base_model, options, self.tokenizer.model_input_names)

    @property
    def options(self) -> SpeedOptions:
        """RETURNS (SpeedOptions): the speed options this model runs with."""
        return self.runtime.options

    def _batches(self, windows: List[List[int]]) -> List[List[int]]:
        """Indices of the windows per model batch: `batch_size` windows in input
        order, or with sort_by_length length buckets of `batch_tokens` padded tokens."""
        if self.options.sort_by_length:
            return length_batches([len(w) for w in windows], self.budget)
        return [list(range(i, min(i + self.batch_size, len(windows)))) for i in range(0, len(windows), self.batch_size)]

    def tokenizes_like(self, tokenizer) -> bool:
        """False: a checkpoint tokenizes texts itself (see `SpacyPredictor.tokenizes_like`)."""
        return False

    def predict(self, texts: List[str], docs: Optional[Sequence[Optional["Doc"]]] = None) -> np.ndarray:
        """RETURNS (np.ndarray): (len(texts), 6) probabilities in LABELS order.

        docs: ignored (the checkpoint's tokenizer reads the texts).
        """
        return self.run(self.prepare(texts, docs))

    def prepare(self, texts: List[str], docs: Optional[Sequence[Optional["Doc"]]] = None) -> "PreparedTexts":
        """The host work of `predict`: the texts' wordpiece windows (see
        `SpacyPredictor.prepare`). docs: ignored.
        RETURNS (PreparedTexts): what `run` takes."""
        keep = _non_empty(texts)
        work = None
        if keep:
            work = self.tokenizer(
                [texts[i] for i in keep],
                truncation=True,
                max_length=self.max_length,
                stride=min(HF_STRIDE, self.max_length // 4),
                return_overflowing_tokens=True,
                padding=False,
            )
        return PreparedTexts(texts, keep, work)

    def run(self, prepared: "PreparedTexts") -> np.ndarray:
        """RETURNS (np.ndarray): the probabilities of `prepare`'s texts (see `predict`)."""
        import torch

        texts, keep, enc = prepared
        probs = uniform(len(texts))
        if not keep:
            return probs
        owners = np.asarray(enc["overflow_to_sample_mapping"])
        windows: List[List[int]] = enc["input_ids"]
        window_probs_arr = np.zeros((len(windows), len(LABELS)), dtype="float32")
        device = next(self.model.parameters()).device
        with torch.inference_mode(), self.runtime.running():
            for batch_ids in self._batches(windows):
                batch = self._pad([windows[i] for i in batch_ids])
                logits = self.model(**{k: v.to(device) for k, v in batch.items()}).logits.float()
                window_probs_arr[batch_ids] = torch.softmax(logits, dim=-1).cpu().numpy()[:, self.columns]
        weights = np.asarray([len(w) for w in windows], dtype="float32")
        totals = np.zeros((len(keep), len(LABELS)), dtype="float32")
        norm = np.zeros(len(keep), dtype="float32")
        np.add.at(totals, owners, window_probs_arr * weights[:, None])
        np.add.at(norm, owners, weights)
        probs[keep] = totals / norm[:, None]
        return probs

    def _pad(self, windows: List[List[int]]) -> Dict[str, "torch.Tensor"]:
        """Pad a batch of token id lists to its longest (dynamic padding)."""
        import torch

        width = max(len(w) for w in windows)
        ids = torch.full((len(windows), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(windows), width), dtype=torch.long)
        for row, window in enumerate(windows):
            ids[row, : len(window)] = torch.tensor(window)
            mask[row, : len(window)] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.tokenizer.model_input_names:
            batch["token_type_ids"] = torch.zeros_like(ids)
        return batch

    def to_disk(self, path: Path) -> None:
        with self.runtime.float_weights():
            self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    @classmethod
    def from_disk(
        cls, path: Path, options: Optional[SpeedOptions] = None, allow_pickle_weights: bool = False
    ) -> "HFPredictor":
        return cls(path, options=options, allow_pickle_weights=allow_pickle_weights)


Predictor = Union[SpacyPredictor, HFPredictor]


def _torch_device() -> str:
    """'cuda' when spaCy was told to use the GPU (require_gpu/prefer_gpu), else 'cpu'."""
    from thinc.api import get_current_ops

    return "cuda" if type(get_current_ops()).__name__ == "CupyOps" else "cpu"


PICKLE_OPT_IN = 'the setting allow_pickle_weights = true of emotion_classifier (config={"allow_pickle_weights": True})'


def from_directory(path: Path, options: Optional[SpeedOptions] = None, allow_pickle_weights: bool = False) -> Predictor:
    """Load a predictor from a spaCy pipeline or HF checkpoint directory.

    options (Optional[SpeedOptions]): how to run it (default: as trained, SpeedOptions.as_trained()).
    allow_pickle_weights (bool): load a checkpoint whose weights are only a pickle
        (it can run code when read; see `safe_loading`).
    """
    path = _package_data(Path(path))
    if (path / "config.cfg").is_file():
        return SpacyPredictor.from_disk(path, options)
    if (path / "config.json").is_file():
        return HFPredictor.from_disk(path, options, allow_pickle_weights)
    raise ModelNotFoundError(
        f"{path} is neither a spaCy pipeline (config.cfg) nor a Hugging Face checkpoint (config.json)."
    )


def _package_data(path: Path) -> Path:
    """The pipeline inside a folder of `spacy package`: its source folder
    (packages/en_emotion_trf-0.1.0) or the installed module folder
    (site-packages/en_emotion_trf) keep it in `{lang}_{name}-{version}`, named
    by their meta.json. Any other folder is returned as it is."""
    meta_path = path / "meta.json"
    if (path / "config.cfg").is_file() or not meta_path.is_file():
        return path
    meta = srsly.read_json(meta_path)
    if not all(isinstance(meta.get(key), str) for key in ("lang", "name", "version")):
        return path
    module = f"{meta['lang']}_{meta['name']}"
    for data in (path / f"{module}-{meta['version']}", path / module / f"{module}-{meta['version']}"):
        if (data / "config.cfg").is_file():
            return data
    return path


def load_predictor(model: str, options: Optional[SpeedOptions] = None, allow_pickle_weights: bool = False) -> Predictor:
    """Load the emotion model named by the component's `model` setting.

    model (str): an installed spaCy package name or a directory (a trained
        spaCy pipeline or a Hugging Face sequence-classification checkpoint).
    options (Optional[SpeedOptions]): how to run it (default: as trained, SpeedOptions.as_trained()).
    allow_pickle_weights (bool): see `from_directory`.
    RETURNS (Predictor): the loaded model.
    """
    path = Path(str(model)).expanduser()
    if path.is_dir():
        return from_directory(path, options, allow_pickle_weights)
    if spacy.util.is_package(str(model)):
        return SpacyPredictor(spacy.load(str(model)), str(model), options)
    raise ModelNotFoundError(
        f"Emotion model '{model}' not found: it is neither an installed package nor a directory. {INSTALL_HINT}"
    )


def predictor_to_bytes(predictor: Predictor) -> bytes:
    """Serialise a predictor as the files its `to_disk` writes."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        predictor.to_disk(root)
        files: Dict[str, bytes] = {
            str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
        }
    return srsly.msgpack_dumps({"kind": predictor.kind, "files": files})


def predictor_from_bytes(
    data: bytes,
    keep_dir: Optional[list] = None,
    options: Optional[SpeedOptions] = None,
    allow_pickle_weights: bool = False,
) -> Predictor:
    """Restore a predictor from `predictor_to_bytes` output.

    keep_dir (Optional[list]): receives the TemporaryDirectory the files were
        unpacked into, so the caller can keep it alive as long as the model.
    options (Optional[SpeedOptions]): how to run it (default: as trained, SpeedOptions.as_trained()).
    allow_pickle_weights (bool): see `from_directory` (a saved component holds
        safetensors weights: `HFPredictor.to_disk` writes them).
    """
    msg = srsly.msgpack_loads(data)
    tmp = tempfile.TemporaryDirectory(prefix="spacy-emotion-")
    root = Path(tmp.name)
    for name, content in msg["files"].items():
        target = (root / name).resolve()
        if not target.is_relative_to(root.resolve()):
            tmp.cleanup()
            raise ValueError(f"The saved emotion model names a file outside its own folder ({name!r}): not loaded.")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    if keep_dir is not None:
        keep_dir.append(tmp)
    return from_directory(root, options, allow_pickle_weights)
