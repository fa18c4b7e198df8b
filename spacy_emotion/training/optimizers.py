"""An Adam optimizer with its own learning rate for the layers trained from scratch.

thinc's optimizer is called once per parameter with a key: ``(node id,
name)`` for a thinc layer's parameter (``"W"``, ``"b"``, ...) and ``(shim id,
torch parameter name)`` for a parameter of a wrapped PyTorch model, such as
the transformer of spacy-transformers (``"transformer.encoder.layer.0..."``).
``Optimizer.__call__`` takes an ``lr_scale``, but neither thinc's
``Model.finish_update`` nor the PyTorch shim passes one, so every parameter of
a pipeline gets the same rate. ``spacy_emotion.Adam.v1`` picks the scale from
the key: thinc layers' parameters (the textcat head) are scaled by
``head_learn_rate_scale``, the wrapped PyTorch model's (the pretrained
backbone) are not.
"""

from typing import Tuple

from spacy.util import registry
from thinc.api import Optimizer
from thinc.optimizers import FloatOrSeq
from thinc.types import FloatsXd


def is_torch_parameter(key: Tuple[int, str]) -> bool:
    """Whether an optimizer key names a parameter of a wrapped PyTorch model.

    key (Tuple[int, str]): the (node or shim id, parameter name) key.
    RETURNS (bool): True for a torch parameter name (dotted, as
        `named_parameters` gives it), False for a thinc layer's parameter.
    """
    return "." in key[1]


class HeadRateOptimizer(Optimizer):
    """thinc's Optimizer, with the learning rate of thinc layers' parameters
    multiplied by `head_learn_rate_scale`."""

    def __init__(self, learn_rate: FloatOrSeq, *, head_learn_rate_scale: float = 1.0, **kwargs) -> None:
        if head_learn_rate_scale <= 0:
            raise ValueError(f"head_learn_rate_scale must be > 0, got {head_learn_rate_scale}")
        super().__init__(learn_rate, **kwargs)
        self.head_learn_rate_scale = head_learn_rate_scale

    def __call__(
        self, key: Tuple[int, str], weights: FloatsXd, gradient: FloatsXd, *, lr_scale: float = 1.0
    ) -> Tuple[FloatsXd, FloatsXd]:
        if not is_torch_parameter(key):
            lr_scale *= self.head_learn_rate_scale
        return super().__call__(key, weights, gradient, lr_scale=lr_scale)


@registry.optimizers("spacy_emotion.Adam.v1")
def adam_with_head_rate(
    learn_rate: FloatOrSeq = 0.001,
    *,
    head_learn_rate_scale: float = 1.0,
    L2: FloatOrSeq = 0.0,
    beta1: FloatOrSeq = 0.9,
    beta2: FloatOrSeq = 0.999,
    eps: FloatOrSeq = 1e-08,
    grad_clip: FloatOrSeq = 1.0,
    L2_is_weight_decay: bool = True,
    use_averages: bool = True,
) -> Optimizer:
    """thinc's Adam.v1, with a learning rate for the head apart.

    learn_rate (FloatOrSeq): the rate (or schedule) of the transformer's
        parameters.
    head_learn_rate_scale (float): the factor of the rate of every thinc
        layer's parameters (the textcat head, trained from scratch).
    The other arguments are Adam.v1's.
    RETURNS (Optimizer): the optimizer.
    """
    return HeadRateOptimizer(
        learn_rate,
        head_learn_rate_scale=head_learn_rate_scale,
        L2=L2,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        grad_clip=grad_clip,
        L2_is_weight_decay=L2_is_weight_decay,
        use_averages=use_averages,
        use_radam=False,
    )
