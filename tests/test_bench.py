"""benchmarks/bench.py and paired.py run end to end on a tiny model and write well-formed results.

Nothing here asserts a speed: timings of a tiny model on a shared machine say
nothing. Only that every system, setting and trainer ran and reported
positive, finite numbers in results.json and results.md.
"""

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from spacy_emotion.component.speed import SpeedOptions
from spacy_emotion.labels import LABELS

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the benchmarks package sits next to tests/
    sys.path.insert(0, str(ROOT))
SCRIPT = ROOT / "benchmarks" / "bench.py"

from benchmarks import measure, paired, systems  # noqa: E402


def run_script(*args, timeout=900):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def results(trained_pipeline, toy_folder, toy_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = run_script(
        "--model",
        trained_pipeline,
        "--data",
        toy_folder,
        "--out",
        out,
        "--systems",
        "A-component,A-pipeline,A-hf,B,C-batch64,C-default",
        "--variants",
        "default,int8,as-trained,onnx-int8",
        "--stream",
        200,
        "--stream-c",
        60,
        "--rss-from",
        50,
        "--repeats",
        2,
        "--latency",
        3,
        "--train-steps",
        3,
        "--train-warmup",
        1,
        "--train-corpus",
        toy_corpus,
        "--threads",
        1,
        "--export-dir",
        out / "export",
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "A-component: stream 200/200 docs" in proc.stderr  # progress lines
    return out, json.loads((out / "results.json").read_text(encoding="utf8"))


def test_results_json_is_complete(results):
    _, res = results
    assert set(res) == {"meta", "systems", "variants", "training", "headline"}
    meta = res["meta"]
    for key in ("date", "machine", "commit", "command", "model", "device", "test_texts", "stream", "stream_c", "B"):
        assert meta[key] not in (None, ""), key
    assert meta["device"] == "cpu" and meta["stream"] == 200 and meta["stream_c"] == 60
    # configs/trf.cfg's textcat reads the first token + mean (2 x hidden): no AutoModel head has that shape
    assert "head" in meta["B"] and meta["B"]["head_from_textcat"] is False
    assert "bench.py" in meta["command"] and "--stream 200" in meta["command"]
    assert set(res["systems"]) == {"A-component", "A-pipeline", "A-hf", "B", "C-batch64", "C-default"}
    for name, system in res["systems"].items():
        for key in ("load_s", "peak_rss_mb", "import_s"):
            assert positive(system[key]), (name, key)
        assert system["torch_threads"] == 1
        test = system["test"]
        assert test["repeats"] == 2 and len(test["runs_s"]) == 2
        assert positive(test["docs_per_s"]) and positive(test["words_per_s"])
        assert 0.0 <= system["accuracy"] <= 1.0 and 0.0 <= system["macro_f1"] <= 1.0
        assert system["latency_ms"]["n"] == 3
        assert positive(system["latency_ms"]["p50"]) and system["latency_ms"]["p95"] >= system["latency_ms"]["p50"]
        stream = system["stream"]
        assert stream["docs"] == (60 if name == "C-default" else 200)
        assert positive(stream["docs_per_s"]) and positive(stream["words_per_s"])
        assert stream["rss_to_docs"] == stream["docs"] and 0 < stream["rss_from_docs"] < stream["docs"]
        assert positive(stream["rss_from_mb"]) and positive(stream["rss_to_mb"])
        assert math.isfinite(stream["rss_growth_pct"])
        assert "predictions" not in system
        split = system.get("time_split_ms_per_doc")
        if name.startswith("A-"):  # where A's time goes: the forward pass and the rest add up to the run
            assert split["forward_calls"] > 0 and positive(split["forward"]) and positive(split["total"])
            assert split["forward"] < split["total"]
        else:
            assert split is None


def test_accuracy_is_the_trained_pipelines_own(results, trained_pipeline, toy_folder):
    """A's figures against an independent run of the trained pipeline (spacy.load, float32) on the test split."""
    import spacy
    from sklearn.metrics import accuracy_score, f1_score

    from spacy_emotion.training.dataset import find_split_file, read_file

    _, res = results
    examples = read_file(find_split_file(toy_folder, "test")).examples
    nlp = spacy.load(trained_pipeline)
    predicted = [max(LABELS, key=doc.cats.get) for doc in nlp.pipe(e.text for e in examples)]
    gold = [e.label for e in examples]
    accuracy = accuracy_score(gold, predicted)
    assert len(set(predicted)) > 1  # not a constant model: a wrong label order would show
    assert res["systems"]["A-pipeline"]["accuracy"] == pytest.approx(accuracy)
    assert res["systems"]["A-pipeline"]["macro_f1"] == pytest.approx(
        f1_score(gold, predicted, labels=list(LABELS), average="macro", zero_division=0)
    )
    assert res["variants"]["as-trained"]["accuracy"] == pytest.approx(accuracy)
    # the component with its defaults, timed twice (as a system and as a setting), scores the same
    assert res["systems"]["A-component"]["accuracy"] == pytest.approx(res["variants"]["default"]["accuracy"])
    assert res["variants"]["int8"]["accuracy_delta_points"] == pytest.approx(
        100 * (res["variants"]["int8"]["accuracy"] - accuracy)
    )


def test_variants_and_training(results):
    _, res = results
    # the model as trained runs first: the others' accuracy change and agreement are against it
    assert (
        list(res["variants"]) == ["as-trained", "default", "int8", "onnx-int8"]
        and res["meta"]["reference_variant"] == "as-trained"
    )
    reference, default, int8, onnx_int8 = (res["variants"][k] for k in ("as-trained", "default", "int8", "onnx-int8"))
    assert default["options"] == {} and int8["options"] == {"quantize": "int8"}
    assert onnx_int8["options"] == {"runtime": "onnx", "quantize": "int8"}
    assert reference["linear_format"] == "none" and int8["linear_format"] == "int8"
    assert onnx_int8["linear_format"] == "int8 (ONNX Runtime)"
    assert default["linear_format"] == SpeedOptions().linear_format("cpu")  # "auto" resolved for this CPU
    for variant in (reference, default, int8, onnx_int8):
        assert (
            positive(variant["test"]["docs_per_s"])
            and positive(variant["load_s"])
            and isinstance(variant["accuracy_ok"], bool)
        )
        assert 0.0 <= variant["agreement"] <= 1.0
        assert "stream" not in variant  # settings are timed on the test texts only by default
    row = res["training"]["fp32"]
    for kind in ("spacy", "torch"):
        assert row[kind]["steps_timed"] == 2 and row[kind]["examples"] > 0
        assert positive(row[kind]["examples_per_s"])
    assert positive(row["ratio"]) and positive(row["epoch_s_spacy"])
    head = res["headline"]
    for key in ("A_over_B", "A_over_B_stream", "A_over_C_default", "train_spacy_over_torch"):
        assert positive(head[key]), key
    assert set(head["targets"]) >= {
        "A >= 1.0 x B docs/s",
        "A >= 3 x C-default docs/s",
        "RSS growth <= 5 %",
        "training >= 0.8 x plain loop",
    }
    assert all(v in (True, False, None) for v in head["targets"].values())


def test_results_md(results):
    out, res = results
    md = (out / "results.md").read_text(encoding="utf8")
    assert md.startswith("# spacy-emotion vs plain Transformers")
    assert "**A/B = " in md and res["meta"]["commit"] in md and res["meta"]["command"] in md
    for name in list(res["systems"]) + list(res["variants"]):
        assert f"| {name} |" in md
    assert "## Training throughput" in md and "| fp32 |" in md
    assert "Where A's time goes" in md and "| A-pipeline | " in md.split("Where A's time goes")[1]


@pytest.fixture(scope="module")
def mean_pooled_pipeline(tiny_bert, toy_corpus, tmp_path_factory):
    """trf.cfg with mean pooling only: its textcat W (6 x hidden) fits B's classifier."""
    from conftest import TRF_CONFIG, train_tiny

    out = tmp_path_factory.mktemp("mean")
    overrides = {
        "paths.backbone": str(tiny_bert),
        "components.textcat.model.use_reduce_first": False,
        "training.max_steps": 20,
    }
    return train_tiny(TRF_CONFIG, toy_corpus, out, overrides)


@pytest.mark.parametrize("pooling", ["cls+mean", "mean"])
def test_export_is_the_pipelines_backbone(pooling, trained_pipeline, mean_pooled_pipeline, tmp_path):
    import spacy
    from transformers import AutoModelForSequenceClassification

    source = trained_pipeline if pooling == "cls+mean" else mean_pooled_pipeline
    info = systems.export_hf_checkpoint(source, tmp_path / "ckpt")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ckpt")
    nlp = spacy.load(source)
    encoder = nlp.get_pipe("transformer").model.layers[0].shims[0]._model
    exported = model.base_model.state_dict()
    for key, value in encoder.state_dict().items():
        assert torch.equal(exported[key], value), key
    assert [model.config.id2label[i] for i in range(6)] == list(LABELS)
    W = next(n for n in nlp.get_pipe("textcat").model.walk() if n.name == "softmax").get_param("W")
    head = model.classifier.weight.detach().numpy()
    if pooling == "mean":
        assert np.allclose(head, W)
        assert info["head_from_textcat"] and "classifier" in info["head"]
    else:  # first token + mean: W is 6 x (2 x hidden), the classifier 6 x hidden; left as initialised
        assert W.shape == (6, 2 * head.shape[1])
        assert info["head_from_textcat"] is False


def test_helpers():
    assert systems.LABELS == LABELS
    order = measure.stream_order(7, 50, seed=3)
    assert len(order) == 50 and set(Counter(order).values()) <= {7, 8}
    assert order != sorted(order) and order == measure.stream_order(7, 50, seed=3)
    assert list(measure.batches(range(5), 2)) == [[0, 1], [2, 3], [4]]
    assert measure.n_words(["a b", " c "]) == 3
    assert measure.rss_mb() > 0 and measure.peak_rss_mb() >= measure.rss_mb() * 0.5


def test_percentile_is_nearest_rank():
    percentile = measure.percentile
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0 and percentile([1.0, 2.0], 95) == 2.0
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50.0, 99.0, 100.0)
    assert percentile([3.0], 50) == 3.0
    assert math.isnan(percentile([], 50))  # the load test with every request failed


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="Linux /proc only")
def test_peak_rss_is_the_process_own():
    """A job's peak RSS is its own, not that of the (larger) process that started it."""
    ballast = bytearray(300 * 2**20)
    ballast[:: 2**12] = b"x" * len(ballast[:: 2**12])  # touch every page: now resident
    parent = measure.peak_rss_mb()
    code = "import sys; sys.path.insert(0, sys.argv[1]); from benchmarks import measure; print(measure.peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True).stdout)
    del ballast
    assert parent >= 300 and 0 < child < parent - 250


