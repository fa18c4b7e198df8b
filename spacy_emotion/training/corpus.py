"""Turn emotion examples into spaCy DocBin corpora."""

from pathlib import Path
from typing import Dict, Iterable, Optional

import spacy
from spacy.tokens import DocBin
from wasabi import msg

from ..labels import LABELS
from .dataset import Example, Split, load_splits, sample

CORPUS_FILES = {"train": "train.spacy", "validation": "dev.spacy", "test": "test.spacy"}
"""The DocBin written for each split; validation becomes the dev corpus."""


def make_docbin(examples: Iterable[Example], lang: str = "en") -> DocBin:
    """Tokenize texts and set all six labels in `doc.cats`, the gold one at 1.0.

    examples (Iterable[Example]): the labelled texts.
    lang (str): the language of the blank tokenizer.
    RETURNS (DocBin): one doc per example, in order.
    """
    nlp = spacy.blank(lang)
    docbin = DocBin(store_user_data=False)
    for eg in examples:
        doc = nlp.make_doc(eg.text)
        doc.cats = {label: float(label == eg.label) for label in LABELS}
        docbin.add(doc)
    return docbin


def print_distribution(splits: Dict[str, Split]) -> None:
    """Print a table of label counts per split."""
    header = ["label"] + list(splits)
    rows = [[label] + [s.label_counts()[label] for s in splits.values()] for label in LABELS]
    rows.append(["total"] + [len(s.examples) for s in splits.values()])
    msg.table(rows, header=header, divider=True, aligns=["l"] + ["r"] * len(splits))


def load_data(
    source: str = "auto", fallback: Optional[Path] = None, skip_invalid: bool = False, limit: int = 0, seed: int = 0
) -> Dict[str, Split]:
    """The splits of `data.load_splits`, saying which source was used and which
    rows were skipped, sampled to `limit` examples each (0 = all, `seed`): what
    `convert` and the analysis commands read."""
    splits, used = load_splits(source, fallback, skip_invalid)
    msg.info(f"Data source: {used}")
    skipped = sum(len(s.skipped) for s in splits.values())
    if skipped:
        msg.warn(f"Skipped {skipped} invalid row(s):")
        for split in splits.values():
            for err in split.skipped[:10]:
                print(f"  {err}")
            if len(split.skipped) > 10:
                print(f"  … and {len(split.skipped) - 10} more in {split.source}")
    if limit:
        for split in splits.values():
            split.examples = sample(split.examples, limit, seed)
        msg.info(f"Limited to {limit} examples per split (seed {seed})")
    return splits


def convert(
    output_dir: Path,
    source: str = "auto",
    fallback: Optional[Path] = None,
    limit: int = 0,
    skip_invalid: bool = False,
    lang: str = "en",
    seed: int = 0,
) -> Dict[str, Path]:
    """Load the dataset and write train.spacy, dev.spacy and test.spacy.

    output_dir (Path): where the corpora go.
    source (str): "auto", "hub" or a local folder (see `data.load_splits`).
    fallback (Optional[Path]): local folder used by "auto" without the Hub.
    limit (int): keep a reproducible sample of this many examples per split
        (0 = all).
    skip_invalid (bool): skip and count bad rows instead of failing.
    RETURNS (Dict[str, Path]): the corpus file of each split.
    """
    splits = load_data(source, fallback, skip_invalid, limit, seed)
    print_distribution(splits)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, split in splits.items():
        if not split.examples:
            raise ValueError(f"No valid examples in the {name} split ({split.source})")
        path = output_dir / CORPUS_FILES[name]
        make_docbin(split.examples, lang).to_disk(path)
        paths[name] = path
        msg.good(f"Wrote {len(split.examples)} docs to {path}")
    return paths
