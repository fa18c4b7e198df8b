"""Two `emotion_classifier` settings compared in one process, interleaved.

bench.py times each setting in a fresh process of its own. On a small shared
machine the same setting can vary by several per cent from one process to the
next, which hides any smaller difference. Here both
settings are loaded into one process and take turns over the same texts,
round after round (A B, then B A, ...). Each round gives a paired ratio B/A,
which the machine's drift affects far less than it does two separate
processes. The texts are the validation split's by default: choose a
setting there, and report its test figure with `--split test` (or bench.py).
Reported: the median docs/s of each, the paired ratios (median,
min, max), and how far B's probabilities and labels are from A's.

    python benchmarks/paired.py --model training/trf/model-best \\
        --a '{"fast_path": false}' --b '{}' --rounds 10 --out benchmarks/paired.json

Settings are the component's config keys as JSON (`{}`: its defaults).
Nothing here is asserted; the output file records the date, machine, commit
and command with the figures.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.measure import log  # noqa: E402
from benchmarks.report import run_meta  # noqa: E402
from benchmarks.systems import LABELS, load_runner, read_split  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line; --a and --b parsed from JSON.

    argv (Optional[List[str]]): the arguments (default: sys.argv[1:]).
    RETURNS (argparse.Namespace): the options.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="training/trf/model-best", help="the trained pipeline (directory or package)"
    )
    parser.add_argument(
        "--data", default=str(ROOT.parent / "shared" / "data" / "emotion"), help="dataset folder with the splits"
    )
    parser.add_argument("--a", default='{"fast_path": false}', help="settings of A, JSON (the baseline)")
    parser.add_argument("--b", default="{}", help="settings of B, JSON (default: the component's defaults)")
    parser.add_argument(
        "--rounds", type=int, default=10, help="timed rounds; each times A and B once, in alternating order"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--split",
        default="validation",
        choices=["validation", "test"],
        help="the texts timed: validation to choose a setting, test for the reported figure",
    )
    parser.add_argument("--limit", type=int, default=0, help="use only the first N texts of the split (0: all)")
    parser.add_argument("--out", default=None, help="JSON file for the results (default: print only)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    for name in ("a", "b"):
        try:
            settings = json.loads(getattr(args, name))
        except json.JSONDecodeError as err:
            parser.error(f"--{name} is not JSON: {err}")
        if not isinstance(settings, dict):
            parser.error(f"--{name} must be a JSON object of component settings, got {getattr(args, name)!r}")
        setattr(args, name, settings)
    return args


def load(model: str, settings: Dict[str, Any], batch_size: int):
    """bench.py's A-component over `model` with `settings`, loaded now.

    model (str): the trained pipeline.
    settings (Dict[str, Any]): emotion_classifier config keys.
    batch_size (int): docs per nlp.pipe batch.
    RETURNS (Language): the blank pipeline with the component.
    """
    job = {"system": "A-component", "model": model, "options": settings, "batch_size": batch_size, "device": "cpu"}
    return load_runner(job).nlp


def scores(nlp, texts: List[str], batch_size: int):
    """The six emotions' scores of each text.

    nlp (Language): a pipeline with emotion_classifier.
    texts (List[str]): the texts.
    batch_size (int): docs per nlp.pipe batch.
    RETURNS (np.ndarray): the (n, 6) doc.cats of the texts, columns in LABELS order.
    """
    import numpy as np

    return np.asarray([[doc.cats[label] for label in LABELS] for doc in nlp.pipe(texts, batch_size=batch_size)])


def accuracy_of(probabilities, gold: List[str]) -> float:
    """The share of texts whose most probable label is the gold one (columns in label
    order, as `scores` writes them)."""
    from sklearn.metrics import accuracy_score

    from spacy_emotion.training.metrics import predicted_labels

    return float(accuracy_score(gold, predicted_labels(probabilities)))


def compare(args: argparse.Namespace, argv: List[str]) -> Dict[str, Any]:
    """Load both settings and time them in alternating rounds.

    args (argparse.Namespace): the options.
    argv (List[str]): the command line, recorded with the results.
    RETURNS (Dict[str, Any]): "meta", "A", "B", the paired ratios and how far B's scores are from A's.
    """
    meta = {  # before loading anything: the date and load average of the start
        **run_meta("cpu", "benchmarks/paired.py", argv),
        "model": args.model,
        "split": args.split,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
    }
    texts, gold = read_split(Path(args.data), args.limit, args.split)
    nlps = {"A": load(args.model, args.a, args.batch_size), "B": load(args.model, args.b, args.batch_size)}
    first = {
        name: scores(nlp, texts, args.batch_size) for name, nlp in nlps.items()
    }  # warm-up, and the scores compared
    rates: Dict[str, List[float]] = {"A": [], "B": []}
    for round_ in range(args.rounds):
        for name in "AB" if round_ % 2 == 0 else "BA":
            start = time.perf_counter()
            scores(nlps[name], texts, args.batch_size)
            rates[name].append(len(texts) / (time.perf_counter() - start))
        log("paired", f"round {round_ + 1}/{args.rounds}: A {rates['A'][-1]:.1f}, B {rates['B'][-1]:.1f} docs/s")
    ratios = [b / a for a, b in zip(rates["A"], rates["B"])]
    agree = float((first["A"].argmax(axis=1) == first["B"].argmax(axis=1)).mean())
    accuracy = {name: accuracy_of(first[name], gold) for name in first}
    return {
        "meta": {**meta, "texts": len(texts)},
        "A": {
            "settings": args.a,
            "docs_per_s": rates["A"],
            "median_docs_per_s": statistics.median(rates["A"]),
            "accuracy": accuracy["A"],
        },
        "B": {
            "settings": args.b,
            "docs_per_s": rates["B"],
            "median_docs_per_s": statistics.median(rates["B"]),
            "accuracy": accuracy["B"],
        },
        "ratio_b_over_a": {
            "median": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
            "rounds": ratios,
        },
        "max_probability_difference": float(abs(first["A"] - first["B"]).max()),
        "label_agreement": agree,
    }


def summary(result: Dict[str, Any]) -> str:
    """One line: each side's median docs/s and accuracy, the paired ratios, the score differences."""
    r = result["ratio_b_over_a"]
    return (
        f"A {json.dumps(result['A']['settings'])}: {result['A']['median_docs_per_s']:.1f} docs/s, "
        f"accuracy {100 * result['A']['accuracy']:.2f} %; "
        f"B {json.dumps(result['B']['settings'])}: {result['B']['median_docs_per_s']:.1f} docs/s, "
        f"accuracy {100 * result['B']['accuracy']:.2f} % (medians of {result['meta']['rounds']}); "
        f"B/A paired: median {r['median']:.3f}, min {r['min']:.3f}, max {r['max']:.3f}; "
        f"max |Δp| {result['max_probability_difference']:.2g}, labels agree {100 * result['label_agreement']:.2f} %"
    )


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Compare two settings; write the JSON file (--out) and print one line.

    argv (Optional[List[str]]): the arguments (default: sys.argv[1:]).
    RETURNS (Dict[str, Any]): the results.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    result = compare(args, argv)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf8")
    print(summary(result))
    return result


if __name__ == "__main__":
    main()
