"""One report per model config: a self-contained HTML page and a markdown summary.

`build_report` gathers what the other analysis commands left in the reports
folder (explore/, baseline.json + the pipelines' metrics, embeddings/ and
the config's own folder from `analyze`) into sections, then renders the
same sections twice: `report_{config}.html`, with every figure embedded as
base64 (the page can be mailed or opened anywhere), and `report_{config}.md`,
which links the figures by relative path. A missing part is named with the
command that makes it, so a partial report is still useful.
"""

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import srsly

from ..labels import LABELS
from ..training.dataset import SPLITS
from .markdown import markdown_cell

Table = Tuple[List[str], List[List[str]]]


@dataclass
class Section:
    """A part of the report: paragraphs, then tables, then figures."""

    title: str
    paragraphs: List[str] = field(default_factory=list)
    tables: List[Table] = field(default_factory=list)
    figures: List[Tuple[Path, str]] = field(default_factory=list)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _read(path: Path) -> Optional[Any]:
    return srsly.read_json(path) if path.is_file() else None


def summary_section(analysis: Optional[Dict[str, Any]], config: str) -> Section:
    """Headline test metrics of the config's model."""
    section = Section(f"Summary: {config}")
    if analysis is None:
        section.paragraphs.append(
            f"No evaluation analysis for '{config}' yet: run `spacy project run analyze` "
            f"(reports/{config}/analysis.json)."
        )
        return section
    m = analysis["metrics"]
    section.paragraphs.append(f"Test split, {analysis['n']:,} texts.")
    section.tables.append(
        (
            ["accuracy", "macro-F1", "weighted-F1", "log loss", "expected calibration error"],
            [
                [
                    _fmt(m["accuracy"]),
                    _fmt(m["macro_f1"]),
                    _fmt(m["weighted_f1"]),
                    _fmt(analysis["log_loss"]),
                    _fmt(analysis["calibration"]["ece"]),
                ]
            ],
        )
    )
    return section


def data_section(reports_dir: Path) -> Section:
    """Class distribution and text lengths of each split (from `explore`)."""
    section = Section("Data")
    stats = _read(reports_dir / "explore" / "length_stats.json")
    if stats is None:
        section.paragraphs.append("No exploration yet: run `spacy project run explore`.")
        return section
    window = stats.get("window") or 0
    if window:
        section.paragraphs.append(
            f"Token counts use the tokenizer of {stats.get('backbone') or 'the backbone'}, whose window is "
            f"{window} tokens."
        )
    header = (
        ["split", "texts"]
        + list(LABELS)
        + ["mean words", "p95 words", "max words", f"texts over {window} tokens" if window else "texts over window"]
    )
    rows = []
    for split, s in stats["splits"].items():
        over = f"{s['over_window']:,} ({s['over_window_share']:.1%})" if "over_window" in s else "–"
        rows.append(
            [split, _fmt(s["n"])]
            + [_fmt(s["label_counts"][label]) for label in LABELS]
            + [_fmt(s["words"]["mean"], 1), _fmt(s["words"]["p95"], 1), _fmt(s["words"]["max"]), over]
        )
    section.tables.append((header, rows))
    for split in list(stats["splits"]) + [s for s in SPLITS if s not in stats["splits"]]:
        for stem, caption in (
            ("class_distribution", "Class distribution"),
            ("words_per_text", "Words per text by emotion"),
        ):
            path = reports_dir / "explore" / f"{stem}_{split}.png"
            if path.is_file():
                section.figures.append((path, f"{caption}, {split} split"))
    return section