def test_rss_curve_keeps_the_highest_reading_between_marks():
    # RSS readings that rise to a high and fall back (a heap trim) between two marks
    readings = iter([100.0, 180.0, 110.0, 120.0, 300.0, 130.0])
    seen = []
    curve = measure.rss_curve(
        range(6), marks={2, 6}, read=lambda: next(readings), every=1, on_mark=lambda d, mb: seen.append((d, mb))
    )
    assert curve == {2: 180.0, 6: 300.0}  # not the 110.0 and 130.0 read at the marks themselves
    assert seen == [(2, 180.0), (6, 300.0)]
    # between samples only the marks are read; a mark the stream never reaches is absent
    reads = []
    curve = measure.rss_curve(range(5), marks={3, 10}, read=lambda: reads.append(1) or 50.0, every=4)
    assert curve == {3: 50.0} and len(reads) == 2  # read at the mark (3) and at the 4th item


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_gpu_flag_fails_clearly_without_cuda(tmp_path):
    proc = run_script("--gpu", "--model", tmp_path, "--out", tmp_path, timeout=300)
    assert proc.returncode != 0
    assert "--gpu: no CUDA device" in proc.stderr
    assert not (tmp_path / "results.json").exists()


def test_bad_arguments_fail_before_any_work(tmp_path):
    proc = run_script("--systems", "A-component,D", "--model", tmp_path, "--out", tmp_path, timeout=300)
    assert proc.returncode != 0 and "unknown system or setting: D" in proc.stderr
    proc = run_script("--model", tmp_path / "missing", "--out", tmp_path, timeout=300)
    assert proc.returncode != 0 and "no such pipeline" in proc.stderr


