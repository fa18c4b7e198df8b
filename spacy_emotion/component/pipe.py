"""The `emotion_classifier` component: emotion classification in any pipeline.

    nlp = spacy.load("en_core_web_sm")
    nlp.add_pipe("emotion_classifier")             # model: en_emotion_trf
    doc = nlp("I can't believe we won!")
    doc.cats          # all six emotions, summing to 1
    doc._.emotion     # the top emotion, or None below `threshold`

The component runs a trained emotion model (see `predictors`) over the text
of each doc. It never touches the doc's tokens, tensor, vectors or other
extensions: it writes `doc.cats` (keys prefixed with `cats_prefix`, other
keys kept), `doc._.emotion` and `doc._.emotion_score`, and with
`per_sentence` also `span._.emotion`, `span._.emotion_score` and
`span._.emotion_cats` for every sentence.

The speed settings (`sort_by_length`, `batch_tokens`, `inference_mode`,
`torch_threads`, `quantize`, `autocast`, `runtime`, `fast_path`, `prefetch`; see
`speed.SpeedOptions`) apply when the model loads and never change what is
saved. What each does and costs: docs/speed.md. Every setting and the
behaviour on edge cases: docs/component.md.
"""

import weakref
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np
import srsly
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.scorer import Scorer
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples
from spacy.util import minibatch, registry
from thinc.api import Config

from ..labels import LABELS
from .predictors import Predictor, from_directory, load_predictor, predictor_from_bytes, predictor_to_bytes
from .prefetch import prefetched
from .speed import SpeedOptions

DEFAULT_CONFIG_STR = """
[emotion_classifier]
model = "en_emotion_trf"
threshold = 0.0
per_sentence = false
cats_prefix = ""
scorer = {"@scorers":"spacy_emotion.emotion_scorer.v1"}
sort_by_length = true
batch_tokens = "auto"
inference_mode = true
torch_threads = 0
quantize = "auto"
autocast = "none"
runtime = "torch"
fast_path = true
prefetch = true
allow_pickle_weights = false
"""
DEFAULT_CONFIG = Config().from_str(DEFAULT_CONFIG_STR)["emotion_classifier"]

TOKEN_KEEPING_FACTORIES = frozenset(
    {
        "attribute_ruler",
        "doc_cleaner",
        "emotion_classifier",
        "entity_linker",
        "entity_ruler",
        "lemmatizer",
        "morphologizer",
        "ner",
        "parser",
        "senter",
        "sentencizer",
        "span_finder",
        "span_ruler",
        "spancat",
        "spancat_singlelabel",
        "tagger",
        "textcat",
        "textcat_multilabel",
        "tok2vec",
        "trainable_lemmatizer",
        "transformer",
    }
)
"""spaCy's and spacy-transformers' components that never change a doc's
tokens. When only these run before `emotion_classifier` and its pipeline
tokenizes as the model's pipeline does, the model takes the docs' tokens
instead of tokenizing their texts again."""


def install_extensions() -> None:
    """Register the Doc and Span extensions (idempotent)."""
    for name in ("emotion", "emotion_score"):
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)
        if not Span.has_extension(name):
            Span.set_extension(name, default=None)
    if not Span.has_extension("emotion_cats"):
        Span.set_extension("emotion_cats", default=None)


def emotion_score(examples: Iterable[Example], *, labels: List[str], **kwargs: Any) -> Dict[str, Any]:
    """Score the six (prefixed) emotion labels in `doc.cats` as exclusive classes.

    RETURNS (Dict[str, Any]): spaCy's `cats_*` scores (cats_score,
        cats_macro_f, cats_f_per_type, …).
    """
    kwargs.setdefault("threshold", 0.5)
    return Scorer.score_cats(examples, "cats", labels=labels, multi_label=False, **kwargs)


@registry.scorers("spacy_emotion.emotion_scorer.v1")
def make_emotion_scorer() -> Callable:
    """RETURNS (Callable): the scorer of `emotion_classifier`."""
    return emotion_score