def comparison_section(reports_dir: Path, metrics_dir: Optional[Path]) -> Section:
    """Baselines beside the fine-tuned pipelines (from `baseline` and `evaluate`)."""
    from .baseline import write_comparison

    section = Section("Baselines and trained pipelines")
    try:
        comparison = write_comparison(reports_dir, metrics_dir)  # picks up metrics files newer than the baselines
    except ValueError:
        comparison = _read(reports_dir / "comparison.json")
    if comparison is None:
        section.paragraphs.append(
            "No comparison yet: run `spacy project run baseline` (and `evaluate` for the pipelines)."
        )
        return section
    if comparison.get("backbone"):
        section.paragraphs.append(
            f"Baselines: scikit-learn classifiers on frozen embeddings of {comparison['backbone']}, trained "
            "on the train split. "
            "Pipelines: test metrics written by `evaluate`."
        )
    rows = [
        [row["model"]]
        + [
            _fmt((row.get(split) or {}).get(key))
            for split, key in (
                ("validation", "accuracy"),
                ("validation", "macro_f1"),
                ("test", "accuracy"),
                ("test", "macro_f1"),
                ("test", "n"),
            )
        ]
        for row in comparison["rows"]
    ]
    section.tables.append(
        (["model", "validation accuracy", "validation macro-F1", "test accuracy", "test macro-F1", "test texts"], rows)
    )
    return section


def embedding_section(reports_dir: Path) -> Section:
    """The UMAP map of the frozen train embeddings (from `embeddings`)."""
    section = Section("Embedding map")
    path = reports_dir / "embeddings" / "umap_train.png"
    info = _read(reports_dir / "embeddings" / "umap_train.json")
    if not path.is_file() or info is None:
        section.paragraphs.append("No embedding map yet: run `spacy project run embeddings`.")
        return section
    section.paragraphs.append(
        f"UMAP projection (n_neighbors={info['n_neighbors']}, min_dist={info['min_dist']}) of the frozen "
        f"{info['pooling']}-pooled "
        f"embeddings of {info['n']:,} train texts from {info['backbone']}. Each panel shows one emotion's "
        "density over all texts (grey)."
    )
    section.figures.append((path, "UMAP of the frozen train embeddings, one panel per emotion"))
    return section


def evaluation_sections(reports_dir: Path, config: str, analysis: Optional[Dict[str, Any]]) -> List[Section]:
    """Per-class scores, confusion matrix, calibration and errors (from `analyze`)."""
    if analysis is None:
        return []
    folder = reports_dir / config
    per_class = analysis["metrics"]["per_class"]
    scores = Section(f"Evaluation of {config}")
    scores.tables.append(
        (
            ["emotion", "precision", "recall", "F1", "support"],
            [
                [
                    label,
                    _fmt(per_class[label]["precision"]),
                    _fmt(per_class[label]["recall"]),
                    _fmt(per_class[label]["f1"]),
                    _fmt(per_class[label]["support"]),
                ]
                for label in LABELS
            ],
        )
    )
    for stem, caption in (
        ("confusion_matrix", "Confusion matrix, each row normalised over the true label"),
        ("per_class", "Precision, recall and F1 per emotion"),
    ):
        if (folder / f"{stem}.png").is_file():
            scores.figures.append((folder / f"{stem}.png", caption))
    calib = analysis["calibration"]
    calibration = Section("Calibration")
    calibration.paragraphs.append(
        f"Expected calibration error (ECE) of the top-label probability: {calib['ece']:.3f} over "
        f"{calib['n_bins']} equal-width bins. "
        "The emotion_classifier's `threshold` is compared with this probability, so it means what it says "
        "only when the model is calibrated."
    )
    calibration.tables.append(
        (
            ["confidence bin", "texts", "accuracy", "mean confidence", "gap (confidence − accuracy)"],
            [
                [
                    f"{b['lower']:.2f}–{b['upper']:.2f}",
                    _fmt(b["count"]),
                    _fmt(b["accuracy"]),
                    _fmt(b["confidence"]),
                    _fmt(b["confidence"] - b["accuracy"]),
                ]
                for b in calib["bins"]
            ],
        )
    )
    if (folder / "calibration.png").is_file():
        calibration.figures.append((folder / "calibration.png", "Reliability diagram and confidence histogram"))
    errors = Section("Highest-loss test examples")
    rows = list(srsly.read_jsonl(folder / "errors.jsonl")) if (folder / "errors.jsonl").is_file() else []
    errors.paragraphs.append(
        f"The {len(rows)} test texts with the highest cross-entropy loss (-log p(true label)), highest first."
    )
    errors.tables.append(
        (
            ["#", "text", "true", "predicted", "p(predicted)", "p(true)", "loss"],
            [
                [
                    str(r["rank"]),
                    r["text"],
                    r["gold"],
                    r["pred"],
                    _fmt(r["prob"]),
                    _fmt(r["gold_prob"]),
                    _fmt(r["loss"]),
                ]
                for r in rows
            ],
        )
    )
    return [scores, calibration, errors]


