"""Tests of the analysis reports: exploration, features, baselines, embedding map, evaluation analyses, report.

Offline and small: toy data (tests/tiny.py), the tiny random BERT backbone
and hand-made predictions. Numbers are checked against hand-computed cases.
"""

import base64
import json
import math
from pathlib import Path

import numpy as np
import pytest
import srsly
from PIL import Image
from typer.testing import CliRunner

from spacy_emotion.cli import app
from spacy_emotion.labels import LABEL_TO_ID, LABELS
from spacy_emotion.reports import plots
from spacy_emotion.reports.analysis import (
    analyze,
    analyze_predictions,
    calibration,
    example_losses,
    normalized_confusion,
    top_losses,
)
from spacy_emotion.reports.baseline import comparison_markdown, train_baselines, write_comparison
from spacy_emotion.reports.explore import explore
from spacy_emotion.reports.features import embed, embed_splits, load_backbone, token_counts
from spacy_emotion.reports.html_report import build_report
from spacy_emotion.training.dataset import read_folder
from spacy_emotion.training.metrics import compute_metrics, write_predictions

runner = CliRunner()


def one_hot_probs(rows):
    """(n, 6) probabilities from {label: prob} dicts; unspecified labels share the rest equally."""
    out = []
    for row in rows:
        rest = (1.0 - sum(row.values())) / (len(LABELS) - len(row))
        out.append([row.get(label, rest) for label in LABELS])
    return np.asarray(out)


def assert_png(path: Path, kind: str) -> None:
    assert path.is_file() and path.stat().st_size > 0, path
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == plots.pixel_size(kind), (path, image.size)


