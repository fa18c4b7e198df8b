"""A textcat model that classifies from the transformer's first wordpiece.

``spacy_emotion.ClsHead.v1`` is what a Hugging Face sequence classifier does,
as a spaCy ``textcat`` model over a spacy-transformers ``transformer``
component: the hidden state of the first wordpiece of every window
(``[CLS]``, ``<s>``), averaged over a long text's windows, goes through a
pooler (dense + tanh), dropout and a softmax layer. spaCy tokens play no part:
spacy-transformers aligns no token to the special wordpieces, so the token
reductions of ``spacy.TextCatReduce.v1`` never see ``[CLS]``.

The pooler starts from the backbone's pretrained one where the checkpoint has
its weights (BERT-like models: ``pooler.dense``), and fresh otherwise
(DistilBERT, ModernBERT, checkpoints saved without a pooler). The head reads
the transformer's ``last_hidden_state`` through a ``TransformerListener``, so
its gradient flows into the transformer as that of any other listener, and
the component trains, saves and loads like any spaCy textcat.
"""

from typing import Callable, List, Optional, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import TransformerData
from spacy_transformers.layers.listener import TransformerListener
from thinc.api import Dropout, Linear, Logistic, Model, Softmax, chain, glorot_uniform_init
from thinc.types import Floats2d, Floats3d
from transformers.file_utils import ModelOutput

FIRST_WORDPIECES = "first_wordpieces"
POOLER = "cls_pooler"


@registry.architectures("spacy_emotion.ClsHead.v1")
def build_cls_head(
    exclusive_classes: bool = True,
    backbone: Optional[str] = None,
    dropout: float = 0.1,
    grad_factor: float = 1.0,
    upstream: str = "*",
    nO: Optional[int] = None,
) -> Model[List[Doc], Floats2d]:
    """Classify docs from the first wordpiece of their transformer windows.

    exclusive_classes (bool): softmax over the labels (True) or one logistic
        per label (False).
    backbone (Optional[str]): the transformer's backbone (resolved as
        `spacy_emotion.TransformerModel.v1` resolves it); its pretrained pooler
        weights, where the checkpoint has them, initialise the head's pooler.
        None: a fresh pooler.
    dropout (float): dropout before the output layer (spaCy's training.dropout
        replaces it while training).
    grad_factor (float): scale of the gradient passed to the transformer
        (0 freezes it with respect to this component).
    upstream (str): the transformer component to listen to, or "*".
    nO (Optional[int]): the number of labels, inferred when None.
    RETURNS (Model[List[Doc], Floats2d]): the textcat model.
    """
    listener = TransformerListener(upstream_name=upstream)
    output = Softmax(nO=nO) if exclusive_classes else chain(Linear(nO=nO), Logistic())
    model = chain(listener, first_wordpieces(grad_factor), cls_pooler(), Dropout(dropout), output)
    model.attrs["backbone"] = backbone
    model.init = _init_head
    return model


def first_wordpieces(grad_factor: float = 1.0) -> Model[List[TransformerData], Floats2d]:
    """The hidden state of each window's first wordpiece, averaged per doc.

    A doc without windows (an empty doc) gets a row of zeros.
    grad_factor (float): scale of the gradient passed back to the transformer.
    RETURNS (Model[List[TransformerData], Floats2d]): one row per doc.
    """
    return Model(FIRST_WORDPIECES, _first_forward, dims={"nO": None}, attrs={"grad_factor": grad_factor})


def window_means(model: Model, first: Floats2d, n_windows: List[int]) -> Floats2d:
    """The mean of consecutive rows of `first`, `n_windows[i]` of them for
    doc i (zeros where that is 0).

    first (Floats2d): the first wordpiece's hidden state of every window, doc
        by doc.
    n_windows (List[int]): the number of windows of each doc.
    RETURNS (Floats2d): one row per doc.
    """
    if first.shape[0] == 0:
        return model.ops.alloc2f(len(n_windows), first.shape[1])
    first = model.ops.xp.ascontiguousarray(model.ops.asarray2f(first))
    return model.ops.reduce_mean(first, model.ops.asarray1i(n_windows))


def _doc_windows(trf_data: TransformerData) -> Optional[Floats3d]:
    """The doc's (windows, wordpieces, width) hidden states, or None when it
    has no windows."""
    if "last_hidden_state" not in trf_data.model_output:
        return None
    hidden = trf_data.model_output.last_hidden_state
    return hidden if hidden.shape[0] and hidden.shape[1] else None