@Language.factory(
    "emotion_classifier",
    assigns=[
        "doc.cats",
        "doc._.emotion",
        "doc._.emotion_score",
        "span._.emotion",
        "span._.emotion_score",
        "span._.emotion_cats",
    ],
    default_config=DEFAULT_CONFIG,
    default_score_weights={"cats_score": 1.0, "cats_macro_f": None, "cats_micro_f": None, "cats_macro_auc": None},
)
def make_emotion_classifier(
    nlp: Language,
    name: str,
    model: str,
    threshold: float,
    per_sentence: bool,
    cats_prefix: str,
    scorer: Optional[Callable],
    sort_by_length: bool,
    batch_tokens: Union[int, str],
    inference_mode: bool,
    torch_threads: int,
    quantize: str,
    autocast: str,
    runtime: str,
    fast_path: bool,
    prefetch: bool,
    allow_pickle_weights: bool,
) -> "EmotionClassifier":
    """Create an `emotion_classifier`. spaCy fills every argument from
    DEFAULT_CONFIG and the user's config.

    nlp (Language): the pipeline the component is added to.
    name (str): the component's name in the pipeline.
    model (str): the emotion model (see EmotionClassifier.__init__).
    threshold (float): below this probability `doc._.emotion` is None.
    per_sentence (bool): also classify every sentence.
    cats_prefix (str): prefix of the keys written to `doc.cats`.
    scorer (Optional[Callable]): scores `doc.cats` in `nlp.evaluate`.
    sort_by_length, batch_tokens, inference_mode, torch_threads, quantize,
        autocast, runtime, fast_path, prefetch: the speed settings (see
        `speed.SpeedOptions` and docs/speed.md).
    allow_pickle_weights (bool): load a Hugging Face checkpoint whose weights
        are only a pickle (it can run code when read; off: safetensors only).
    RETURNS (EmotionClassifier): the component.
    """
    component = EmotionClassifier(
        nlp.vocab,
        name,
        model=model,
        threshold=threshold,
        per_sentence=per_sentence,
        cats_prefix=cats_prefix,
        scorer=scorer,
        sort_by_length=sort_by_length,
        batch_tokens=batch_tokens,
        inference_mode=inference_mode,
        torch_threads=torch_threads,
        quantize=quantize,
        autocast=autocast,
        runtime=runtime,
        fast_path=fast_path,
        prefetch=prefetch,
        allow_pickle_weights=allow_pickle_weights,
    )
    component._nlp_ref = weakref.ref(nlp)
    return component