def invoke(args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


# --- evaluation analyses: hand-computed cases ---------------------------------


def test_confusion_matrix_rows_are_true_labels():
    gold = ["sadness", "sadness", "sadness", "joy", "fear"]
    pred = ["sadness", "joy", "joy", "joy", "sadness"]
    shares, counts = normalized_confusion(gold, pred)
    s, j, f = LABEL_TO_ID["sadness"], LABEL_TO_ID["joy"], LABEL_TO_ID["fear"]
    expected = np.zeros((6, 6), dtype=int)
    expected[s, s], expected[s, j], expected[j, j], expected[f, s] = 1, 2, 1, 1
    assert counts.tolist() == expected.tolist()
    assert counts.tolist() == compute_metrics(gold, pred)["confusion_matrix"]
    assert shares[s].tolist() == pytest.approx([1 / 3, 2 / 3, 0, 0, 0, 0])
    assert shares[j, j] == 1.0 and shares[f, s] == 1.0
    # labels without gold examples: a row of zeros, not NaN
    for label in ("love", "anger", "surprise"):
        assert shares[LABEL_TO_ID[label]].tolist() == [0.0] * 6


def test_example_losses_and_top_loss_ordering():
    texts = ["a", "b", "c", "d"]
    gold = ["joy", "anger", "fear", "love"]
    probs = one_hot_probs(
        [
            {"joy": 0.9},  # right, confident: loss -log 0.9
            {"anger": 0.1, "sadness": 0.6},  # wrong: -log 0.1
            {"fear": 0.5},  # right: -log 0.5
            {"love": 0.1, "joy": 0.7},  # wrong, same loss as "b"
        ]
    )
    losses = example_losses(gold, probs)
    assert losses.tolist() == pytest.approx([-math.log(0.9), -math.log(0.1), -math.log(0.5), -math.log(0.1)])
    top = top_losses(texts, gold, probs, n=3)
    assert [row["text"] for row in top] == ["b", "d", "c"]  # ties keep the input order
    assert [row["rank"] for row in top] == [1, 2, 3]
    assert (
        top[0]["pred"] == "sadness"
        and top[0]["prob"] == pytest.approx(0.6)
        and top[0]["gold_prob"] == pytest.approx(0.1)
    )
    assert top[1]["pred"] == "joy" and not top[1]["correct"] and top[2]["correct"]
    assert len(top_losses(texts, gold, probs, n=10)) == 4


def test_example_losses_match_scikit_learn_even_for_tiny_probabilities():
    from sklearn.metrics import log_loss

    gold = ["sadness", "joy", "fear"]
    probs = one_hot_probs([{"joy": 1 - 1e-14, "sadness": 1e-14}, {"joy": 0.5, "love": 0.5}, {"fear": 1.0}])
    expected = log_loss([LABEL_TO_ID[g] for g in gold], probs, labels=list(range(len(LABELS))))
    assert example_losses(gold, probs).mean() == pytest.approx(expected, rel=1e-9)
    assert example_losses(gold, probs)[0] == pytest.approx(-math.log(1e-14), rel=1e-6)  # not clipped at 1e-12


def test_ece_constructed_example():
    # top-label confidences 0.95 x4 (3 right) and 0.65 x2 (1 right), 10 bins:
    # ECE = 4/6 * |0.75 - 0.95| + 2/6 * |0.5 - 0.65| = 1.1 / 6
    gold = ["joy", "joy", "joy", "sadness", "anger", "fear"]
    probs = one_hot_probs([{"joy": 0.95}] * 4 + [{"anger": 0.65}, {"anger": 0.65}])
    calib = calibration(gold, probs, n_bins=10)
    assert calib["ece"] == pytest.approx(1.1 / 6)
    assert [(b["lower"], b["count"]) for b in calib["bins"]] == [(pytest.approx(0.6), 2), (pytest.approx(0.9), 4)]
    assert [b["accuracy"] for b in calib["bins"]] == pytest.approx([0.5, 0.75])
    assert [b["confidence"] for b in calib["bins"]] == pytest.approx([0.65, 0.95])


def test_ece_is_zero_when_calibrated_and_bin_edges_are_upper_inclusive():
    gold = ["joy", "joy", "joy", "sadness"]
    probs = one_hot_probs([{"joy": 0.75}] * 4)  # 75% confident, 75% right
    assert calibration(gold, probs, n_bins=4)["ece"] == pytest.approx(0.0)
    # a confidence on an edge (0.5) belongs to the bin below it, as in sklearn's calibration_curve
    bins = calibration(["joy"], one_hot_probs([{"joy": 0.5}]), n_bins=4)["bins"]
    assert [(b["lower"], b["upper"]) for b in bins] == [(0.25, 0.5)]


def test_analyze_writes_every_file(tmp_path):
    rng = np.random.default_rng(0)
    gold = [LABELS[i % 6] for i in range(60)]
    logits = rng.normal(size=(60, 6))
    logits[np.arange(60), [LABEL_TO_ID[g] for g in gold]] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    texts = [f"text number {i} | with a pipe and <b>markup</b> & more" for i in range(60)]
    predictions = tmp_path / "preds.jsonl"
    write_predictions(predictions, texts, gold, probs.astype("float32"))
    result = analyze_predictions(predictions, tmp_path / "trf", top_n=7, n_bins=5)
    folder = tmp_path / "trf"
    assert_png(folder / "confusion_matrix.png", "confusion_matrix")
    assert_png(folder / "per_class.png", "per_class")
    assert_png(folder / "calibration.png", "calibration")
    for name in ("errors.jsonl", "errors.md", "analysis.json"):
        assert (folder / name).stat().st_size > 0
    errors = list(srsly.read_jsonl(folder / "errors.jsonl"))
    assert len(errors) == 7
    losses = [e["loss"] for e in errors]
    assert losses == sorted(losses, reverse=True)
    assert losses[0] == pytest.approx(example_losses(gold, probs).max(), rel=1e-5)
    table = (folder / "errors.md").read_text(encoding="utf8")
    assert table.count("\n| ") == 7 + 1  # header + 7 rows
    assert "with a pipe" in table and "\\|" in table  # pipes in texts are escaped
    assert "<b>" not in table and "&lt;b&gt;markup&lt;/b&gt; &amp; more" in table  # and markup shows as text
    saved = srsly.read_json(folder / "analysis.json")
    pred = [LABELS[i] for i in probs.argmax(axis=1)]
    assert saved["metrics"]["accuracy"] == pytest.approx(compute_metrics(gold, pred)["accuracy"])
    # the log loss matches the mean per-example loss (label columns not reordered)
    assert saved["log_loss"] == pytest.approx(example_losses(gold, probs).mean(), rel=1e-5)
    assert result["name"] == "trf" and result["n"] == 60
    assert analyze_predictions(predictions, tmp_path / "small", limit=10)["n"] == 10


def test_analyze_rejects_mismatched_inputs(tmp_path):
    with pytest.raises(ValueError):
        analyze(["a", "b"], ["joy"], one_hot_probs([{"joy": 1.0}]), tmp_path)


# --- exploration and features on the toy data and tiny backbone ---------------


def test_explore_counts_and_window(toy_folder, tiny_bert, tmp_path):
    splits = read_folder(toy_folder)
    backbone = load_backbone(str(tiny_bert), with_model=False)
    assert backbone.window == 512
    # every toy text is 5 in-vocabulary words: 7 tokens with [CLS] and [SEP]
    assert set(token_counts([eg.text for eg in splits["test"].examples], backbone.tokenizer)) == {7}
    stats = explore(splits, tmp_path, backbone.tokenizer, window=6, backbone="tiny")
    train = stats["splits"]["train"]
    assert train["n"] == 120 and train["label_counts"] == {label: 20 for label in LABELS}
    assert train["words"]["mean"] == 5 and train["words_by_label"]["joy"]["max"] == 5
    assert train["over_window"] == 120 and train["over_window_share"] == 1.0
    assert explore(splits, tmp_path / "w7", backbone.tokenizer, window=7)["splits"]["test"]["over_window"] == 0
    for split in ("train", "validation", "test"):
        assert_png(tmp_path / "explore" / f"class_distribution_{split}.png", "class_distribution")
        assert_png(tmp_path / "explore" / f"words_per_text_{split}.png", "lengths")
    saved = srsly.read_json(tmp_path / "explore" / "length_stats.json")
    assert saved["splits"]["validation"]["n"] == 24 and saved["window"] == 6


def test_embeddings_mean_and_cls(tiny_bert):
    import torch

    backbone = load_backbone(str(tiny_bert))
    texts = ["i feel happy", "so very sad and lonely this morning at work", "angry"]
    out = embed(texts, backbone, batch_size=2, progress=False)
    assert out["mean"].shape == (3, 32) and out["cls"].shape == (3, 32)
    # each text alone (no padding) gives the same vectors as in a padded, length-sorted batch
    with torch.inference_mode():
        for i, text in enumerate(texts):
            enc = backbone.tokenizer([text], return_tensors="pt")
            states = backbone.model(**enc).last_hidden_state[0]
            assert out["mean"][i] == pytest.approx(states.mean(dim=0).numpy(), abs=1e-5)
            assert out["cls"][i] == pytest.approx(states[0].numpy(), abs=1e-5)


def test_embedding_cache(tiny_bert, tmp_path, monkeypatch):
    import spacy_emotion.reports.features as features

    texts = {"train": ["i feel happy", "sad"], "test": ["angry today"]}
    first = embed_splits(texts, str(tiny_bert), tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.npz"))) == 2

    def no_model(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(features, "load_backbone", no_model)
    second = embed_splits(texts, str(tiny_bert), tmp_path, progress=False)
    assert np.array_equal(first["train"]["mean"], second["train"]["mean"])
    assert np.array_equal(first["test"]["cls"], second["test"]["cls"])


# --- baselines and comparison -------------------------------------------------


def test_baselines_dummy_scores_and_comparison(tmp_path):
    rng = np.random.default_rng(0)
    train_y = [LABELS[i % 6] for i in range(60)] + ["joy"] * 6  # joy is the majority class
    test_y = ["joy", "joy", "sadness", "anger"]
    centres = rng.normal(size=(6, 8)) * 5

    def feats(labels):
        x = np.stack([centres[LABEL_TO_ID[y]] + rng.normal(size=8) * 0.1 for y in labels])
        return {"mean": x, "cls": x[:, ::-1].copy()}

    features = {"train": feats(train_y), "validation": feats(test_y), "test": feats(test_y)}
    rows = train_baselines(features, {"train": train_y, "validation": test_y, "test": test_y})
    assert [r["features"] for r in rows] == ["none", "mean", "cls"]
    dummy = rows[0]["test"]
    # always "joy": accuracy 2/4; F1(joy) = 2*0.5*1/(1.5) = 2/3, other labels 0 -> macro 2/3 / 6
    assert dummy["accuracy"] == pytest.approx(0.5)
    assert dummy["macro_f1"] == pytest.approx((2 / 3) / 6)
    assert rows[1]["test"]["accuracy"] == 1.0  # separable clusters
    # [CLS] features identical to the mean-pooled ones are not reported twice
    same = {split: {"mean": f["mean"], "cls": f["mean"]} for split, f in features.items()}
    assert [r["features"] for r in train_baselines(same, {"train": train_y, "validation": test_y, "test": test_y})] == [
        "none",
        "mean",
    ]

    srsly.write_json(tmp_path / "baseline.json", {"backbone": "tiny", "limit": 0, "rows": rows})
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    srsly.write_json(metrics_dir / "trf.json", compute_metrics(test_y, ["joy", "joy", "sadness", "fear"]))
    comparison = write_comparison(tmp_path, metrics_dir)
    assert [r["kind"] for r in comparison["rows"]] == ["baseline"] * 3 + ["pipeline"]
    assert comparison["rows"][-1]["test"]["accuracy"] == pytest.approx(0.75)
    table = (tmp_path / "comparison.md").read_text(encoding="utf8")
    assert "fine-tuned transformer pipeline (trf) | – | – | 0.750 |" in table
    assert "bow" not in table  # no metrics/bow.json
    assert srsly.read_json(tmp_path / "comparison.json")["rows"] == comparison["rows"]
    assert comparison_markdown(rows).count("\n| ") == 1 + 3


# --- the commands, end to end on the toy data ---------------------------------


@pytest.fixture(scope="module")
def reports(toy_folder, tiny_bert, trained_pipeline, toy_corpus, tmp_path_factory):
    """A reports folder made by running every command through the CLI."""
    root = tmp_path_factory.mktemp("project")
    out, metrics = root / "reports", root / "metrics"
    common = ["--data", toy_folder, "--limit", 60]
    invoke(["explore", out, *common, "--backbone", tiny_bert])
    invoke(
        [
            "evaluate",
            trained_pipeline,
            toy_corpus / "test.spacy",
            "--output",
            metrics / "trf.json",
            "--predictions",
            metrics / "trf.predictions.jsonl",
        ]
    )
    invoke(["baseline", out, *common, "--backbone", tiny_bert, "--metrics-dir", metrics, "--batch-size", 16])
    invoke(["embeddings", out, *common, "--backbone", tiny_bert, "--n-neighbors", 5])
    invoke(["analyze", metrics / "trf.predictions.jsonl", out / "trf", "--top-n", 5])
    invoke(["report", out, "--config", "trf", "--metrics-dir", metrics])
    return out


def test_commands_write_every_file(reports):
    expected = [
        "explore/length_stats.json",
        "baseline.json",
        "comparison.md",
        "comparison.json",
        "embeddings/umap_train.png",
        "embeddings/umap_train.json",
        "trf/confusion_matrix.png",
        "trf/per_class.png",
        "trf/calibration.png",
        "trf/errors.jsonl",
        "trf/errors.md",
        "trf/analysis.json",
        "report_trf.html",
        "report_trf.md",
    ] + [
        f"explore/{kind}_{split}.png"
        for kind in ("class_distribution", "words_per_text")
        for split in ("train", "validation", "test")
    ]
    for name in expected:
        assert (reports / name).is_file() and (reports / name).stat().st_size > 0, name
    assert_png(reports / "embeddings" / "umap_train.png", "embedding_map")
    umap_info = srsly.read_json(reports / "embeddings" / "umap_train.json")
    assert umap_info["n"] == 60 and len(umap_info["points"]) == 60 and umap_info["n_neighbors"] == 5
    assert {p["label"] for p in umap_info["points"]} <= set(LABELS)
    comparison = srsly.read_json(reports / "comparison.json")
    assert [r["model"] for r in comparison["rows"]][-1] == "fine-tuned transformer pipeline (trf)"
    assert comparison["rows"][0]["test"]["n"] == 24  # the toy test split is smaller than --limit
    assert len(list(srsly.read_jsonl(reports / "trf" / "errors.jsonl"))) == 5


def test_report_embeds_every_figure(reports):
    page = (reports / "report_trf.html").read_text(encoding="utf8")
    summary = (reports / "report_trf.md").read_text(encoding="utf8")
    figures = sorted(reports.rglob("*.png"))
    assert len(figures) == 6 + 1 + 3
    for path in figures:
        assert base64.b64encode(path.read_bytes()).decode("ascii") in page, path
        assert f"]({path.relative_to(reports).as_posix()})" in summary, path
    assert 'src="data:image/png;base64,' in page and 'src="reports' not in page  # self-contained
    assert "spacy project run" not in page  # no section is missing
    errors = list(srsly.read_jsonl(reports / "trf" / "errors.jsonl"))
    assert errors and all(e["text"] in summary and e["text"] in page for e in errors)


def test_markdown_report_shows_markup_in_texts_as_text(tmp_path):
    from spacy_emotion.reports.html_report import Section, render_html, render_markdown

    text = "i feel <img src=x onerror=alert(1)> so | sad"
    section = Section("Errors", tables=[(["text", "loss"], [[text, "1.0"]])])
    markdown = render_markdown([section], "Report", tmp_path)
    assert "<img" not in markdown and "&lt;img src=x onerror=alert(1)&gt; so \\| sad" in markdown
    assert "<img" not in render_html([section], "Report")


def test_report_names_missing_parts(tmp_path):
    paths = build_report(tmp_path, "bow", tmp_path / "no-metrics")
    page = paths["html"].read_text(encoding="utf8")
    for command in ("explore", "baseline", "embeddings", "analyze"):
        assert f"spacy project run {command}" in page
    assert "<img" not in page


def test_umap_records_the_n_neighbors_it_ran_with(tmp_path):
    from spacy_emotion.reports.embedding_map import embedding_map

    vectors = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    info = embedding_map(vectors, ["joy", "sadness"] * 4, tmp_path, n_neighbors=15)
    assert info["n_neighbors"] == 7  # 8 points: at most 7 neighbours
    assert srsly.read_json(tmp_path / "embeddings" / "umap_train.json")["n_neighbors"] == 7


def test_explore_skips_invalid_rows_when_asked(toy_folder, tiny_bert, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train", "validation", "test"):
        (data / f"{name}.txt").write_text(
            (toy_folder / f"{name}.txt").read_text(encoding="utf8") + "no separator here\n", encoding="utf8"
        )
    args = ["explore", str(tmp_path / "out"), "--data", str(data), "--backbone", str(tiny_bert)]
    failed = runner.invoke(app, args)
    assert failed.exit_code == 1 and "no ';'" in failed.output
    result = runner.invoke(app, [*args, "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert "Skipped 3 invalid row(s)" in result.output
    stats = srsly.read_json(tmp_path / "out" / "explore" / "length_stats.json")
    valid = read_folder(toy_folder)  # the rows before the bad line was appended
    assert {name: stats["splits"][name]["n"] for name in valid} == {
        name: len(split.examples) for name, split in valid.items()
    }


def test_cli_fails_cleanly_on_bad_input(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x", "gold": "joy"}) + "\n", encoding="utf8")
    result = runner.invoke(app, ["analyze", str(bad), str(tmp_path / "out")])
    assert result.exit_code == 1
    result = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 1