def _first_forward(
    model: Model, trf_datas: List[TransformerData], is_train: bool
) -> Tuple[Floats2d, Callable[[Floats2d], List[TransformerData]]]:
    width = model.get_dim("nO")
    windows = [_doc_windows(trf_data) for trf_data in trf_datas]
    n_windows = [0 if hidden is None else hidden.shape[0] for hidden in windows]
    present = [hidden[:, 0, :] for hidden in windows if hidden is not None]
    xp = model.ops.xp
    first = xp.concatenate(present) if present else model.ops.alloc2f(0, width)
    Y = window_means(model, model.ops.asarray2f(first), n_windows)
    grad_factor = model.attrs["grad_factor"]

    def backprop(dY: Floats2d) -> List[TransformerData]:
        d_trf_datas = []
        for i, (trf_data, hidden) in enumerate(zip(trf_datas, windows)):
            if hidden is None:
                # as trfs2arrays: an empty doc has no transformer output to pass a gradient to
                if "last_hidden_state" in trf_data.model_output:
                    d_hidden = model.ops.alloc(trf_data.model_output.last_hidden_state.shape, dtype="f")
                    d_trf_datas.append(_gradient(trf_data, d_hidden))
                continue
            d_hidden = model.ops.alloc(hidden.shape, dtype=hidden.dtype)
            d_hidden[:, 0, :] = dY[i] * (grad_factor / hidden.shape[0])
            d_trf_datas.append(_gradient(trf_data, d_hidden))
        return d_trf_datas

    return Y, backprop


def _gradient(trf_data: TransformerData, d_hidden: Floats3d) -> TransformerData:
    return TransformerData(
        model_output=ModelOutput(last_hidden_state=d_hidden), wordpieces=trf_data.wordpieces, align=trf_data.align
    )


def cls_pooler(nO: Optional[int] = None, nI: Optional[int] = None) -> Model[Floats2d, Floats2d]:
    """Dense + tanh, as a BERT pooler (its weights may be set from one).

    RETURNS (Model[Floats2d, Floats2d]): the layer.
    """
    return Model(
        POOLER,
        _pooler_forward,
        init=_pooler_init,
        dims={"nO": nO, "nI": nI},
        params={"W": None, "b": None},
    )


def _pooler_init(model: Model, X: Optional[Floats2d] = None, Y: Optional[Floats2d] = None) -> None:
    if X is not None and model.maybe_get_dim("nI") is None:
        model.set_dim("nI", X.shape[1])
    if model.maybe_get_dim("nO") is None:
        model.set_dim("nO", model.get_dim("nI"))
    shape = (model.get_dim("nO"), model.get_dim("nI"))
    model.set_param("W", glorot_uniform_init(model.ops, shape))
    model.set_param("b", model.ops.alloc1f(shape[0]))


def _pooler_forward(model: Model, X: Floats2d, is_train: bool) -> Tuple[Floats2d, Callable[[Floats2d], Floats2d]]:
    W = model.get_param("W")
    b = model.get_param("b")
    Y = model.ops.xp.tanh(model.ops.gemm(X, W, trans2=True) + b)

    def backprop(dY: Floats2d) -> Floats2d:
        d_pre = dY * (1 - Y**2)
        model.inc_grad("W", model.ops.gemm(d_pre, X, trans1=True))
        model.inc_grad("b", d_pre.sum(axis=0))
        return model.ops.gemm(d_pre, W)

    return Y, backprop


def pretrained_pooler(backbone: str) -> Optional[Tuple[Floats2d, Floats2d]]:
    """The pooler weights of a backbone checkpoint, if it has trained ones.

    backbone (str): a local folder, an offline copy's Hub id or a Hub id.
    RETURNS (Optional[Tuple[Floats2d, Floats2d]]): the dense layer's weight
        (out, in) and bias, or None for a model without a pooler or a
        checkpoint without its weights.
    """
    from transformers import AutoModel

    from ..safe_loading import model_kwargs
    from .backbone import resolve_backbone

    hf_model, info = AutoModel.from_pretrained(resolve_backbone(backbone), output_loading_info=True, **model_kwargs())
    pooler = getattr(hf_model, "pooler", None)
    dense = getattr(pooler, "dense", None)
    if dense is None or any(key.startswith("pooler.") or ".pooler." in key for key in info["missing_keys"]):
        return None
    return dense.weight.detach().cpu().numpy().copy(), dense.bias.detach().cpu().numpy().copy()


def _init_head(model: Model, X: Optional[List[Doc]] = None, Y: Optional[Floats2d] = None) -> None:
    listener, first, pooler = model.layers[0], model.layers[1], model.layers[2]
    width = listener.maybe_get_dim("nO")
    if width is None:
        raise ValueError(
            "The textcat's transformer listener has no width: the transformer component must be initialised "
            "before the textcat (put it first in the pipeline)."
        )
    first.set_dim("nO", width)
    pooler.set_dim("nI", width)
    weights = pretrained_pooler(model.attrs["backbone"]) if model.attrs["backbone"] else None
    if weights is not None and weights[0].shape[1] != width:
        raise ValueError(f"The backbone's pooler takes {weights[0].shape[1]} inputs, the transformer gives {width}.")
    if weights is not None:
        pooler.set_dim("nO", weights[0].shape[0])
    pooler.initialize()
    if weights is not None:
        pooler.set_param("W", model.ops.asarray2f(weights[0]))
        pooler.set_param("b", model.ops.asarray1f(weights[1]))
    output = model.layers[4]
    if Y is not None and output.maybe_get_dim("nO") is None:
        output.set_dim("nO", Y.shape[1]) if output.name == "softmax" else output.layers[0].set_dim("nO", Y.shape[1])
    Xp = model.ops.alloc2f(1, pooler.get_dim("nO"))
    model.layers[3].initialize()
    output.initialize(X=Xp, Y=Y[:1] if Y is not None else None)
