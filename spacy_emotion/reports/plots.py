"""Every figure of the analysis reports, drawn with matplotlib's Agg backend.

Each function draws one figure from plain data (counts, matrices, scores),
saves it as a PNG of a fixed size (:data:`SIZES` inches at :data:`DPI`) and
returns the path. Labels are always shown by name, in :data:`LABELS` order,
each emotion with the same colour in every figure.
"""

from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..labels import LABELS  # noqa: E402

DPI = 100
"""Dots per inch of every PNG: a figure of SIZES[kind] inches is (w*DPI, h*DPI) pixels."""

SIZES: Dict[str, Tuple[float, float]] = {
    "class_distribution": (8.0, 4.5),
    "lengths": (8.0, 4.5),
    "confusion_matrix": (7.0, 6.0),
    "per_class": (9.0, 4.5),
    "calibration": (6.5, 7.0),
    "embedding_map": (12.0, 7.5),
}
"""Figure size in inches of each kind of figure; all fit the width of a page."""

COLORS: Dict[str, str] = {
    "sadness": "#3b6fb6",
    "joy": "#e8a317",
    "love": "#d9468f",
    "anger": "#c8322d",
    "fear": "#6f4fa8",
    "surprise": "#2e9c6a",
}
"""One colour per emotion, shared by all figures."""

COLORMAPS: Dict[str, str] = {
    "sadness": "Blues",
    "joy": "YlOrBr",
    "love": "RdPu",
    "anger": "Reds",
    "fear": "Purples",
    "surprise": "Greens",
}
"""One sequential colour map per emotion (hexbin panels)."""


def pixel_size(kind: str) -> Tuple[int, int]:
    """The (width, height) in pixels of a saved figure of `kind`.

    kind (str): a key of SIZES.
    RETURNS (Tuple[int, int]): the PNG's width and height.
    """
    w, h = SIZES[kind]
    return int(round(w * DPI)), int(round(h * DPI))


def _new_figure(kind: str, nrows: int = 1, ncols: int = 1, **kwargs):
    return plt.subplots(nrows, ncols, figsize=SIZES[kind], dpi=DPI, layout="constrained", **kwargs)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor="white")  # no bbox_inches="tight": the size stays SIZES[kind]
    plt.close(fig)
    return path


def class_distribution(counts: Mapping[str, int], path: Path, title: str) -> Path:
    """Bar chart of examples per emotion, each bar labelled with count and share.

    counts (Mapping[str, int]): examples per label.
    path (Path): the PNG to write.
    title (str): the figure title.
    RETURNS (Path): the PNG.
    """
    fig, ax = _new_figure("class_distribution")
    values = [int(counts.get(label, 0)) for label in LABELS]
    total = max(sum(values), 1)
    bars = ax.bar(LABELS, values, color=[COLORS[label] for label in LABELS])
    ax.bar_label(bars, labels=[f"{v:,}\n{v / total:.1%}" for v in values], padding=2, fontsize=9)
    ax.set_ylim(0, max(max(values), 1) * 1.22)
    ax.set_title(title)
    ax.set_xlabel("Emotion")
    ax.set_ylabel("Examples")
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def length_boxplot(lengths: Mapping[str, Sequence[int]], path: Path, title: str, unit: str = "Words per text") -> Path:
    """Box plot of text lengths, one box per emotion.

    lengths (Mapping[str, Sequence[int]]): the length of each text, by label.
    path (Path): the PNG to write.
    title (str): the figure title.
    unit (str): the y-axis label.
    RETURNS (Path): the PNG.
    """
    fig, ax = _new_figure("lengths")
    data = [list(lengths.get(label, [])) or [np.nan] for label in LABELS]
    parts = ax.boxplot(
        data,
        patch_artist=True,
        showfliers=True,
        widths=0.6,
        medianprops={"color": "black"},
        flierprops={"marker": ".", "markersize": 3, "alpha": 0.4},
    )
    for patch, label in zip(parts["boxes"], LABELS):
        patch.set_facecolor(COLORS[label])
        patch.set_alpha(0.75)
    ax.set_xticks(range(1, len(LABELS) + 1), [f"{label}\n(n={len(lengths.get(label, []))})" for label in LABELS])
    ax.set_title(title)
    ax.set_xlabel("Emotion")
    ax.set_ylabel(unit)
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def confusion_heatmap(matrix: np.ndarray, counts: np.ndarray, path: Path, title: str) -> Path:
    """Heat map of a row-normalised confusion matrix (rows = true label).

    matrix (np.ndarray): (6, 6) shares, each row summing to 1 (0 for an
        absent label), rows = true, columns = predicted, in LABELS order.
    counts (np.ndarray): the (6, 6) raw counts, printed under each share.
    path (Path): the PNG to write.
    title (str): the figure title.
    RETURNS (Path): the PNG.
    """
    fig, ax = _new_figure("confusion_matrix")
    image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="Share of the true label's examples")
    n = len(LABELS)
    for i in range(n):
        for j in range(n):
            colour = "white" if matrix[i, j] > 0.55 else "black"
            ax.text(
                j, i, f"{matrix[i, j]:.2f}\n({int(counts[i, j])})", ha="center", va="center", color=colour, fontsize=9
            )
    ax.set_xticks(range(n), LABELS, rotation=30, ha="right")
    ax.set_yticks(range(n), LABELS)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    ax.set_title(title)
    return _save(fig, path)