class EmotionClassifier(Pipe):
    """Set `doc.cats` and `doc._.emotion` from a trained emotion model.

    The model is loaded on first use (or by `initialize`, `from_disk` or
    `from_bytes`); `to_disk` saves it with the pipeline, so a saved pipeline
    loads even after the original model path is gone.
    """

    def __init__(
        self,
        vocab,
        name: str = "emotion_classifier",
        *,
        model: str = "en_emotion_trf",
        threshold: float = 0.0,
        per_sentence: bool = False,
        cats_prefix: str = "",
        scorer: Optional[Callable] = emotion_score,
        sort_by_length: bool = True,
        batch_tokens: Union[int, str] = "auto",
        inference_mode: bool = True,
        torch_threads: int = 0,
        quantize: str = "auto",
        autocast: str = "none",
        runtime: str = "torch",
        fast_path: bool = True,
        prefetch: bool = True,
        allow_pickle_weights: bool = False,
    ) -> None:
        """Initialize the component; the model itself is loaded on first use.

        vocab (Vocab): the pipeline's vocab.
        name (str): the component's name in the pipeline.
        model (str): an installed package or a directory: a pipeline trained
            by the spacy-emotion project, or a Hugging Face sequence-
            classification checkpoint with the six emotion labels.
        threshold (float): below this probability `doc._.emotion` is None.
        per_sentence (bool): also classify every sentence (needs sentence
            boundaries from a sentencizer, senter or parser upstream).
        cats_prefix (str): prefix of the keys written to `doc.cats`.
        scorer (Optional[Callable]): scores `doc.cats` in `nlp.evaluate`.
        sort_by_length, batch_tokens, inference_mode, torch_threads, quantize,
            autocast, runtime, fast_path, prefetch: speed settings, applied when the
            model loads (see `speed.SpeedOptions` and docs/speed.md).
        allow_pickle_weights (bool): load a Hugging Face checkpoint whose
            weights are only a pickle (`pytorch_model.bin`), which can run code
            when read. Off: safetensors weights only (`safe_loading`).
        """
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"emotion_classifier: threshold must be within [0, 1], got {threshold}")
        self.vocab = vocab
        self.name = name
        self.model = None  # no thinc model: the predictor does the work
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "model": str(model),
            "threshold": float(threshold),
            "per_sentence": bool(per_sentence),
            "cats_prefix": str(cats_prefix),
            "allow_pickle_weights": bool(allow_pickle_weights),
        }
        options = SpeedOptions(
            sort_by_length=bool(sort_by_length),
            batch_tokens=batch_tokens,
            inference_mode=bool(inference_mode),
            torch_threads=int(torch_threads),
            quantize=str(quantize),
            autocast=str(autocast),
            runtime=str(runtime),
            fast_path=bool(fast_path),
            prefetch=bool(prefetch),
        )  # validates
        self.cfg.update(options.to_dict())
        self._predictor: Optional[Predictor] = None
        self._tmp: list = []  # temp dirs that must live as long as the predictor
        # the pipeline the factory added it to (weakly), and whether its docs' tokens can go to the model
        self._nlp_ref: Optional[Callable[[], Optional[Language]]] = None
        self._tokens_checked: Dict[Tuple, bool] = {}
        install_extensions()

    # ---- properties ---------------------------------------------------
    @property
    def labels(self) -> List[str]:
        """RETURNS (List[str]): the keys this component writes to doc.cats."""
        return [self.cfg["cats_prefix"] + label for label in LABELS]

    @property
    def predictor(self) -> Predictor:
        """The loaded emotion model (loaded from `cfg['model']` on first use)."""
        if self._predictor is None:
            self._predictor = load_predictor(
                self.cfg["model"], self.speed_options, allow_pickle_weights=self.cfg["allow_pickle_weights"]
            )
        return self._predictor

    @property
    def speed_options(self) -> SpeedOptions:
        """RETURNS (SpeedOptions): the speed settings in cfg."""
        return SpeedOptions.from_cfg(self.cfg)

    # ---- prediction ---------------------------------------------------
    def __call__(self, doc: Doc, *, per_sentence: Optional[bool] = None) -> Doc:
        """Annotate one doc.

        doc (Doc): the doc to annotate.
        per_sentence (Optional[bool]): overrides the config for this call
            (also through `nlp(text, component_cfg={name: {"per_sentence": True}})`).
        RETURNS (Doc): the same doc, annotated.
        """
        self.set_annotations([doc], self.predict([doc], per_sentence=per_sentence))
        return doc

    def pipe(
        self, stream: Iterable[Doc], *, batch_size: int = 128, per_sentence: Optional[bool] = None
    ) -> Iterator[Doc]:
        """Annotate a stream of docs, running the model once per batch.

        stream (Iterable[Doc]): the docs.
        batch_size (int): docs per model call.
        per_sentence (Optional[bool]): overrides cfg["per_sentence"].
        YIELDS (Doc): the docs, annotated, in input order.
        """
        batches = ((docs, self._prepare(docs, per_sentence)) for docs in minibatch(stream, size=batch_size))
        if self.cfg["prefetch"]:
            # the next batch's docs and host work (tokens, wordpieces) in a thread while the model runs
            batches = prefetched(batches)
        for docs, prepared in batches:
            self.set_annotations(docs, self._results(prepared))
            yield from docs

    def predict(self, docs: Iterable[Doc], *, per_sentence: Optional[bool] = None) -> List[Dict[str, Any]]:
        """Run the model over a batch of docs (and their sentences) without changing them.

        per_sentence (Optional[bool]): overrides cfg["per_sentence"].
        RETURNS (List[Dict]): per doc, "doc": its probabilities (6,) and
            "sents": a list of (start, end, probabilities) for its sentences.
        """
        return self._results(self._prepare(docs, per_sentence))

    def _prepare(self, docs: Iterable[Doc], per_sentence: Optional[bool]) -> Tuple[List[List[tuple]], Any]:
        """The texts of a batch (each doc, then its sentences) and the
        predictor's host work on them (`prepare`), without running the model.
        RETURNS: the sentences (start, end) of each doc, and the predictor's
            prepared texts (None for an empty batch)."""
        if per_sentence is None:
            per_sentence = self.cfg["per_sentence"]
        docs = list(docs)
        texts: List[str] = []
        spans: List[List[tuple]] = []
        for doc in docs:
            texts.append(doc.text)
            sents = []
            if per_sentence and len(doc):
                if not doc.has_annotation("SENT_START"):
                    raise ValueError(
                        f"[{self.name}] per_sentence=true needs sentence boundaries, but this doc has none. "
                        f"Add a sentencizer before it: nlp.add_pipe('sentencizer', before='{self.name}'), "
                        "or use a pipeline with a parser or senter."
                    )
                for sent in doc.sents:
                    sents.append((sent.start, sent.end))
                    texts.append(sent.text)
            spans.append(sents)
        if not texts:
            return spans, None
        given: Optional[List[Optional[Doc]]] = None
        if self._docs_keep_model_tokens():
            given = [None] * len(texts)
            row = 0
            for doc, sents in zip(docs, spans):
                given[row] = doc
                row += 1 + len(sents)
        return spans, self.predictor.prepare(texts, given)

    def _results(self, prepared: Tuple[List[List[tuple]], Any]) -> List[Dict[str, Any]]:
        """The model run on `_prepare`'s texts, as `predict` returns it."""
        spans, work = prepared
        probs = self.predictor.run(work) if work is not None else np.zeros((0, len(LABELS)))
        results, row = [], 0
        for sents in spans:
            doc_probs = probs[row]
            sent_probs = [(s, e, probs[row + 1 + j]) for j, (s, e) in enumerate(sents)]
            row += 1 + len(sents)
            results.append({"doc": doc_probs, "sents": sent_probs})
        return results

    def _docs_keep_model_tokens(self) -> bool:
        """Whether the docs this component gets carry the tokens the model's
        own pipeline would make of their texts: its pipeline's tokenizer
        tokenizes as the model's (`tokenizes_like`), and only components of
        TOKEN_KEEPING_FACTORIES run before it. Worked out once per pipeline
        layout. Sentences are always tokenized again (a sentence's text alone
        may split differently at its edges)."""
        nlp = self._nlp_ref() if self._nlp_ref is not None else None
        if nlp is None:
            return False
        key = (id(nlp.tokenizer), tuple(nlp.pipe_names))
        if key not in self._tokens_checked:
            components = [component for _, component in nlp.pipeline]
            position = next((i for i, component in enumerate(components) if component is self), None)
            self._tokens_checked[key] = (
                position is not None
                and all(nlp.get_pipe_meta(n).factory in TOKEN_KEEPING_FACTORIES for n in nlp.pipe_names[:position])
                and self.predictor.tokenizes_like(nlp.tokenizer)
            )
        return self._tokens_checked[key]

    def _top(self, probs: np.ndarray, text: str):
        if not text.strip():
            return None, None
        best = int(np.argmax(probs))
        if float(probs[best]) < self.cfg["threshold"]:
            return None, None
        return LABELS[best], float(probs[best])

    def set_annotations(self, docs: Iterable[Doc], scores: List[Dict[str, Any]]) -> None:
        """Write doc.cats, doc._.emotion(_score) and the sentence extensions."""
        docs = list(docs)
        if not docs:
            return
        keys = [self.cfg["cats_prefix"] + label for label in LABELS]
        threshold = self.cfg["threshold"]
        probs = np.asarray([result["doc"] for result in scores[: len(docs)]])
        rows, best = probs.tolist(), probs.argmax(axis=1).tolist()  # Python floats for the batch at once
        for doc, result, row, top in zip(docs, scores, rows, best):
            doc.cats.update(zip(keys, row))
            # a blank text (no token but whitespace) has no emotion: the test of _top, without building doc.text
            blank = all(token.is_space for token in doc)
            if blank or row[top] < threshold:
                doc._.emotion, doc._.emotion_score = None, None
            else:
                doc._.emotion, doc._.emotion_score = LABELS[top], row[top]
            for start, end, probs in result["sents"]:
                span = doc[start:end]
                span._.emotion, span._.emotion_score = self._top(probs, span.text)
                span._.emotion_cats = {label: float(p) for label, p in zip(LABELS, probs)}

    # ---- training API: nothing to train -------------------------------
    def initialize(self, get_examples: Optional[Callable] = None, *, nlp: Optional[Language] = None) -> None:
        """Load the model now (it is already trained: nothing is learned)."""
        self.predictor

    def update(self, examples: Iterable[Example], *, drop: float = 0.0, sgd=None, losses=None) -> Dict[str, float]:
        """The component is frozen: validates the examples, learns nothing."""
        validate_examples(examples, "EmotionClassifier.update")
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        return losses

    def score(self, examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
        """Score doc.cats against the references' cats (`cats_*` keys)."""
        validate_examples(examples, "EmotionClassifier.score")
        return self.scorer(examples, labels=self.labels, **kwargs)

    # ---- serialisation ------------------------------------------------
    def to_disk(self, path, *, exclude=tuple()) -> None:
        """Write cfg (a record of the settings it was saved with) and the whole
        emotion model into `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(path / "cfg", self.cfg)
        self.predictor.to_disk(path / "model")

    def from_disk(self, path, *, exclude=tuple()) -> "EmotionClassifier":
        """Load the emotion model saved by `to_disk`. The settings stay this
        component's own (those of its config: `spacy.load` takes them from the
        saved config.cfg and the `config` overrides it is given), so the
        pipeline runs as `nlp.config` says; the saved cfg is not read back."""
        self._predictor = from_directory(
            Path(path) / "model", self.speed_options, allow_pickle_weights=self.cfg["allow_pickle_weights"]
        )
        return self

    def __reduce__(self):
        """Pickle (e.g. `nlp.pipe(n_process=2)` where processes are spawned) as
        the settings and `to_bytes`: the loaded model holds objects pickle
        can't take (int8 layers, an ONNX Runtime session, the padded tokenizer),
        and is rebuilt from the float32 weights with the same settings."""
        return _unpickle_component, (self.vocab, self.name, dict(self.cfg), self.scorer, self.to_bytes())

    def to_bytes(self, *, exclude=tuple()) -> bytes:
        return srsly.msgpack_dumps({"cfg": self.cfg, "model": predictor_to_bytes(self.predictor)})

    def from_bytes(self, bytes_data: bytes, *, exclude=tuple()) -> "EmotionClassifier":
        """Load the emotion model of `to_bytes`; the settings stay this
        component's own, as in `from_disk`."""
        msg = srsly.msgpack_loads(bytes_data)
        self._tmp = []
        self._predictor = predictor_from_bytes(
            msg["model"],
            keep_dir=self._tmp,
            options=self.speed_options,
            allow_pickle_weights=self.cfg["allow_pickle_weights"],
        )
        return self


def _unpickle_component(
    vocab, name: str, settings: Dict[str, Any], scorer: Optional[Callable], data: bytes
) -> EmotionClassifier:
    component = EmotionClassifier(vocab, name, scorer=scorer, **settings)
    return component.from_bytes(data)
