"""`spacy-emotion predict`: classify texts given on the command line."""

import json
import sys
from typing import Any, Dict, List

import typer
from wasabi import msg

from ..labels import LABELS
from .app import LOAD_ERRORS, QUANTIZE_OPTION, RUNTIME_OPTION, app, speed_config

BAR_WIDTH = 30


def bar(probability: float, width: int = BAR_WIDTH) -> str:
    """A text bar for a probability: full blocks plus one eighth-block remainder."""
    eighths = round(max(0.0, min(1.0, probability)) * width * 8)
    full, rest = divmod(eighths, 8)
    return "█" * full + (" ▏▎▍▌▋▊▉"[rest] if rest else "")


def show(text: str, result: Dict[str, Any], threshold: float) -> None:
    """Print one result for a terminal: headline, one bar per emotion, sentences."""
    if result["emotion"] is None:
        top = max(LABELS, key=lambda label: result["cats"][label])
        reason = "empty text" if not text.strip() else f"no probability reaches --threshold {threshold:g}"
        msg.warn(f"No emotion ({reason}); most likely: {top} {result['cats'][top]:.3f}")
    else:
        msg.good(f"{result['emotion']} ({result['score']:.3f})")
    rows = [
        ("▶" if label == result["emotion"] else " ", label, f"{result['cats'][label]:.3f}", bar(result["cats"][label]))
        for label in LABELS
    ]
    msg.table(rows, header=("", "emotion", "prob", ""), aligns=("l", "l", "r", "l"), divider=True)
    for sent in result.get("sentences", []):
        emotion = sent["emotion"] or "-"
        score = f"{sent['score']:.3f}" if sent["score"] is not None else "-"
        msg.text(f"  [{sent['start_char']}:{sent['end_char']}] {emotion:<8} {score}  {sent['text']}")


@app.command("predict")
def predict_cli(
    texts: List[str] = typer.Argument(..., help="Text(s) to classify; '-' reads one text from standard input"),
    model: str = typer.Option(
        "en_emotion_trf", "--model", "-m", help="Trained pipeline directory, package name or HF checkpoint directory"
    ),
    threshold: float = typer.Option(
        0.0, "--threshold", "-t", min=0.0, max=1.0, help="Below this probability no emotion is given"
    ),
    sentences: bool = typer.Option(False, "--sentences", "-s", help="Also classify every sentence"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per text on stdout (JSON lines)"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, -1 for the CPU"),
    runtime: str = RUNTIME_OPTION,
    quantize: str = QUANTIZE_OPTION,
) -> None:
    """Print the emotion of each text, its score and all six probabilities.

    Exit codes: 0 done; 2 nothing done (bad arguments, or the model can't be loaded).
    """
    from ..serving.classify import build_pipeline, classify
    from ..texts import invalid_text

    texts = [sys.stdin.buffer.read().decode("utf-8", "surrogateescape") if text == "-" else text for text in texts]
    for i, text in enumerate(texts, start=1):
        error = invalid_text(text)
        if error:
            msg.fail(
                f"Text {i} is {error}",
                "Give UTF-8 text (a terminal or file in another encoding can't be read).",
                exits=2,
            )
    try:
        nlp = build_pipeline(model, threshold=threshold, gpu_id=gpu_id, speed=speed_config(runtime, quantize))
    except LOAD_ERRORS as err:
        msg.fail(f"Can't load the emotion model: {err}", exits=2)
    for text, result in zip(texts, classify(nlp, texts, sentences=sentences)):
        if as_json:
            typer.echo(json.dumps(result, ensure_ascii=False))
            continue
        if len(texts) > 1:
            msg.divider(text if len(text) <= 60 else text[:57] + "...")
        show(text, result, threshold)
