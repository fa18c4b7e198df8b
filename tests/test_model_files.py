"""A saved emotion model is unpacked only inside its own folder."""

import pytest
import srsly

from spacy_emotion.component.predictors import predictor_from_bytes


@pytest.mark.parametrize("name", ["../escaped.txt", "/absolute/escape.txt", "model/../../escaped.txt"])
def test_file_names_outside_the_model_folder_are_refused(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    data = srsly.msgpack_dumps({"kind": "spacy", "files": {name: b"written"}})
    with pytest.raises(ValueError, match="outside its own folder"):
        predictor_from_bytes(data)
    assert not (tmp_path / "escaped.txt").exists()
