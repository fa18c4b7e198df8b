"""The fast path of the spaCy backend: a trained transformer + textcat pipeline
run over whole batches of texts, without spaCy's per-doc pipeline.

``nlp.pipe`` on the trained pipeline splits the transformer's batch output
into one ``TransformerData`` per doc, and the textcat's listener then aligns,
pools and classifies doc by doc: small array operations per doc (on a GPU,
small kernels and host-device copies per doc) that cost more than the
transformer itself where that is fast. :class:`BatchedTextcat` runs the same
models (the pipeline's tokenizer, its transformer with its strided windows,
wordpiece tokenizer and alignment, and the textcat's own pooling, reduction
and softmax layers) once per batch, with little work per text in Python:

1. the spaCy tokens of every text: those of the Doc the caller passes along
   (the component's own docs, when its pipeline tokenizes as the model's
   does), or else ``nlp.make_doc``; cut into batches as ``Transformer.pipe``
   cuts them (sorted by length, ``max_batch_items`` padded tokens each: with
   the component's defaults, ``speed.batch_budget``);
2. per batch: the windows of ``strided_spans`` worked out from the token
   counts; one call of the fast wordpiece tokenizer's Rust ``encode_batch``
   on the windows' texts (:class:`WordpieceEncoder`);
   the alignment of wordpieces to tokens from the tokenizer's character
   offsets, in numpy (:func:`align_wordpieces`: spacy-transformers'
   ``get_alignment_via_offset_mapping``, vectorised); the torch forward pass;
3. all the batch's token vectors pooled from their wordpieces in one call of
   the textcat's pooling layer, then the doc reductions and the softmax in
   one call each.

A textcat of ``spacy_emotion.ClsHead.v1`` (the first wordpiece of each
window, see :mod:`spacy_emotion.training.cls_head`) needs no token vectors:
step 2 then skips the alignment, and step 3 is the first wordpiece's row of
every window, averaged per doc, and the head's pooler and output layers.

A transformer whose tokenizer gives no character offsets (a slow Python
tokenizer) or whose span getter is not ``strided_spans`` or ``doc_spans``
runs step 2 through the transformer model's own ``predict``.

The scores are the pipeline's own to float rounding (checked by the tests on
every architecture). Only the pipelines it can run this exactly take it:
see :meth:`BatchedTextcat.from_pipeline`; the others run ``nlp.pipe``.
"""

import functools
import itertools
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from spacy.attrs import IDX, LENGTH
from spacy.language import Language
from spacy.tokens import Doc
from spacy_transformers.span_getters import get_doc_spans, get_strided_spans
from spacy_transformers.util import batch_by_length
from thinc.api import Model, get_current_ops, torch2xp
from thinc.layers.chain import forward as _chain_forward
from thinc.types import Ragged

from ..training.cls_head import FIRST_WORDPIECES, window_means


def _flatten(model: Model) -> List[Model]:
    """The layers of nested chains, in the order they run."""
    if model._func is _chain_forward:
        return [layer for child in model.layers for layer in _flatten(child)]
    return [model]


def _window_settings(get_spans) -> Optional[Tuple[int, int]]:
    """(window, stride) of a `strided_spans` or `doc_spans` span getter (doc
    spans: one window of any length), or None for another span getter."""
    if get_spans is get_doc_spans:
        return (0, 0)
    if isinstance(get_spans, functools.partial) and get_spans.func is get_strided_spans and not get_spans.args:
        window, stride = get_spans.keywords.get("window"), get_spans.keywords.get("stride")
        if isinstance(window, int) and isinstance(stride, int) and window > 0 and stride > 0:
            return (window, stride)
    return None