PAIRED = ROOT / "benchmarks" / "paired.py"


def test_paired_comparison_writes_well_formed_results(trained_pipeline, toy_folder, tmp_path):
    """benchmarks/paired.py: two settings in one process, interleaved rounds."""
    out = tmp_path / "paired.json"
    same = '{"fast_path": false, "quantize": "none"}'
    proc = subprocess.run(
        [
            sys.executable,
            str(PAIRED),
            "--model",
            str(trained_pipeline),
            "--data",
            str(toy_folder),
            "--a",
            same,
            "--b",
            '{"quantize": "none", "torch_threads": 1}',
            "--rounds",
            "3",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(out.read_text(encoding="utf8"))
    assert res["A"]["settings"] == {"fast_path": False, "quantize": "none"} and res["B"]["settings"] == {
        "quantize": "none",
        "torch_threads": 1,
    }
    for side in ("A", "B"):
        assert len(res[side]["docs_per_s"]) == 3 and all(positive(v) for v in res[side]["docs_per_s"])
    ratios = res["ratio_b_over_a"]
    assert ratios["rounds"] == pytest.approx([b / a for a, b in zip(res["A"]["docs_per_s"], res["B"]["docs_per_s"])])
    assert ratios["median"] == pytest.approx(float(np.median(ratios["rounds"])))
    # float32 with and without the fast path: the same scores
    assert res["max_probability_difference"] <= 1e-5 and res["label_agreement"] == 1.0
    assert res["meta"]["texts"] > 0 and res["meta"]["rounds"] == 3 and "--rounds 3" in res["meta"]["command"]
    assert res["meta"]["split"] == "validation"  # the default: settings are chosen on validation
    assert "B/A paired: median" in proc.stdout
    # each side's accuracy on the validation split, against an independent float32 run
    import spacy

    from spacy_emotion.training.dataset import find_split_file, read_file

    examples = read_file(find_split_file(toy_folder, "validation")).examples
    nlp = spacy.load(trained_pipeline)
    predicted = [max(LABELS, key=doc.cats.get) for doc in nlp.pipe(e.text for e in examples)]
    accuracy = sum(p == e.label for p, e in zip(predicted, examples)) / len(examples)
    assert len(set(predicted)) > 1  # not a constant model
    assert res["A"]["accuracy"] == pytest.approx(accuracy) and res["B"]["accuracy"] == pytest.approx(accuracy)
    assert f"accuracy {100 * accuracy:.2f} %" in proc.stdout


def test_paired_accuracy_counts_the_most_probable_label():
    probabilities = np.zeros((4, 6))
    for row, column in enumerate([0, 5, 2, 2]):  # sadness, surprise, love, love (LABELS order)
        probabilities[row, column] = 1.0
    assert paired.accuracy_of(probabilities, ["sadness", "surprise", "love", "joy"]) == pytest.approx(0.75)
    assert paired.accuracy_of(probabilities, ["joy", "joy", "joy", "joy"]) == 0.0


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--a", "{oops"], "--a is not JSON"),
        (["--b", "[1]"], "must be a JSON object"),
        (["--rounds", "0"], "at least 1"),
        (["--split", "train"], "invalid choice"),
    ],
)
def test_paired_rejects_bad_arguments(bad, message):
    proc = subprocess.run([sys.executable, str(PAIRED), *bad], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr


def test_results_written_during_a_run_say_they_are_partial(results, tmp_path):
    """bench.py rewrites results.json / results.md after each part: a run stopped early keeps its rows."""
    import copy

    from benchmarks import report

    _, res = results
    run = copy.deepcopy(res)
    report.write_results(run, tmp_path, partial=True)
    assert json.loads((tmp_path / "results.json").read_text(encoding="utf8"))["meta"]["partial"] is True
    assert "**Partial:" in (tmp_path / "results.md").read_text(encoding="utf8")
    report.write_results(run, tmp_path)
    assert "partial" not in json.loads((tmp_path / "results.json").read_text(encoding="utf8"))["meta"]
    assert (tmp_path / "results.md").read_text(encoding="utf8") == report.markdown(res)


def test_gpu_sizes_make_a_short_run_with_the_host_bound_mode():
    from benchmarks import bench

    cpu, gpu = bench.parse_args([]), bench.parse_args(["--gpu"])
    for name in bench.GPU_DEFAULTS:
        assert getattr(cpu, name) == bench.CPU_DEFAULTS[name]
        assert getattr(gpu, name) == bench.GPU_DEFAULTS[name]
    assert gpu.host_bound > 0 and cpu.host_bound == 0
    assert bench.parse_args(["--gpu", "--stream", "5", "--host-bound", "0"]).stream == 5


def test_host_bound_mode_runs_end_to_end(toy_folder, tmp_path):
    """Both heads trained and timed, A on its fast path, every stage profiled."""
    from benchmarks import host_bound

    results = host_bound.main(
        ["--data", str(toy_folder), "--out", str(tmp_path), "--texts", "40", "--rounds", "2"]
        + ["--profile-texts", "20", "--train-steps", "2", "--train-limit", "12", "--threads", "1"]
    )
    assert set(results["heads"]) == set(host_bound.HEADS)
    for head in results["heads"].values():
        assert head["fast_path"], head["fast_path_reason"]
        assert len(head["A_docs_per_s"]) == len(head["B_docs_per_s"]) == 2
        assert all(positive(x) for x in head["A_docs_per_s"] + head["B_docs_per_s"])
        profile = head["A_profile"]
        assert set(profile["stages"]) == set(host_bound.STAGES)
        assert sum(profile["stages"].values()) + profile["other"] == pytest.approx(1.0)
        assert profile["stages"]["forward"] > 0 and profile["stages"]["spaCy tokenizer"] > 0
    written = json.loads((tmp_path / "host_bound.json").read_text(encoding="utf8"))
    assert written["meta"]["commit"] and written["meta"]["machine"]["cpu_count"]
    assert "A/B median" in (tmp_path / "host_bound.md").read_text(encoding="utf8")


def test_every_stage_names_a_function_of_the_project_that_exists():
    """The stage profile matches functions by file and name: a renamed
    function of the project would silently fall into "other"."""
    from benchmarks import host_bound

    root = Path(__file__).resolve().parent.parent
    for stage, functions in host_bound.STAGES.items():
        for fragment, name in functions:
            if fragment.startswith("spacy_emotion/"):
                source = (root / fragment).read_text(encoding="utf8")
                assert f"def {name}(" in source, (stage, fragment, name)
