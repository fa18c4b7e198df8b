"""Metrics against a case computed by hand."""

import pytest

from spacy_emotion.training.metrics import compute_metrics


def test_hand_computed_case():
    gold = ["joy", "joy", "joy", "sadness", "sadness", "anger"]
    pred = ["joy", "joy", "sadness", "sadness", "joy", "anger"]
    m = compute_metrics(gold, pred)
    assert m["labels"] == ["sadness", "joy", "love", "anger", "fear", "surprise"]
    assert m["accuracy"] == pytest.approx(4 / 6)
    # joy: tp 2, fp 1, fn 1 -> p = r = f = 2/3; sadness: tp 1, fp 1, fn 1 -> 1/2; anger: 1
    assert m["per_class"]["joy"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert m["per_class"]["sadness"]["f1"] == pytest.approx(0.5)
    assert m["per_class"]["anger"]["f1"] == pytest.approx(1.0)
    assert m["per_class"]["love"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 6)
    assert m["weighted_f1"] == pytest.approx((3 * 2 / 3 + 2 * 0.5 + 1 * 1.0) / 6)
    # rows = true label, columns = predicted
    cm = m["confusion_matrix"]
    assert cm[1][1] == 2 and cm[1][0] == 1  # joy -> joy twice, joy -> sadness once
    assert cm[0][1] == 1 and cm[0][0] == 1  # sadness -> joy once, sadness -> sadness once
    assert cm[3][3] == 1 and sum(map(sum, cm)) == 6


def test_bad_inputs():
    with pytest.raises(ValueError, match="gold labels"):
        compute_metrics(["joy"], [])
    with pytest.raises(ValueError, match="No examples"):
        compute_metrics([], [])


def test_gold_labels_take_the_six_labels_in_any_case_and_refuse_others():
    import spacy

    from spacy_emotion.labels import LABELS
    from spacy_emotion.training.metrics import gold_labels

    nlp = spacy.blank("en")
    lower, upper, other = nlp("a"), nlp("b"), nlp("c")
    lower.cats = {label: float(label == "fear") for label in LABELS}
    upper.cats = {label.capitalize(): float(label == "anger") for label in LABELS}
    other.cats = {"positive": 1.0, "negative": 0.0}
    assert gold_labels([lower, upper]) == ["fear", "anger"]
    with pytest.raises(ValueError, match="Gold doc 1 has no emotion label"):
        gold_labels([lower, other])
    with pytest.raises(ValueError, match="empty"):
        gold_labels([nlp("d")])
