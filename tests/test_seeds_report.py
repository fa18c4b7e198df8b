"""`spacy-emotion seeds` (reports/seeds.py): mean ± sd over runs of each
model and the per-class F1 side by side, from metrics files of `evaluate`."""

import json
import random
import statistics

import pytest
from typer.testing import CliRunner

from spacy_emotion.cli import app
from spacy_emotion.labels import LABELS
from spacy_emotion.reports.seeds import summarize
from spacy_emotion.training.metrics import compute_metrics


def write_run(path, seed, accuracy):
    """Metrics of predictions right with probability `accuracy` on 300 texts."""
    rng = random.Random(seed)
    gold = [rng.choice(LABELS) for _ in range(300)]
    predicted = [g if rng.random() < accuracy else rng.choice(LABELS) for g in gold]
    path.write_text(json.dumps(compute_metrics(gold, predicted)), encoding="utf8")
    return path


@pytest.fixture
def runs(tmp_path):
    return {
        "pipeline": [write_run(tmp_path / f"p{seed}.json", seed, 0.9) for seed in range(3)],
        "baseline": [write_run(tmp_path / f"b{seed}.json", 10 + seed, 0.7) for seed in range(3)],
    }


def test_means_and_sds_are_those_of_the_runs(runs):
    summary = summarize(runs)
    for name, paths in runs.items():
        data = [json.loads(p.read_text(encoding="utf8")) for p in paths]
        for key in ("accuracy", "macro_f1", "weighted_f1"):
            values = [d[key] for d in data]
            assert summary[name][key]["mean"] == pytest.approx(statistics.fmean(values))
            assert summary[name][key]["sd"] == pytest.approx(statistics.stdev(values))
        assert set(summary[name]["per_class_f1"]) == set(LABELS)
        joy = [d["per_class"]["joy"]["f1"] for d in data]
        assert summary[name]["per_class_f1"]["joy"]["mean"] == pytest.approx(statistics.fmean(joy))
    assert summary["pipeline"]["accuracy"]["mean"] > summary["baseline"]["accuracy"]["mean"]


def test_the_command_writes_both_tables(runs, tmp_path):
    args = ["seeds", str(tmp_path / "out")]
    for name, paths in runs.items():
        args += ["--group", f"{name}=" + ",".join(map(str, paths))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "out" / "seeds.md").read_text(encoding="utf8")
    assert "| emotion | pipeline | baseline |" in text
    assert all(f"| {label} | " in text for label in LABELS)
    saved = json.loads((tmp_path / "out" / "seeds.json").read_text(encoding="utf8"))
    assert saved["pipeline"]["n"] == 3 and saved["pipeline"]["runs"] == [str(p) for p in runs["pipeline"]]


def test_one_run_has_no_spread(runs):
    assert summarize({"one": runs["pipeline"][:1]})["one"]["accuracy"]["sd"] == 0.0


@pytest.mark.parametrize("spec", ["no-equals-sign", "=x.json", "name="])
def test_a_bad_group_is_a_clear_error(spec, tmp_path):
    result = CliRunner().invoke(app, ["seeds", str(tmp_path / "out"), "--group", spec])
    assert result.exit_code == 1 and "NAME=FILE" in result.output
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_metrics_is_a_clear_error(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"accuracy": 0.5}), encoding="utf8")
    result = CliRunner().invoke(app, ["seeds", str(tmp_path / "out"), "--group", f"x={other}"])
    assert result.exit_code == 1 and "not a metrics file" in " ".join(result.output.split())
    result = CliRunner().invoke(app, ["seeds", str(tmp_path / "out"), "--group", f"x={tmp_path / 'missing.json'}"])
    assert result.exit_code == 1 and "missing.json" in "".join(result.output.split())
