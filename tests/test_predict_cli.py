"""`spacy-emotion predict`: terminal and JSON output, options, exit codes."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from spacy_emotion.cli import app
from spacy_emotion.cli.predict import bar
from spacy_emotion.labels import LABELS
from spacy_emotion.serving.classify import build_pipeline, classify_one

TEXT = "i feel so happy today. but i am scared of tomorrow."


@pytest.fixture(scope="module")
def model(trained_pipeline):
    return str(trained_pipeline)


@pytest.fixture(scope="module")
def expected(model):
    return classify_one(build_pipeline(model), TEXT, sentences=True)


def run(*args, input=None):
    return CliRunner().invoke(app, ["predict", *args], input=input, terminal_width=200)


def test_json(model, expected):
    result = run(TEXT, "--model", model, "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert list(body) == ["emotion", "score", "cats"]
    assert list(body["cats"]) == list(LABELS)
    assert sum(body["cats"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["emotion"] == expected["emotion"] == max(LABELS, key=body["cats"].get)
    assert body["cats"] == pytest.approx(expected["cats"], abs=1e-5)


def test_json_sentences_and_several_texts(model, expected):
    result = run(TEXT, "i am furious", "--model", model, "--json", "--sentences")
    assert result.exit_code == 0, result.output
    first, second = [json.loads(line) for line in result.stdout.splitlines()]
    assert [s["text"] for s in first["sentences"]] == ["i feel so happy today.", "but i am scared of tomorrow."]
    for sent, exp in zip(first["sentences"], expected["sentences"]):
        assert TEXT[sent["start_char"] : sent["end_char"]] == sent["text"]
        assert sent["emotion"] == exp["emotion"]
    assert len(second["sentences"]) == 1


def test_terminal_output(model, expected):
    result = run(TEXT, "--model", model, "--sentences")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"{expected['emotion']} ({expected['score']:.3f})" in out
    for label in LABELS:
        assert f"{expected['cats'][label]:.3f}" in out and label in out
    assert "▶" in out and "█" in out
    assert "[0:22]" in out and "but i am scared of tomorrow." in out


def test_threshold_and_stdin(model):
    result = run("-", "--model", model, "--json", "--threshold", "1.0", input=TEXT)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["emotion"] is None and body["score"] is None
    result = run(TEXT, "--model", model, "--threshold", "1.0")
    assert result.exit_code == 0 and "No emotion" in result.stdout and "threshold 1" in result.stdout


@pytest.mark.parametrize("args", [["--threshold", "1.5"], ["--threshold", "-0.1"], ["--bogus"], []])
def test_bad_arguments_exit_2(model, args):
    texts = [] if args == [] else [TEXT]
    assert run(*texts, "--model", model, *args).exit_code == 2


def test_missing_model_exits_2(tmp_path):
    result = run(TEXT, "--model", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "Can't load the emotion model" in result.output


def test_text_that_is_not_utf8_exits_2(model):
    """Undecodable bytes (a terminal or file in another encoding) are named, not a tokenizer traceback."""
    result = run("-", "--model", model, input=b"i am \xff sad")
    assert result.exit_code == 2 and "not valid UTF-8 text: character 5 is the byte 0xFF" in result.output
    proc = subprocess.run(  # the real process: argv bytes decoded with surrogateescape
        [sys.executable.encode(), b"-m", b"spacy_emotion", b"predict", b"ok", b"caf\xe9", b"--model", model.encode()],
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 2 and b"Text 2 is not valid UTF-8 text" in proc.stdout + proc.stderr


def test_bar():
    assert bar(0.0) == "" and bar(1.0, width=4) == "████" and bar(0.5, width=1) == "▌"


def test_module_entry_point(model):
    """The real process: `python -m spacy_emotion predict` (what the console script runs)."""
    proc = subprocess.run(
        [sys.executable, "-m", "spacy_emotion", "predict", "i am glad", "--model", model, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads(proc.stdout)["cats"]) == list(LABELS)


def test_runtime_and_quantize_options(model):
    """--runtime onnx gives the float32 torch probabilities; a bad value is a clear error."""
    torch_run = run(TEXT, "--model", model, "--json", "--quantize", "none")
    onnx_run = run(TEXT, "--model", model, "--json", "--runtime", "onnx", "--quantize", "none")
    assert torch_run.exit_code == 0 and onnx_run.exit_code == 0, onnx_run.output
    assert json.loads(onnx_run.stdout)["cats"] == pytest.approx(json.loads(torch_run.stdout)["cats"], abs=1e-4)
    bad = run(TEXT, "--model", model, "--runtime", "tensorrt")
    assert bad.exit_code == 2 and "runtime must be one of torch, onnx" in bad.output
    bad = run(TEXT, "--model", model, "--runtime", "onnx", "--quantize", "bf16")
    assert bad.exit_code == 2 and "use runtime='torch'" in bad.output
