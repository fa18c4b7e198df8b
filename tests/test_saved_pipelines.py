"""Pipelines saved by an earlier release still load and give the same scores."""

import json
from pathlib import Path

import pytest
import spacy

SAVED = Path(__file__).parent / "data" / "saved-0.1.0"


@pytest.mark.parametrize("quantize,tolerance", [("none", 1e-5), ("auto", 1e-2)])
def test_component_pipeline_saved_by_0_1_0_loads_with_same_scores(quantize, tolerance):
    """The scores were saved in float32: "none" reproduces them; the saved
    "auto" is bf16 on a CPU that computes bf16 natively, close to them."""
    overrides = {} if quantize == "auto" else {"components": {"emotion_classifier": {"quantize": quantize}}}
    nlp = spacy.load(SAVED / "with_component", config=overrides)
    assert nlp.pipe_names == ["sentencizer", "emotion_classifier"]
    expected = json.loads((SAVED / "expected_cats.json").read_text(encoding="utf8"))
    for text, cats in expected.items():
        doc = nlp(text)
        assert set(doc.cats) == set(cats)
        for label, value in cats.items():
            assert doc.cats[label] == pytest.approx(value, abs=tolerance)
        top = max(cats, key=cats.get)
        assert doc._.emotion == (top if cats[top] >= 0.2 else None)


def test_trained_pipeline_saved_by_0_1_0_loads_and_runs():
    nlp = spacy.load(SAVED / "textcat_pipeline")
    assert nlp.pipe_names == ["transformer", "textcat"]
    doc = nlp("i feel so happy today")
    assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)
    assert nlp.get_pipe("textcat").model.name  # the registered architecture resolved
