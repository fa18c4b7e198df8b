"""Resident memory of a long stream through `emotion_classifier`.

N texts (default 1,000,000: the dataset's validation and test texts, cycled in
order) go through `nlp.pipe(texts, batch_size=64)` of a blank English
pipeline with `emotion_classifier`. The process's resident memory (VmRSS,
read from /proc/self/statm every 16 docs) is recorded every `--every` docs
(default 100,000): each point is the highest reading since the previous one.
The growth is the last point against the first, in percent.

Without `--model`, the model is a bag-of-words textcat (`spacy.TextCatBOW.v3`:
one sparse linear layer) with random weights, built in a temporary folder:
it runs through the same component, predictor and spaCy code paths as a
trained pipeline but costs little enough per text for a million texts on a
small machine. `--model` measures a trained pipeline or checkpoint instead.

    python benchmarks/memory_stream.py --out benchmarks/runs/DATE-memory-stream

writes memory_stream.json (date, machine, commit, command, settings, the RSS
series and the growth) and memory_stream.md into --out, after every point, so
that a run stopped early keeps the points it reached ("partial": true until
the end). No figure here is a target that anything asserts.
"""

import argparse
import json
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from itertools import cycle, islice
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.measure import log, rss_curve  # noqa: E402
from benchmarks.report import git_commit, machine_info  # noqa: E402


def dataset_texts(data: Path) -> List[str]:
    """The validation and test texts, in file order."""
    texts: List[str] = []
    for split in ("validation", "test"):
        with (data / f"{split}.jsonl").open(encoding="utf8") as fh:
            texts.extend(json.loads(line)["text"] for line in fh if line.strip())
    return texts


def random_bow_pipeline(path: Path, seed: int = 0) -> Path:
    """Save a pipeline whose textcat is a bag-of-words linear model over the
    six emotions with random weights (an initialised one is all zeros)."""
    import numpy as np
    import spacy

    from spacy_emotion.labels import LABELS

    nlp = spacy.blank("en")
    textcat = nlp.add_pipe(
        "textcat",
        config={
            "model": {
                "@architectures": "spacy.TextCatBOW.v3",
                "exclusive_classes": True,
                "ngram_size": 1,
                "no_output_layer": False,
                "length": 2**18,
            }
        },
    )
    for label in LABELS:
        textcat.add_label(label)
    nlp.initialize()
    rng = np.random.default_rng(seed)
    for node in textcat.model.walk():
        for name in ("W", "b"):
            if node.has_param(name) and node.get_param(name) is not None:
                value = node.get_param(name)
                node.set_param(name, rng.normal(0, 0.5, value.shape).astype(value.dtype))
    nlp.to_disk(path)
    return path


def markdown(record: Dict[str, Any]) -> str:
    machine = record["machine"]
    done = record["rss_mb"][-1][0]
    lines = [
        f"# Memory over a stream of {record['texts']:,} texts ({record['date']})",
        "",
        *(["Partial: the run stopped (or is still running) after these points.", ""] if record["partial"] else []),
        f"Model {record['model']}, batch size {record['batch_size']}, commit `{record['commit']}`, "
        f"{machine.get('cpu', '?')} ({machine.get('cpu_count')} CPUs, load average at start "
        f"{machine.get('load_average_at_start')}). Wall time {record['wall_s']:,.0f} s for {done:,} docs "
        f"({done / record['wall_s']:,.0f} docs/s).",
        "",
        "| docs | RSS MB |",
        "|---:|---:|",
    ]
    lines += [f"| {docs:,} | {mb:,.1f} |" for docs, mb in record["rss_mb"]]
    first, last = record["rss_mb"][0], record["rss_mb"][-1]
    lines += [
        "",
        f"Growth from {first[0]:,} to {last[0]:,} docs: {record['growth_pct']:+.2f} %. "
        f"spaCy's StringStore: {record['strings_before']:,} strings before the stream, "
        f"{record['strings_after']:,} at the last point.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Model directory or package (default: a random BOW textcat)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "emotion")
    parser.add_argument("--texts", type=int, default=1_000_000, help="Texts in the stream")
    parser.add_argument("--every", type=int, default=100_000, help="Record the RSS every this many texts")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, required=True, help="Folder for memory_stream.json and .md")
    args = parser.parse_args()

    import spacy

    record: Dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "machine": machine_info("cpu"),
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "texts": args.texts,
        "batch_size": args.batch_size,
    }
    texts = dataset_texts(args.data)
    with tempfile.TemporaryDirectory(prefix="memory-stream-") as tmp:
        if args.model is None:
            model = str(random_bow_pipeline(Path(tmp) / "bow"))
            record["model"] = "random bag-of-words textcat (spacy.TextCatBOW.v3)"
        else:
            model = args.model
            record["model"] = f"`{Path(model).name}`"
        nlp = spacy.blank("en")
        nlp.add_pipe("emotion_classifier", config={"model": model})
        nlp.initialize()
        inner = getattr(nlp.get_pipe("emotion_classifier").predictor, "nlp", None)
        stores = [nlp.vocab.strings] + ([inner.vocab.strings] if inner is not None else [])
        record["strings_before"] = sum(len(s) for s in stores)
        marks = range(args.every, args.texts + 1, args.every)
        stream = nlp.pipe(islice(cycle(texts), args.texts), batch_size=args.batch_size)
        started = time.perf_counter()
        record["rss_mb"] = []

        def on_mark(done: int, mb: float) -> None:
            log("memory", f"{done:,} docs: {mb:,.1f} MB")
            record["rss_mb"].append((done, mb))
            record["wall_s"] = time.perf_counter() - started
            record["strings_after"] = sum(len(s) for s in stores)
            record["partial"] = done < marks[-1]
            write(record, args.out)

        rss_curve(stream, marks, on_mark=on_mark)
    print(markdown(record))


def write(record: Dict[str, Any], out: Path) -> None:
    """Write the record with its growth so far (the last point against the first)."""
    first, last = record["rss_mb"][0][1], record["rss_mb"][-1][1]
    record["growth_pct"] = 100 * (last - first) / first
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory_stream.json").write_text(json.dumps(record, indent=1), encoding="utf8")
    (out / "memory_stream.md").write_text(markdown(record), encoding="utf8")


if __name__ == "__main__":
    main()
