"""Dataset exploration: class distribution and text lengths of each split.

For each split, `explore` draws a class-distribution bar chart and a
words-per-text box plot by label, and writes length statistics (words and
backbone tokens) including how many texts are longer than the backbone's
window, i.e. would be truncated by a model reading one window.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import srsly

from ..labels import LABELS
from ..training.dataset import Split
from . import plots

EXPLORE_DIR = "explore"
"""Sub-folder of the reports folder for the exploration outputs."""


def word_count(text: str) -> int:
    """RETURNS (int): the number of whitespace-separated words of `text`."""
    return len(text.split())


def describe(values: Sequence[int]) -> Dict[str, float]:
    """Summary statistics of a list of lengths.

    values (Sequence[int]): the lengths.
    RETURNS (Dict[str, float]): n, min, mean, median, p95, max (zeros when empty).
    """
    if not len(values):
        return {"n": 0, "min": 0, "mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0}
    arr = np.asarray(values, dtype=float)
    return {
        "n": int(arr.size),
        "min": int(arr.min()),
        "mean": round(float(arr.mean()), 2),
        "median": float(np.median(arr)),
        "p95": round(float(np.percentile(arr, 95)), 2),
        "max": int(arr.max()),
    }


def split_stats(split: Split, tokens: Optional[List[int]] = None, window: int = 0) -> Dict[str, Any]:
    """Label counts and length statistics of one split.

    split (Split): the split.
    tokens (Optional[List[int]]): backbone tokens of each example, if counted.
    window (int): the backbone's window in tokens (0 = not known).
    RETURNS (Dict[str, Any]): n, label_counts, words, words_by_label and,
        with tokens, tokens, window, over_window and over_window_share.
    """
    words = [word_count(eg.text) for eg in split.examples]
    by_label = {label: [w for w, eg in zip(words, split.examples) if eg.label == label] for label in LABELS}
    stats: Dict[str, Any] = {
        "n": len(split.examples),
        "label_counts": split.label_counts(),
        "words": describe(words),
        "words_by_label": {label: describe(values) for label, values in by_label.items()},
    }
    if tokens is not None:
        over = int(sum(t > window for t in tokens)) if window else 0
        stats.update(
            {
                "tokens": describe(tokens),
                "window": window,
                "over_window": over,
                "over_window_share": over / len(tokens) if tokens else 0.0,
            }
        )
    return stats


def explore(
    splits: Dict[str, Split],
    output_dir: Path,
    tokenizer: Any = None,
    window: int = 0,
    backbone: str = "",
) -> Dict[str, Any]:
    """Write the exploration figures and length statistics of every split.

    splits (Dict[str, Split]): the splits by name.
    output_dir (Path): the reports folder; files go to `output_dir/explore/`:
        class_distribution_{split}.png, words_per_text_{split}.png and
        length_stats.json.
    tokenizer (Any): the backbone's tokenizer, to count tokens (None skips it).
    window (int): the backbone's window in tokens.
    backbone (str): the backbone's name, recorded in the statistics.
    RETURNS (Dict[str, Any]): the statistics written to length_stats.json,
        plus "figures" (the PNG paths).
    """
    from .features import token_counts

    folder = Path(output_dir) / EXPLORE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stats: Dict[str, Any] = {"backbone": backbone, "window": window, "splits": {}}
    figures: List[str] = []
    for name, split in splits.items():
        tokens = token_counts([eg.text for eg in split.examples], tokenizer) if tokenizer is not None else None
        stats["splits"][name] = split_stats(split, tokens, window)
        n = len(split.examples)
        figures.append(
            str(
                plots.class_distribution(
                    split.label_counts(),
                    folder / f"class_distribution_{name}.png",
                    f"Class distribution: {name} split ({n:,} texts)",
                )
            )
        )
        lengths = {label: [word_count(eg.text) for eg in split.examples if eg.label == label] for label in LABELS}
        figures.append(
            str(
                plots.length_boxplot(
                    lengths, folder / f"words_per_text_{name}.png", f"Words per text by emotion: {name} split"
                )
            )
        )
    srsly.write_json(folder / "length_stats.json", stats)
    return {**stats, "figures": figures}
