"""Parameter averages (``use_averages``) for the transformer's torch weights.

With ``use_averages = true`` thinc's optimizer keeps a moving average of
every parameter it updates, and ``spacy train`` evaluates and saves the
pipeline under ``nlp.use_params(optimizer.averages)``. The optimizer keys a
torch parameter by ``(shim id, parameter name)`` (``PyTorchShim.finish_update``),
but ``PyTorchShim.use_params`` only looks for string keys
``"pytorch_<shim id>_<name>"``: it finds none, so the transformer is evaluated
and saved with its last weights and only the thinc layers (the textcat head)
with their averages.

`average_torch_weights` gives the model's shims a ``use_params`` that reads
the optimizer's own keys, so the whole pipeline is evaluated and saved with
its averages. `spacy_emotion.TransformerModel.v1` applies it to every
transformer it builds; it changes nothing while training, nor when the
optimizer keeps no averages.
"""

import contextlib
from typing import Dict, Iterator, Tuple

from spacy_transformers.layers.hf_shim import HFShim
from thinc.api import Model, xp2torch
from thinc.types import FloatsXd


class AveragedHFShim(HFShim):
    """spacy-transformers' HFShim whose `use_params` also takes the keys the
    thinc optimizer stores averages under: ``(shim id, torch parameter name)``."""

    @contextlib.contextmanager
    def use_params(self, params: Dict[Tuple[int, str], FloatsXd]) -> Iterator[None]:
        state = {
            key[1]: xp2torch(value, device=self.device)
            for key, value in params.items()
            if isinstance(key, tuple) and len(key) == 2 and key[0] == self.id
        }
        if not state:
            with super().use_params(params):
                yield
            return
        current = self._model.state_dict()
        unknown = set(state) - set(current)
        if unknown:
            raise KeyError(f"Averages for parameters the transformer does not have: {sorted(unknown)[:5]}")
        backup = {name: value.clone() for name, value in current.items()}
        self._model.load_state_dict(state, strict=False)
        try:
            yield
        finally:
            self._model.load_state_dict(backup)


def average_torch_weights(model: Model) -> Model:
    """Make every spacy-transformers shim in `model` an `AveragedHFShim`.

    model (Model): a spacy-transformers TransformerModel (or any model holding one).
    RETURNS (Model): the same model.
    """
    for node in model.walk():
        for shim in node.shims:
            if type(shim) is HFShim:
                shim.__class__ = AveragedHFShim
    return model