def windows(n_tokens: int, window: int, stride: int) -> List[Tuple[int, int]]:
    """The (start, end) token windows of a doc of `n_tokens` tokens, as
    spacy-transformers' `strided_spans` cuts it (`window` 0: the whole doc
    in one window, as `doc_spans`).
    RETURNS (List[Tuple[int, int]]): the windows, in order."""
    if 0 < n_tokens <= window or window == 0:
        return [(0, n_tokens)]
    spans: List[Tuple[int, int]] = []
    start = 0
    for _ in range(n_tokens // stride):
        spans.append((start, min(start + window, n_tokens)))
        if start + window >= n_tokens:
            break
        start += stride
    else:
        if start < n_tokens:
            spans.append((start, n_tokens))
    return spans


def align_wordpieces(
    token_starts: np.ndarray, token_ids: np.ndarray, span_bases: np.ndarray, offsets: np.ndarray, n_tokens: int
) -> Tuple[np.ndarray, np.ndarray]:
    """spacy-transformers' `get_alignment_via_offset_mapping`, vectorised over a batch.

    Every character of a window's text belongs to the last token that starts
    at or before it (a token's range includes the one character after it, as
    there); a wordpiece is aligned to the tokens of its characters. The
    windows' characters are laid end to end, each window's one past its text's
    end, so that one sorted array of token starts serves the whole batch.

    token_starts (np.ndarray): every window's token starts, window after
        window, in those laid-out characters (increasing).
    token_ids (np.ndarray): the batch token (doc after doc) of each of those.
    span_bases (np.ndarray): where each window's characters start.
    offsets (np.ndarray): (windows, wordpieces, 2) character offsets of the
        wordpieces in their window's text ((0, 0): special and padding).
    n_tokens (int): the tokens of the batch.
    RETURNS (Tuple[np.ndarray, np.ndarray]): the flat wordpiece rows
        (window * wordpieces + position) of every token, token after token
        in increasing order, and each token's number of rows.
    """
    n_windows, width = offsets.shape[:2]
    starts = offsets[:, :, 0].astype("int64", copy=False)
    ends = offsets[:, :, 1].astype("int64", copy=False)
    real = np.flatnonzero((ends > starts).ravel())
    base = np.repeat(span_bases, width)[real]
    first = np.searchsorted(token_starts, base + starts.ravel()[real], side="right") - 1
    last = np.searchsorted(token_starts, base + ends.ravel()[real] - 1, side="right") - 1
    count = last - first + 1
    if count.size and (count == 1).all():
        tokens, rows = token_ids[first], real
    else:
        step = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        tokens, rows = token_ids[np.repeat(first, count) + step], np.repeat(real, count)
    order = np.argsort(tokens, kind="stable")
    return rows[order].astype("int32"), np.bincount(tokens, minlength=n_tokens).astype("int32")


class WordpieceEncoder:
    """A fast tokenizer's ``tokenizer(texts, padding="longest",
    return_tensors="np", return_attention_mask=True[, return_offsets_mapping=True])``,
    from its Rust tokenizer's ``encode_batch``, without the Python work per
    text of transformers' ``BatchEncoding`` (a third or more of the call's
    time on short texts). The same arrays (tested on every architecture);
    a tokenizer without a padding token is called as it is, and raises as
    transformers does."""

    def __init__(self, tokenizer) -> None:
        """tokenizer (PreTrainedTokenizerFast): the transformer's tokenizer."""
        self.tokenizer = tokenizer
        # token_type_ids where the model takes them (transformers' return_token_type_ids=None)
        self.type_ids = "token_type_ids" in tokenizer.model_input_names

    def _backend(self):
        """The Rust tokenizer, set to pad to the longest text (or a multiple:
        see `predictors.pad_to_multiple`) and not to truncate, as transformers
        sets it before each call; None without a padding token."""
        tokenizer = self.tokenizer
        if tokenizer.pad_token is None:
            return None
        backend = tokenizer.backend_tokenizer
        padding = {
            "length": None,
            "pad_to_multiple_of": getattr(type(tokenizer), "_pad_multiple", None),
            "pad_id": tokenizer.pad_token_id,
            "pad_token": tokenizer.pad_token,
            "pad_type_id": tokenizer.pad_token_type_id,
            "direction": tokenizer.padding_side,
        }
        if backend.padding != padding:
            backend.enable_padding(**padding)
        if backend.truncation is not None:
            backend.no_truncation()
        if backend.encode_special_tokens:
            backend.encode_special_tokens = False
        return backend

    def __call__(self, texts: List[str], offsets: bool = False) -> Dict[str, np.ndarray]:
        """RETURNS (Dict[str, np.ndarray]): "input_ids", "attention_mask",
        "token_type_ids" (where the model takes them) and with `offsets`
        "offset_mapping", as int64 arrays (texts, wordpieces[, 2])."""
        backend = self._backend()
        if backend is None:
            return dict(
                self.tokenizer(
                    texts,
                    add_special_tokens=True,
                    return_attention_mask=True,
                    return_offsets_mapping=offsets,
                    return_tensors="np",
                    return_token_type_ids=None,
                    padding="longest",
                )
            )
        encodings = backend.encode_batch(texts, add_special_tokens=True)
        result = {
            "input_ids": np.array([e.ids for e in encodings], dtype="int64"),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype="int64"),
        }
        if self.type_ids:
            result["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype="int64")
        if offsets:
            pairs = itertools.chain.from_iterable(e.offsets for e in encodings)
            flat = np.fromiter(itertools.chain.from_iterable(pairs), dtype="int64", count=result["input_ids"].size * 2)
            result["offset_mapping"] = flat.reshape(len(encodings), -1, 2)
        return result


class PreparedBatch(NamedTuple):
    """One model batch of `BatchedTextcat.prepare`."""

    indices: List[int]
    """The batch's texts, by their place in the call."""
    doc_lengths: List[int]
    """Their spaCy tokens."""
    inputs: Optional[Dict[str, np.ndarray]]
    """The transformer's inputs; None where the transformer model's own predict runs."""
    docs: Optional[List[Doc]]
    """The docs, for the transformer model's own predict (else None)."""
    n_windows: Optional[List[int]]
    """The windows of each doc (with `inputs`)."""
    align: Optional[Tuple[np.ndarray, np.ndarray]]
    """Wordpiece rows and their number per token (with `inputs`, for a token-pooling head)."""


class Prepared(NamedTuple):
    """The host work of one `BatchedTextcat.predict` call, done."""

    n_texts: int
    batches: List[PreparedBatch]


class BatchedTextcat:
    """A pipeline's transformer and textcat run batch by batch (see the module)."""

    def __init__(
        self, nlp: Language, transformer: str, textcat: str, pooling: Optional[Model], head: List[Model]
    ) -> None:
        """nlp (Language): the pipeline.
        transformer (str): its transformer component.
        textcat (str): its textcat component.
        pooling (Optional[Model]): the textcat's wordpiece-to-token pooling
            layer, or None for a first-wordpiece head (`head[0]` is then its
            `first_wordpieces` layer).
        head (List[Model]): the textcat's layers after the pooling, in order.
        """
        from transformers import PreTrainedTokenizerFast

        self.nlp = nlp
        self.transformer = nlp.get_pipe(transformer)
        self.pooling = pooling
        self.head = head
        self.labels = list(nlp.get_pipe(textcat).labels)
        model = self.transformer.model
        self.tokenizer = model.tokenizer
        self.window_settings = _window_settings(model.attrs["get_spans"])
        # without character offsets or with another span getter: the transformer model's own predict
        self.own_batches = isinstance(self.tokenizer, PreTrainedTokenizerFast) and self.window_settings is not None
        self.encoder = WordpieceEncoder(self.tokenizer) if self.own_batches else None

    @classmethod
    def from_pipeline(cls, nlp: Language) -> Tuple[Optional["BatchedTextcat"], str]:
        """The fast path of `nlp`, if it can run it exactly.

        It needs a pipeline of exactly two enabled components, a `transformer`
        and then a `textcat`, whose model is a spacy-transformers listener of
        that transformer pooled per token (`TransformerListener`) and then
        reduced per doc (e.g. `spacy.TextCatReduce.v1`, `TextCatCNN`), or
        that of a first-wordpiece head (`spacy_emotion.ClsHead.v1`). Other
        components could change the docs the textcat sees, and other textcat
        architectures (the bag-of-words of `TextCatEnsemble`) read the docs
        themselves.
        RETURNS (Tuple[Optional[BatchedTextcat], str]): the fast path, or None
            and why not.
        """
        factories = [nlp.get_pipe_meta(name).factory for name in nlp.pipe_names]
        if factories != ["transformer", "textcat"]:
            return None, f"the pipeline's components are {', '.join(factories) or 'none'}, not transformer and textcat"
        transformer, textcat = nlp.pipe_names
        layers = _flatten(nlp.get_pipe(textcat).model)
        names = [layer.name for layer in layers[:3]]
        if names[:2] == ["transformer-listener", FIRST_WORDPIECES] and len(layers) > 2:
            pooling, head = None, layers[1:]
        elif names == ["transformer-listener", "trfs2arrays", "list2ragged"] and len(layers) > 3:
            pooling, head = layers[1].layers[0], layers[3:]
        else:
            return (
                None,
                f"the textcat's model ({nlp.get_pipe(textcat).model.name}) is not a transformer listener "
                "pooled per token and doc",
            )
        upstream = layers[0].upstream_name
        if upstream not in ("*", transformer):
            return None, f"the textcat listens to {upstream!r}, not to {transformer!r}"
        return cls(nlp, transformer, textcat, pooling=pooling, head=head), ""

    def tokenizes_like(self, tokenizer) -> bool:
        """Whether `tokenizer` (another pipeline's) makes the tokens this
        pipeline's tokenizer makes: a spaCy `Tokenizer` with the same settings
        (prefixes, suffixes, infixes, exceptions, token and URL matches)."""
        own = self.nlp.tokenizer
        if type(tokenizer) is not type(own) or not hasattr(own, "to_bytes"):
            return False
        if tokenizer is own:
            return True
        try:
            return tokenizer.to_bytes(exclude=["vocab"]) == own.to_bytes(exclude=["vocab"])
        except (TypeError, ValueError, NotImplementedError):
            return False

    def predict(self, texts: List[str], docs: Optional[Sequence[Optional[Doc]]] = None) -> np.ndarray:
        """RETURNS (np.ndarray): (len(texts), n_labels) textcat scores, columns
        in the textcat's label order. Every text must have a token (no empty
        or whitespace-only text).

        docs (Optional[Sequence[Optional[Doc]]]): per text, a Doc of it whose
            tokens are those this pipeline's tokenizer makes (see
            `tokenizes_like`), or None: the text is tokenized here.
        """
        return self.run(self.prepare(texts, docs))

    def prepare(self, texts: List[str], docs: Optional[Sequence[Optional[Doc]]] = None) -> "Prepared":
        """The host work of `predict` (steps 1 and 2 up to the forward pass:
        tokens, batches, windows, wordpieces, alignment), without torch; `run`
        does the rest. The two may run in different threads, so that one
        call's host work overlaps another's model (`prefetch`).
        RETURNS (Prepared): what `run` takes."""
        if docs is None:
            docs = [None] * len(texts)
        docs = [doc if doc is not None else self.nlp.make_doc(text) for text, doc in zip(texts, docs)]
        batches = []
        for indices in batch_by_length(docs, self.transformer.cfg["max_batch_items"]):
            batch_docs = [docs[i] for i in indices]
            lengths = [len(doc) for doc in batch_docs]
            if self.own_batches:
                inputs, n_windows, align = self._encode(batch_docs, [texts[i] for i in indices])
                batches.append(PreparedBatch(indices, lengths, inputs, None, n_windows, align))
            else:
                batches.append(PreparedBatch(indices, lengths, None, batch_docs, None, None))
        return Prepared(len(docs), batches)

    def run(self, prepared: "Prepared") -> np.ndarray:
        """RETURNS (np.ndarray): the scores of `prepare`'s texts (see `predict`)."""
        scores = np.zeros((prepared.n_texts, len(self.labels)), dtype="float32")
        for batch in prepared.batches:
            scores[batch.indices] = self._run_batch(batch)
        return scores

    def _run_batch(self, batch: "PreparedBatch") -> np.ndarray:
        ops = get_current_ops()
        if batch.inputs is not None:
            hidden, n_windows, align = self._forward(batch.inputs), batch.n_windows, batch.align
        else:
            output = self.transformer.model.predict(batch.docs)
            hidden = torch2xp(output.model_output.last_hidden_state)
            n_windows = [len(spans) for spans in output.spans]
            align = None
            if self.pooling is not None:
                align = (ops.to_numpy(output.align.dataXd), ops.to_numpy(output.align.lengths))
        if self.pooling is None:
            first = window_means(self.head[0], hidden[:, 0, :], n_windows)
            return ops.to_numpy(self._run(self.head[1:], first))
        hidden = ops.reshape2f(hidden, -1, hidden.shape[-1])
        doc_lengths = batch.doc_lengths
        index, lengths = self._token_rows(align, doc_lengths, hidden.shape[0])
        if index.size and index.max() == hidden.shape[0]:  # docs without wordpieces point at one zero row
            hidden = ops.xp.concatenate([hidden, ops.alloc2f(1, hidden.shape[1])])
        tokens = self.pooling.predict(Ragged(hidden[ops.asarray1i(index)], ops.asarray1i(lengths)))
        return ops.to_numpy(self._run(self.head, Ragged(tokens, ops.asarray1i(doc_lengths))))

    def _encode(self, docs: List[Doc], doc_texts: List[str]):
        """What spacy-transformers' `TransformerModel.predict` computes for
        the batch before its forward pass, without its per-token Python: the
        windows, one call of the fast tokenizer, the alignment in numpy (token
        heads only). RETURNS: the model inputs (numpy), the number of windows
        of each doc, and the alignment (rows and lengths per token; None for
        a first-wordpiece head)."""
        window, stride = self.window_settings
        need_align = self.pooling is not None
        # the windows (doc, first token, end token) of the batch, tokens numbered across the batch
        n_windows: List[int] = []
        window_doc: List[int] = []
        window_start: List[int] = []
        window_end: List[int] = []
        token_offset = 0
        for i, doc in enumerate(docs):
            n = len(doc)
            spans = [(0, n)] if 0 < n <= window or window == 0 else windows(n, window, stride)
            n_windows.append(len(spans))
            for start, end in spans:
                window_doc.append(i)
                window_start.append(token_offset + start)
                window_end.append(token_offset + end)
            token_offset += n
        chars = np.concatenate([doc.to_array([IDX, LENGTH]) for doc in docs]).astype("int64", copy=False)
        token_start = chars[:, 0]
        first, last = np.asarray(window_start, dtype="int64"), np.asarray(window_end, dtype="int64") - 1
        begins, finishes = token_start[first], token_start[last] + chars[last, 1]
        texts = [doc_texts[d][b:f] for d, b, f in zip(window_doc, begins.tolist(), finishes.tolist())]
        encoding = self.encoder(texts, offsets=need_align)
        # spacy-transformers drops the wordpieces past the model's length
        width = min(encoding["input_ids"].shape[1], self.tokenizer.model_max_length)
        align = None
        if need_align:
            # the windows' texts laid end to end, each one character past its end
            lengths = last - first + 1
            bases = np.concatenate([[0], np.cumsum(finishes - begins + 1)[:-1]]).astype("int64")
            ids = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths - first, lengths)
            starts = token_start[ids] - np.repeat(begins - bases, lengths)
            align = align_wordpieces(starts, ids, bases, encoding["offset_mapping"][:, :width], token_offset)
        inputs = {
            "input_ids": np.ascontiguousarray(encoding["input_ids"][:, :width]),
            # float, as spacy-transformers passes it
            "attention_mask": np.ascontiguousarray(encoding["attention_mask"][:, :width], dtype="float32"),
        }
        if "token_type_ids" in encoding:
            inputs["token_type_ids"] = np.ascontiguousarray(encoding["token_type_ids"][:, :width])
        return inputs, n_windows, align

    def _forward(self, inputs: Dict[str, np.ndarray]):
        """RETURNS: the transformer's last hidden state (windows, wordpieces,
        width) for `_encode`'s inputs, as spacy-transformers' predict runs it."""
        import torch

        module = self.transformer.model.transformer
        if module.training:
            module.eval()
        device = next(module.parameters()).device
        shim = self.transformer.model.layers[0].shims[0]
        with torch.no_grad(), torch.autocast(device_type="cuda", enabled=bool(shim._mixed_precision)):
            output = module(**{key: torch.from_numpy(value).to(device) for key, value in inputs.items()})
        return torch2xp(output.last_hidden_state)

    @staticmethod
    def _run(layers: List[Model], X):
        """RETURNS: `X` through `layers` in order (their `predict`)."""
        for layer in layers:
            X = layer.predict(X)
        return X

    @staticmethod
    def _token_rows(
        align: Tuple[np.ndarray, np.ndarray], doc_lengths: List[int], zero_row: int
    ) -> Tuple[np.ndarray, np.ndarray]:
        """The wordpiece rows of every token of the batch (`align`: row
        indices and lengths per token, doc by doc), as `Transformer.pipe` and
        the listener would see them: a doc none of whose tokens has a
        wordpiece (e.g. a text of zero-width spaces) gets one zero row per
        token, as spacy-transformers' alignment of such a doc does; tokens
        without wordpieces in other docs keep no rows, as there.
        RETURNS (Tuple[np.ndarray, np.ndarray]): row indices and lengths per token."""
        index = np.asarray(align[0], dtype="int32")
        lengths = np.array(align[1], dtype="int32")
        doc_lengths = np.asarray(doc_lengths, dtype="int32")
        if lengths.shape[0] != doc_lengths.sum():
            raise ValueError(f"The transformer aligned {lengths.shape[0]} tokens for a batch of {doc_lengths.sum()}.")
        starts = np.concatenate([[0], np.cumsum(doc_lengths)[:-1]]).astype("int64")
        empty_docs = np.add.reduceat(lengths, starts) == 0
        if not empty_docs.any():
            return index, lengths
        empty_tokens = np.repeat(empty_docs, doc_lengths)
        pieces = np.split(index, np.cumsum(lengths)[:-1])
        zero = np.asarray([zero_row], dtype="int32")
        index = np.concatenate([zero if empty else piece for piece, empty in zip(pieces, empty_tokens)]).astype("int32")
        lengths[empty_tokens] = 1
        return index, lengths
