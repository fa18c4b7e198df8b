"""Loading Hugging Face files without running code from them.

A checkpoint's weights load from safetensors files only: a pickle
(``pytorch_model.bin``, ``*.pt``, ``*.ckpt``) can run any code while it is
read, so a folder whose only weights are a pickle is refused unless the
caller opts in (the component's ``allow_pickle_weights``). Code shipped with
a model (``trust_remote_code``) is never run.
"""

from pathlib import Path
from typing import Any, Dict, List, Union

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class PickleWeightsError(ValueError):
    """A checkpoint whose weights are only in pickle files, and no opt-in."""


def model_kwargs(allow_pickle_weights: bool = False) -> Dict[str, Any]:
    """Keyword arguments for `AutoModel*.from_pretrained`: safetensors only
    (unless `allow_pickle_weights`), never the model's own code."""
    kwargs: Dict[str, Any] = {"trust_remote_code": False}
    if not allow_pickle_weights:
        kwargs["use_safetensors"] = True
    return kwargs


NO_REMOTE_CODE: Dict[str, Any] = {"trust_remote_code": False}
"""Keyword arguments for `AutoTokenizer` and `AutoConfig.from_pretrained`."""


def pickle_files(folder: Union[str, Path]) -> List[str]:
    """RETURNS (List[str]): names of the weight files in `folder` that are pickles."""
    return sorted(p.name for p in Path(folder).iterdir() if p.is_file() and p.suffix in PICKLE_SUFFIXES)


def check_weights(folder: Union[str, Path], allow_pickle_weights: bool = False, opt_in: str = "") -> None:
    """Refuse a checkpoint folder whose only weights are pickles.

    folder (Union[str, Path]): the checkpoint folder.
    allow_pickle_weights (bool): accept pickled weights (they can run code when read).
    opt_in (str): how the caller opts in, named in the error.
    RAISES PickleWeightsError: no safetensors file, pickled weights, and no opt-in.
    """
    folder = Path(folder)
    if allow_pickle_weights or any(p.name.endswith(SAFETENSORS_SUFFIX) for p in folder.iterdir()):
        return
    pickles = pickle_files(folder)
    if pickles:
        raise PickleWeightsError(
            f"{folder} holds its weights only as a pickle ({', '.join(pickles)}), which can run code when it "
            "is loaded; only safetensors weights are loaded. Convert the checkpoint: load it once where you "
            "trust it and save it with `model.save_pretrained(folder)` (safetensors by default)"
            + (f", or opt in if you trust its source: {opt_in}." if opt_in else ".")
        )