def per_class_bars(per_class: Mapping[str, Mapping[str, float]], path: Path, title: str) -> Path:
    """Grouped bars of precision, recall and F1 for each emotion.

    per_class (Mapping): {label: {precision, recall, f1, support}} as
        returned by `metrics.compute_metrics`.
    path (Path): the PNG to write.
    title (str): the figure title.
    RETURNS (Path): the PNG.
    """
    fig, ax = _new_figure("per_class")
    x = np.arange(len(LABELS))
    width = 0.26
    for k, (key, name, colour) in enumerate(
        (("precision", "Precision", "#4c72b0"), ("recall", "Recall", "#dd8452"), ("f1", "F1", "#55a868"))
    ):
        values = [per_class[label][key] for label in LABELS]
        bars = ax.bar(x + (k - 1) * width, values, width, label=name, color=colour)
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=7, padding=1)
    ax.set_xticks(x, [f"{label}\n(n={per_class[label]['support']})" for label in LABELS])
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("Emotion (test support)")
    ax.set_ylabel("Score")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def reliability_diagram(
    bins: List[Dict[str, float]], edges: Sequence[float], ece: float, path: Path, title: str
) -> Path:
    """Reliability diagram (accuracy against confidence per bin) over a confidence histogram.

    bins (List[Dict]): one dict per non-empty bin with keys lower, upper,
        count, accuracy and confidence (mean top-label probability).
    edges (Sequence[float]): the bin edges, from 0 to 1.
    ece (float): the expected calibration error, shown in the title.
    path (Path): the PNG to write.
    title (str): the figure title.
    RETURNS (Path): the PNG.
    """
    fig, (ax, hist) = _new_figure("calibration", 2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    widths = np.diff(edges)
    lowers = np.asarray([b["lower"] for b in bins])
    bin_widths = np.asarray([b["upper"] - b["lower"] for b in bins])
    accuracy = np.asarray([b["accuracy"] for b in bins])
    confidence = np.asarray([b["confidence"] for b in bins])
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="Perfect calibration")
    ax.bar(lowers, accuracy, bin_widths, align="edge", color="#4c72b0", edgecolor="white", label="Accuracy in bin")
    ax.bar(
        lowers,
        np.abs(confidence - accuracy),
        bin_widths,
        bottom=np.minimum(accuracy, confidence),
        align="edge",
        facecolor="none",
        edgecolor="#c8322d",
        hatch="///",
        linewidth=1.0,
        label="Gap between accuracy and confidence",
    )
    ax.plot(
        lowers + bin_widths / 2,
        confidence,
        linestyle="none",
        marker="D",
        markersize=5,
        color="#c8322d",
        label="Mean confidence in bin",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("Accuracy")
    ax.set_title(f"{title}\nExpected calibration error (ECE) = {ece:.3f}")
    ax.legend(loc="upper left", frameon=False)
    ax.set_aspect("auto")
    hist.bar(lowers, [b["count"] for b in bins], bin_widths, align="edge", color="#888888", edgecolor="white")
    hist.set_xlabel("Confidence (probability of the predicted label)")
    hist.set_ylabel("Examples")
    hist.set_xticks(np.round(np.asarray(edges)[:: max(1, len(widths) // 10)], 2))
    return _save(fig, path)


def _visible_cmap(name: str):
    """A sequential colour map without its near-white start, so single texts stay visible."""
    from matplotlib.colors import ListedColormap

    return ListedColormap(plt.get_cmap(name)(np.linspace(0.3, 1.0, 256)))


def hexbin_panels(coords: np.ndarray, labels: Sequence[str], path: Path, title: str, gridsize: int = 0) -> Path:
    """One hexbin density panel per emotion over a shared 2-D projection.

    coords (np.ndarray): (n, 2) projected points.
    labels (Sequence[str]): the label of each point.
    path (Path): the PNG to write.
    title (str): the figure title.
    gridsize (int): hexagons across the x axis (0 = from the number of points).
    RETURNS (Path): the PNG.
    """
    from matplotlib.ticker import FuncFormatter, NullFormatter

    coords = np.asarray(coords, dtype=float)
    labels = np.asarray(labels)
    gridsize = gridsize or int(np.clip(np.sqrt(len(coords)) / 2, 8, 50))
    fig, axes = _new_figure("embedding_map", 2, 3, sharex=True, sharey=True)
    pad_x = (np.ptp(coords[:, 0]) or 1.0) * 0.03
    pad_y = (np.ptp(coords[:, 1]) or 1.0) * 0.03
    extent = (
        coords[:, 0].min() - pad_x,
        coords[:, 0].max() + pad_x,
        coords[:, 1].min() - pad_y,
        coords[:, 1].max() + pad_y,
    )
    for ax, label in zip(axes.ravel(), LABELS):
        mask = labels == label
        # every point in light grey for context, the emotion's own density on top
        ax.scatter(coords[:, 0], coords[:, 1], s=1, color="#dddddd", rasterized=True)
        if mask.any():
            cells = ax.hexbin(
                coords[mask, 0],
                coords[mask, 1],
                gridsize=gridsize,
                extent=extent,
                cmap=_visible_cmap(COLORMAPS[label]),
                mincnt=1,
                bins="log",
                linewidths=0.2,
            )
            bar = fig.colorbar(cells, ax=ax, fraction=0.05, pad=0.02)
            bar.set_label("texts per hexagon (log scale)", fontsize=8)
            top = max(float(cells.get_array().max()), 1.0)
            bar.set_ticks([t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if t <= top])
            bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            bar.ax.yaxis.set_minor_formatter(NullFormatter())
            bar.ax.tick_params(which="both", labelsize=7)
        ax.set_title(f"{label} (n={int(mask.sum()):,})", color=COLORS[label], fontweight="bold")
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    for ax in axes[1]:
        ax.set_xlabel("UMAP 1")
    for ax in axes[:, 0]:
        ax.set_ylabel("UMAP 2")
    fig.suptitle(title)
    return _save(fig, path)