def collect_sections(reports_dir: Path, config: str, metrics_dir: Optional[Path] = None) -> List[Section]:
    """All sections of the report of `config`, in reading order.

    reports_dir (Path): the reports folder.
    config (str): the model config ("trf", "bow"); its analyses are in reports_dir/config.
    metrics_dir (Optional[Path]): folder of the pipelines' metrics files.
    RETURNS (List[Section]): the sections.
    """
    reports_dir = Path(reports_dir)
    analysis = _read(reports_dir / config / "analysis.json")
    return [
        summary_section(analysis, config),
        data_section(reports_dir),
        embedding_section(reports_dir),
        comparison_section(reports_dir, metrics_dir),
        *evaluation_sections(reports_dir, config, analysis),
    ]


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1000px;
       margin: 2em auto; padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
"""


def render_html(sections: List[Section], title: str) -> str:
    """The sections as one HTML page with every figure embedded (base64 PNG).

    sections (List[Section]): the report's sections.
    title (str): the page title.
    RETURNS (str): the HTML.
    """
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{esc(section.title)}</h2>")
        parts.extend(f"<p>{esc(p)}</p>" for p in section.paragraphs)
        for header, rows in section.tables:
            parts.append("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>")
            parts.extend("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
            parts.append("</tbody></table>")
        for path, caption in section.figures:
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{esc(caption)}" title="{esc(Path(path).name)}">'
                f"<figcaption>{esc(caption)} ({esc(Path(path).name)})</figcaption></figure>"
            )
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def render_markdown(sections: List[Section], title: str, base_dir: Path) -> str:
    """The sections as markdown, figures linked relative to `base_dir`.

    sections (List[Section]): the report's sections.
    title (str): the top heading.
    base_dir (Path): the folder the markdown file is written to.
    RETURNS (str): the markdown.
    """
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for p in section.paragraphs:
            lines += [p, ""]
        for header, rows in section.tables:
            lines.append("| " + " | ".join(markdown_cell(h) for h in header) + " |")
            lines.append("|" + "---|" * len(header))
            lines.extend("| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in rows)
            lines.append("")
        for path, caption in section.figures:
            rel = Path(os.path.relpath(path, base_dir)).as_posix()
            lines += [f"![{caption}]({rel})", ""]
    return "\n".join(lines)


def build_report(reports_dir: Path, config: str, metrics_dir: Optional[Path] = None) -> Dict[str, Path]:
    """Write report_{config}.html and report_{config}.md into the reports folder.

    reports_dir (Path): the reports folder the other commands wrote to.
    config (str): the model config whose analyses to include.
    metrics_dir (Optional[Path]): folder of the pipelines' metrics files, to
        refresh the comparison table.
    RETURNS (Dict[str, Path]): {"html": ..., "markdown": ...}.
    """
    reports_dir = Path(reports_dir)
    if not reports_dir.is_dir():
        raise FileNotFoundError(f"Reports folder not found: {reports_dir}")
    sections = collect_sections(reports_dir, config, metrics_dir)
    title = f"spacy-emotion report: {config}"
    paths = {"html": reports_dir / f"report_{config}.html", "markdown": reports_dir / f"report_{config}.md"}
    paths["html"].write_text(render_html(sections, title), encoding="utf8")
    paths["markdown"].write_text(render_markdown(sections, title, reports_dir), encoding="utf8")
    return paths
