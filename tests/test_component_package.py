"""A pipeline that contains emotion_classifier packages, installs and loads by name."""

import json
import sys

import pytest
import spacy
from helpers import run_checked, venv_with_wheel

from spacy_emotion.labels import LABELS


def test_package_pipeline_with_component(trained_pipeline, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("emotion_classifier", config={"model": str(trained_pipeline), "per_sentence": True})
    expected = nlp("i feel so happy today. i am scared.").cats
    nlp.meta["name"] = "emotion_wrapped"
    nlp.meta["version"] = "0.0.1"
    nlp.to_disk(tmp_path / "pipeline")
    (tmp_path / "pkg").mkdir()
    run_checked(
        [
            sys.executable,
            "-m",
            "spacy",
            "package",
            str(tmp_path / "pipeline"),
            str(tmp_path / "pkg"),
            "--build",
            "wheel",
            "--force",
        ],
        tmp_path,
    )
    wheels = list((tmp_path / "pkg").glob("*/dist/*.whl"))
    assert len(wheels) == 1
    py = venv_with_wheel(wheels[0], tmp_path)
    code = (
        "import json, spacy\n"
        "nlp = spacy.load('en_emotion_wrapped')\n"
        "doc = nlp('i feel so happy today. i am scared.')\n"
        "sents = [s._.emotion for s in doc.sents]\n"
        "print(json.dumps({'cats': doc.cats, 'sents': sents, 'reqs': nlp.meta.get('requirements', [])}))\n"
    )
    out = json.loads(run_checked([str(py), "-c", code], tmp_path).stdout.strip().splitlines()[-1])
    assert out["cats"] == pytest.approx(expected, abs=1e-6)
    assert len(out["sents"]) == 2 and all(s in LABELS for s in out["sents"])
    assert any(r.replace("_", "-").startswith("spacy-emotion") for r in out["reqs"]), out["reqs"]


@pytest.mark.slow
def test_real_pipeline_package():
    """With --slow: the installed en_emotion_trf (built by `make run`) through the component."""
    if not spacy.util.is_package("en_emotion_trf"):
        pytest.skip("en_emotion_trf is not installed: run `make run` first")
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("emotion_classifier", config={"per_sentence": True})
    cases = {
        "i feel so lonely and miserable without you": "sadness",
        "i am thrilled and so happy with the results": "joy",
        "i am furious that they lied to me again": "anger",
        "i feel terrified walking home alone at night": "fear",
    }
    docs = list(nlp.pipe(cases))
    assert [d._.emotion for d in docs] == list(cases.values())
    assert all(s._.emotion in LABELS for d in docs for s in d.sents)
