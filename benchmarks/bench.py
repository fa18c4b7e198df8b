"""spacy-emotion side by side with plain Transformers: same weights, texts, machine.

One run measures, each system in its own fresh subprocess (so that load time
and peak RSS are its own), on the test texts and on an N-text stream (the test
texts repeated and shuffled):

  A-component  `nlp.pipe` through `emotion_classifier` in a blank pipeline
  A-pipeline   the trained pipeline itself, `spacy.load` + `nlp.pipe`
  A-hf         (optional) `emotion_classifier` over B's exported checkpoint
  B            AutoModelForSequenceClassification with the same backbone
               weights, batch 64, dynamic padding, torch.inference_mode
  C-default    transformers.pipeline("text-classification"), its defaults
               (batch size 1)
  C-batch64    the same with batch_size=64

For each: docs/s and words/s on the test texts (median of --repeats runs after
a warm-up run), single-text latency p50/p95, model load time, peak RSS, and RSS
growth over the stream (from 10k docs to the end; each point is the highest RSS
read since the previous point, read every 16 docs). Then the speed settings of
`emotion_classifier` (--variants), each with its test accuracy, its accuracy
change and label agreement against the model as trained ("as-trained":
float32, the pipeline's own batches, nlp.pipe), and which Linear layers
ran (the component's default quantize "auto" resolved), and training
throughput (examples/s) of `spacy train` with configs/trf.cfg against a plain
PyTorch loop with the same backbone, batch size and precision.

B's weights are exported from the trained pipeline: the encoder is the
transformer component's Hugging Face model, 1:1. The textcat reads the first
token's vector and the mean of the token vectors, which no AutoModelForSequenceClassification
head does, so B's head is the architecture's own (BERT: tanh pooler on [CLS]
from the backbone, then a Linear), with the textcat's output weights copied
into its last Linear where the shapes match (they don't for first token + mean).
B and C are there for speed: their labels are not those of
a trained model, and their accuracy is printed only as a check that they ran.

    python benchmarks/bench.py --model training/trf/model-best \\
        --data ../shared/data/emotion --out benchmarks

writes benchmarks/results.json and benchmarks/results.md (rewritten after each
part, so that a run stopped early keeps what it measured). With --gpu every
row runs on CUDA device 0, training in fp32 and fp16-mixed. benchmarks/README.md
has the commands and the latest results. The code: benchmarks/systems.py (the
systems and settings), measure.py, jobs.py (one process per measurement),
training_speed.py and report.py.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.jobs import run_job, score  # noqa: E402
from benchmarks.measure import log  # noqa: E402
from benchmarks.report import markdown, ratio, run_meta, write_results  # noqa: E402
from benchmarks.systems import (  # noqa: E402
    DEFAULT_SYSTEMS,
    DEFAULT_VARIANTS,
    GPU_VARIANTS,
    MAX_ACCURACY_LOSS,
    REFERENCE_VARIANT,
    SYSTEMS,
    VARIANTS,
    export_hf_checkpoint,
    read_split,
)

CPU_DEFAULTS = {"stream": 100000, "stream_c": 20000, "repeats": 5, "latency": 200, "train_steps": 40, "host_bound": 0}
GPU_DEFAULTS = {"stream": 20000, "stream_c": 2000, "repeats": 3, "latency": 100, "train_steps": 20, "host_bound": 10000}
"""Sizes of a run when not given: with --gpu, every GPU row in one command of
a few minutes (benchmarks/README.md), the host-bound mode included."""


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line.

    argv (Optional[List[str]]): the arguments (default: sys.argv[1:]).
    RETURNS (argparse.Namespace): the options.
    """
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="training/trf/model-best", help="the trained trf pipeline (directory or package)"
    )
    parser.add_argument(
        "--data",
        default=str(ROOT.parent / "shared" / "data" / "emotion"),
        help="dataset folder with the test (and train) split",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks"), help="folder for results.json and results.md")
    parser.add_argument("--systems", default=DEFAULT_SYSTEMS, help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument(
        "--variants",
        default=None,
        help=f"emotion_classifier settings to measure, of {', '.join(VARIANTS)}; 'none' for none "
        f"(default: {DEFAULT_VARIANTS}; with --gpu {GPU_VARIANTS})",
    )
    parser.add_argument(
        "--stream", type=int, default=None, help="docs in the stream (test texts repeated, shuffled); 0: no stream"
    )
    parser.add_argument("--stream-c", type=int, default=None, help="docs in C-default's stream (batch size 1 is slow)")
    parser.add_argument(
        "--variant-stream", type=int, default=0, help="docs in each setting's stream (0: test texts only)"
    )
    parser.add_argument(
        "--rss-from", type=int, default=10000, help="RSS growth is measured from this many streamed docs to the end"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs over the test texts (median), after a warm-up run"
    )
    parser.add_argument("--latency", type=int, default=None, help="single texts timed for latency; 0: none")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--test-limit", type=int, default=0, help="use only the first N test texts (0: all)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in every system (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-steps", type=int, default=None, help="training steps per trainer; 0: skip training")
    parser.add_argument("--train-warmup", type=int, default=5, help="first steps not timed")
    parser.add_argument(
        "--train-corpus", default=None, help="folder with train.spacy and dev.spacy (default: converted from --data)"
    )
    parser.add_argument("--config", default=str(ROOT / "configs" / "trf.cfg"))
    parser.add_argument("--backbone", default=None, help="backbone for training (default: the model's own)")
    parser.add_argument("--export-dir", default=None, help="where B's checkpoint goes (default: a temporary folder)")
    parser.add_argument(
        "--host-bound",
        type=int,
        default=None,
        help="texts of the host-bound mode (benchmarks/host_bound.py), run last; 0: none "
        f"(default: 0, with --gpu {GPU_DEFAULTS['host_bound']})",
    )
    parser.add_argument("--gpu", action="store_true", help="run everything on CUDA device 0 (fails without CUDA)")
    args = parser.parse_args(argv)
    for name, gpu_value in GPU_DEFAULTS.items():  # sizes left unset: the CPU's, or with --gpu a run of minutes
        if getattr(args, name) is None:
            setattr(args, name, gpu_value if args.gpu else CPU_DEFAULTS[name])
    return args


def check_gpu() -> None:
    """--gpu: fail clearly without CUDA or without CuPy (spaCy's GPU arrays)."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(
            "--gpu: no CUDA device (torch.cuda.is_available() is False; torch "
            f"{torch.__version__}). Run without --gpu, or on a machine with an NVIDIA GPU and a CUDA build of torch."
        )
    try:
        import cupy  # noqa: F401
    except ImportError:
        raise SystemExit(
            "--gpu: spaCy runs on the GPU through CuPy; install the CuPy build for your CUDA (e.g. pip "
            "install cupy-cuda12x)."
        )


def model_backbone(model: str) -> str:
    """The backbone a trained pipeline was built from.

    model (str): the pipeline's folder or package name.
    RETURNS (str): its transformer's `name`, or the default backbone.
    """
    import spacy

    from spacy_emotion.training.backbone import DEFAULT_BACKBONE

    path = Path(model)
    if not (path / "config.cfg").is_file():
        path = Path(spacy.util.get_package_path(model))
    config = spacy.util.load_config(path / "config.cfg", interpolate=True)
    try:
        return str(config["components"]["transformer"]["model"]["name"])
    except KeyError:
        return DEFAULT_BACKBONE


def check_options(args: argparse.Namespace) -> List[str]:
    """Fail before any work on unknown systems or settings, or on --gpu without CUDA.

    args (argparse.Namespace): the options.
    RETURNS (List[str]): the settings to measure.
    """
    if args.gpu:
        check_gpu()
    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in SYSTEMS]
    variant_names = args.variants or (GPU_VARIANTS if args.gpu else DEFAULT_VARIANTS)
    variant_names = [] if variant_names == "none" else [v for v in variant_names.split(",") if v]
    unknown += [v for v in variant_names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown system or setting: {', '.join(unknown)}")
    if args.gpu and any(VARIANTS[v].get("quantize") == "int8" for v in variant_names):
        # bf16 Linear layers run on a GPU too
        raise SystemExit("--gpu: int8 dynamic quantization runs on the CPU only; leave int8 out of --variants")
    import spacy

    if not Path(args.model).exists() and not spacy.util.is_package(args.model):
        raise SystemExit(
            f"--model {args.model}: no such pipeline. Train one (spacy project run train) or pass its folder."
        )
    return variant_names


def measure_systems(
    results: Dict[str, Any], systems: List[str], gold: List[str], common: Dict[str, Any], work: Path
) -> None:
    """The systems' rows: each system in a process of its own, scored on the test labels.

    results (Dict[str, Any]): the run; its "systems" are filled in.
    systems (List[str]): the systems to measure.
    gold (List[str]): the test labels.
    common (Dict[str, Any]): what every inference job shares (sizes, device, files).
    work (Path): folder for the job files.
    """
    meta = results["meta"]
    for system in systems:
        stream = meta["stream_c"] if system == "C-default" else meta["stream"]
        result = run_job({**common, "name": system, "system": system, "stream": stream}, work)
        score(result, gold)
        result.pop("predictions")
        results["systems"][system] = result


def measure_variants(
    results: Dict[str, Any],
    variant_names: List[str],
    gold: List[str],
    common: Dict[str, Any],
    stream: int,
    work: Path,
) -> None:
    """The speed settings' rows (A-component with each setting), the reference
    first: the others' accuracy change and label agreement are against it.

    results (Dict[str, Any]): the run; its "variants" are filled in.
    variant_names (List[str]): the settings to measure (names in VARIANTS).
    gold (List[str]): the test labels.
    common (Dict[str, Any]): what every inference job shares.
    stream (int): docs in each setting's stream (0: none).
    work (Path): folder for the job files.
    """
    reference = (
        REFERENCE_VARIANT if REFERENCE_VARIANT in variant_names else (variant_names[0] if variant_names else None)
    )
    base_predictions: Optional[List[str]] = None
    for name in sorted(variant_names, key=lambda v: v != reference):
        job = {**common, "name": f"setting-{name}", "system": "A-component", "options": VARIANTS[name]}
        result = run_job({**job, "stream": stream}, work)
        score(result, gold)
        predictions = result.pop("predictions")
        if name == reference:
            base_predictions = predictions
        result["agreement"] = sum(a == b for a, b in zip(predictions, base_predictions)) / len(predictions)
        results["variants"][name] = result
    results["meta"]["reference_variant"] = reference
    base = results["variants"].get(reference)
    for result in results["variants"].values():
        result["accuracy_delta_points"] = 100 * (result["accuracy"] - base["accuracy"])
        result["accuracy_ok"] = result["accuracy_delta_points"] >= -MAX_ACCURACY_LOSS


def measure_training(results: Dict[str, Any], args: argparse.Namespace, device: str, work: Path) -> None:
    """The training rows: `spacy train` and the plain loop, fp32 (and fp16-mixed on a GPU).

    results (Dict[str, Any]): the run; its "training" and training meta are filled in.
    args (argparse.Namespace): the options (corpus, config, backbone, steps).
    device (str): "cpu" or "cuda".
    work (Path): folder for the job files and a converted corpus.
    """
    meta = results["meta"]
    if args.train_corpus:
        corpus = Path(args.train_corpus)
    else:
        from spacy_emotion.training.corpus import convert

        corpus = work / "corpus"
        log("train", f"converting {args.data} into {corpus}")
        convert(corpus, source=str(args.data))
    backbone = args.backbone or model_backbone(args.model)
    from spacy.tokens import DocBin

    n_train = len(DocBin().from_disk(corpus / "train.spacy"))
    train_common = {
        "config": args.config,
        "train": str(corpus / "train.spacy"),
        "dev": str(corpus / "dev.spacy"),
        "backbone": backbone,
        "steps": args.train_steps,
        "warmup": min(args.train_warmup, args.train_steps - 1),
        "batch_size": 32,
        "device": device,
        "threads": args.threads,
    }
    meta.update(
        {
            "train_steps": args.train_steps,
            "train_warmup": train_common["warmup"],
            "train_batch_size": 32,
            "train_examples": n_train,
            "train_backbone": backbone,
        }
    )
    for precision in ["fp32", "fp16-mixed"] if args.gpu else ["fp32"]:
        mixed = precision != "fp32"
        row: Dict[str, Any] = {}
        for kind in ("spacy", "torch"):
            row[kind] = run_job(
                {
                    **train_common,
                    "kind": f"train-{kind}",
                    "name": f"train-{kind}-{precision}",
                    "mixed_precision": mixed,
                },
                work,
            )
        row["ratio"] = ratio(row["spacy"]["examples_per_s"], row["torch"]["examples_per_s"])
        row["epoch_s_spacy"] = n_train / row["spacy"]["examples_per_s"]
        row["epoch_s_torch"] = n_train / row["torch"]["examples_per_s"]
        results["training"][precision] = row


def measure_host_bound(args: argparse.Namespace, out: Path) -> Dict[str, Any]:
    """The host-bound mode (benchmarks/host_bound.py) in a process of its own,
    on the same device: its tiny model is trained there, not read from --model.

    args (argparse.Namespace): the options (data, texts, device, threads).
    out (Path): the folder for its host_bound.json and host_bound.md.
    RETURNS (Dict[str, Any]): its results.
    """
    command = [sys.executable, "-m", "benchmarks.host_bound", "--data", str(args.data), "--out", str(out)]
    command += ["--texts", str(args.host_bound), "--rounds", "3", "--profile-texts", "2000"]
    command += ["--threads", str(args.threads)] + (["--gpu"] if args.gpu else [])
    log("host-bound", "starting")
    if subprocess.run(command, cwd=str(ROOT)).returncode != 0:
        raise SystemExit("the host-bound mode failed; its output is above")
    return json.loads((out / "host_bound.json").read_text(encoding="utf8"))


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Run the benchmark and write results.json and results.md.

    argv (Optional[List[str]]): the arguments (default: sys.argv[1:]).
    RETURNS (Dict[str, Any]): the results, as results.json holds them.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    device = "cuda" if args.gpu else "cpu"
    variant_names = check_options(args)
    systems = [s for s in args.systems.split(",") if s]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="spacy-emotion-bench-") as tmp:
        work = Path(tmp)
        texts, labels = read_split(Path(args.data), args.test_limit)
        data_file = work / "test.json"
        data_file.write_text(json.dumps({"texts": texts, "labels": labels}), encoding="utf8")
        export_dir = Path(args.export_dir) if args.export_dir else work / "hf-export"
        log("export", f"B's checkpoint from {args.model} -> {export_dir}")
        export = export_hf_checkpoint(Path(args.model), export_dir)
        meta = {
            **run_meta(device, "benchmarks/bench.py", argv),
            "model": str(args.model),
            "data": str(args.data),
            "device": device,
            "test_texts": len(texts),
            "stream": args.stream,
            "stream_c": min(args.stream, args.stream_c),
            "rss_from": args.rss_from,
            "repeats": args.repeats,
            "latency": args.latency,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "B": export,
        }
        common = {
            "kind": "inference",
            "model": str(args.model),
            "export": str(export_dir),
            "data": str(data_file),
            "device": device,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "latency": args.latency,
            "threads": args.threads,
            "seed": args.seed,
            "rss_from": args.rss_from,
        }
        results: Dict[str, Any] = {"meta": meta, "systems": {}, "variants": {}, "training": {}}
        measure_systems(results, systems, labels, common, work)
        write_results(results, out, partial=True)
        measure_variants(results, variant_names, labels, common, args.variant_stream, work)
        if args.train_steps:
            write_results(results, out, partial=True)
            measure_training(results, args, device, work)

    if args.host_bound:
        write_results(results, out, partial=True)
        results["host_bound"] = measure_host_bound(args, out / "host-bound")
    meta["wall_s"] = time.perf_counter() - started
    write_results(results, out)
    log("done", f"{out / 'results.json'}, {out / 'results.md'} in {meta['wall_s']:.0f} s")
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
