"""The fast path of the spaCy backend: a trained transformer + textcat pipeline
run over whole batches of texts, without spaCy's per-doc pipeline.

``nlp.pipe`` on the trained pipeline splits the transformer's batch output
into one ``TransformerData`` per doc, and the textcat's listener then aligns,
pools and classifies doc by doc: small array operations per doc (on a GPU,
small kernels and host-device copies per doc) that cost more than the
transformer itself where that is fast. :class:`BatchedTextcat` runs the same
models (the pipeline's tokenizer, its transformer model with its span getter,
wordpiece tokenizer and alignment, and the textcat's own pooling, reduction
and softmax layers) once per batch:

1. ``nlp.make_doc`` on every text (spaCy's tokenizer: the tokens the model
   was trained on), cut into batches as ``Transformer.pipe`` cuts them
   (sorted by length, ``max_batch_items`` padded tokens each);
2. the transformer model's ``predict`` on a batch: strided spans, wordpieces,
   the alignment of every token to its wordpieces, the torch forward pass;
3. all the batch's token vectors pooled from their wordpieces in one call of
   the textcat's pooling layer, then the doc reductions and the softmax in
   one call each.

A textcat of ``spacy_emotion.ClsHead.v1`` (the first wordpiece of each
window, see :mod:`spacy_emotion.training.cls_head`) needs no token vectors:
step 3 is then the first wordpiece's row of every window, averaged per doc,
and the head's pooler and output layers, once per batch.

The scores are the pipeline's own to float rounding (checked by the tests on
every architecture). Only the pipelines it can run this exactly take it:
see :meth:`BatchedTextcat.from_pipeline`; the others run ``nlp.pipe``.
"""

from typing import List, Optional, Tuple

import numpy as np
from spacy.language import Language
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
        self.nlp = nlp
        self.transformer = nlp.get_pipe(transformer)
        self.pooling = pooling
        self.head = head
        self.labels = list(nlp.get_pipe(textcat).labels)

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

    def predict(self, texts: List[str]) -> np.ndarray:
        """RETURNS (np.ndarray): (len(texts), n_labels) textcat scores, columns
        in the textcat's label order. Every text must have a token (no empty
        or whitespace-only text)."""
        docs = [self.nlp.make_doc(text) for text in texts]
        scores = np.zeros((len(docs), len(self.labels)), dtype="float32")
        for indices in batch_by_length(docs, self.transformer.cfg["max_batch_items"]):
            scores[indices] = self._predict_batch([docs[i] for i in indices])
        return scores

    def _predict_batch(self, docs) -> np.ndarray:
        ops = get_current_ops()
        output = self.transformer.model.predict(docs)
        hidden = torch2xp(output.model_output.last_hidden_state)
        if self.pooling is None:
            first = window_means(self.head[0], hidden[:, 0, :], [len(spans) for spans in output.spans])
            return ops.to_numpy(self._run(self.head[1:], first))
        hidden = ops.reshape2f(hidden, -1, hidden.shape[-1])
        doc_lengths = [len(doc) for doc in docs]
        index, lengths = self._token_rows(output.align, doc_lengths, hidden.shape[0])
        if index.size and index.max() == hidden.shape[0]:  # docs without wordpieces point at one zero row
            hidden = ops.xp.concatenate([hidden, ops.alloc2f(1, hidden.shape[1])])
        tokens = self.pooling.predict(Ragged(hidden[ops.asarray1i(index)], ops.asarray1i(lengths)))
        return ops.to_numpy(self._run(self.head, Ragged(tokens, ops.asarray1i(doc_lengths))))

    @staticmethod
    def _run(layers: List[Model], X):
        """RETURNS: `X` through `layers` in order (their `predict`)."""
        for layer in layers:
            X = layer.predict(X)
        return X

    @staticmethod
    def _token_rows(align: Ragged, doc_lengths: List[int], zero_row: int) -> Tuple[np.ndarray, np.ndarray]:
        """The wordpiece rows of every token of the batch (`align`: a Ragged
        over the tokens, doc by doc), as `Transformer.pipe` and the listener
        would see them: a doc none of whose tokens has a wordpiece (e.g. a
        text of zero-width spaces) gets one zero row per token, as
        spacy-transformers' alignment of such a doc does; tokens without
        wordpieces in other docs keep no rows, as there.
        RETURNS (Tuple[np.ndarray, np.ndarray]): row indices and lengths per token."""
        ops = get_current_ops()  # spacy-transformers keeps the alignment in numpy; to_numpy takes either
        index = np.asarray(ops.to_numpy(align.dataXd), dtype="int32")
        lengths = np.array(ops.to_numpy(align.lengths), dtype="int32")
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
