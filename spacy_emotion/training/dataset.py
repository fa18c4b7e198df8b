"""Read dair-ai/emotion from the Hugging Face Hub or a local folder.

A local folder holds one file per split (``train``, ``validation``, ``test``)
in one of these layouts:

* ``.txt``: the original release, one ``text;label`` line per example, the
  label as a name. The line is split on its last ``;``.
* ``.jsonl``: the Hub layout, ``{"text": ..., "label": N}`` with N the Hub's
  ClassLabel id (0 sadness … 5 surprise). A label name is accepted too.
* ``.csv`` and ``.parquet``: columns ``text`` and ``label`` as in ``.jsonl``.

Every bad row (unknown label, empty text, no separator, bad JSON, missing
field) raises :class:`DataError` naming the file and line, unless
``skip_invalid`` is set: then it is skipped and counted, never dropped
silently.
"""

import csv
import json
import os
import random
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlparse

from ..labels import LABEL_TO_ID, LABELS, normalize
from ..texts import invalid_text

SPLITS: Tuple[str, ...] = ("train", "validation", "test")
FORMATS: Tuple[str, ...] = (".txt", ".jsonl", ".csv", ".parquet")
HUB_DATASET = "dair-ai/emotion"


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub can be reached from this machine.

    Honours HF_HUB_OFFLINE / HF_DATASETS_OFFLINE / TRANSFORMERS_OFFLINE and
    HF_ENDPOINT. A quick TCP probe avoids the libraries' long retry loops on
    machines without a network.
    """
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


class DataError(ValueError):
    """A row of an input file that can't be turned into an example."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        super().__init__(f"{path}, line {line}: {reason}")


@dataclass
class Example:
    """One labelled text."""

    text: str
    label: str


@dataclass
class Split:
    """The examples of one split and what was skipped on the way."""

    name: str
    examples: List[Example]
    source: str
    skipped: List[DataError] = field(default_factory=list)

    def label_counts(self) -> Dict[str, int]:
        """RETURNS (Dict[str, int]): examples per label, in LABELS order."""
        counts = {label: 0 for label in LABELS}
        for eg in self.examples:
            counts[eg.label] += 1
        return counts


def parse_label(value: Any) -> str:
    """Turn a label id (int or digit string) or name into a label name.

    value (Any): the raw label.
    RETURNS (str): one of LABELS.
    RAISES (ValueError): when the value names no emotion.
    """
    if isinstance(value, bool):
        raise ValueError(f"label {value!r} is not an emotion")
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        idx = int(value)
        if 0 <= idx < len(LABELS):
            return LABELS[idx]
        raise ValueError(f"label id {value!r} is outside 0-{len(LABELS) - 1}")
    if isinstance(value, str):
        name = normalize(value)
        if name.isdigit():
            return parse_label(int(name))
        if name in LABEL_TO_ID:
            return name
    raise ValueError(f"unknown label {value!r} (expected one of {', '.join(LABELS)})")


def _check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("empty text")
    error = invalid_text(text)  # bytes that are not UTF-8 (read as surrogates)
    if error:
        raise ValueError(error)
    return text


def _raw_rows(path: Path) -> Iterator[Tuple[int, Any]]:
    """Yield (line number, raw record) pairs; the record is parsed by _example."""
    suffix = path.suffix.lower()
    if suffix == ".txt":
        with path.open(encoding="utf-8-sig", errors="surrogateescape") as f:
            for i, line in enumerate(f, start=1):
                yield i, line.rstrip("\r\n")
    elif suffix == ".jsonl":
        with path.open(encoding="utf-8-sig", errors="surrogateescape") as f:
            for i, line in enumerate(f, start=1):
                yield i, ("json", line)
    elif suffix == ".csv":
        with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"text", "label"} - set(reader.fieldnames or [])
            if missing:
                raise DataError(path, 1, f"missing column(s): {', '.join(sorted(missing))}")
            for row in reader:
                # line_num counts physical lines, so it stays right for quoted newlines
                yield reader.line_num, row
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        missing = {"text", "label"} - set(table.column_names)
        if missing:
            raise DataError(path, 0, f"missing column(s): {', '.join(sorted(missing))}")
        for i, row in enumerate(table.select(["text", "label"]).to_pylist(), start=1):
            yield i, row
    else:
        raise ValueError(f"{path}: unsupported format (expected one of {', '.join(FORMATS)})")


def _example(raw: Any) -> Example:
    if isinstance(raw, str):  # txt line
        if not raw.strip():
            raise ValueError("empty line")
        if ";" not in raw:
            raise ValueError("no ';' separating text and label")
        text, label = raw.rsplit(";", 1)
        return Example(_check_text(text), parse_label(label))
    if isinstance(raw, tuple):  # jsonl line
        try:
            raw = json.loads(raw[1])
        except json.JSONDecodeError as err:
            raise ValueError(f"bad JSON ({err.msg})") from None
        if not isinstance(raw, dict):
            raise ValueError("a JSON line must be an object")
    for key in ("text", "label"):
        if key not in raw or raw[key] is None:
            raise ValueError(f"missing field '{key}'")
    return Example(_check_text(raw["text"]), parse_label(raw["label"]))


def read_file(path: Path, skip_invalid: bool = False, name: Optional[str] = None) -> Split:
    """Read one split file.

    path (Path): a .txt, .jsonl, .csv or .parquet file.
    skip_invalid (bool): skip and count bad rows instead of raising.
    name (Optional[str]): the split's name; defaults to the file's stem.
    RETURNS (Split): the examples, in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    split = Split(name or path.stem, [], str(path))
    for line, raw in _raw_rows(path):
        try:
            split.examples.append(_example(raw))
        except ValueError as err:
            error = DataError(path, line, str(err))
            if not skip_invalid:
                raise error from None
            split.skipped.append(error)
    return split


def find_split_file(folder: Path, split: str) -> Path:
    """Find the file of a split in a local folder.

    folder (Path): the folder.
    split (str): one of SPLITS.
    RETURNS (Path): the file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Data folder not found: {folder}")
    for suffix in FORMATS:
        path = folder / f"{split}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"No {split} file in {folder}: expected {split}" + "{" + ",".join(FORMATS) + "}")


def read_folder(folder: Path, skip_invalid: bool = False) -> Dict[str, Split]:
    """Read train, validation and test from a local folder.

    RETURNS (Dict[str, Split]): the splits by name.
    """
    return {s: read_file(find_split_file(folder, s), skip_invalid, s) for s in SPLITS}


def read_hub(name: str = HUB_DATASET, skip_invalid: bool = False) -> Dict[str, Split]:
    """Load the dataset from the Hugging Face Hub with `datasets`.

    name (str): the Hub dataset id.
    RETURNS (Dict[str, Split]): the splits by name.
    """
    try:
        from datasets import load_dataset
    except ImportError:
        raise RuntimeError('Reading the Hub needs the datasets package: pip install "spacy-emotion[train]"') from None
    dataset = load_dataset(name)
    splits = {}
    for split in SPLITS:
        result = Split(split, [], f"hub:{name}/{split}")
        for i, row in enumerate(dataset[split], start=1):
            try:
                result.examples.append(_example(row))
            except ValueError as err:
                error = DataError(Path(result.source), i, str(err))
                if not skip_invalid:
                    raise error from None
                result.skipped.append(error)
        splits[split] = result
    return splits


def load_splits(
    source: str = "auto",
    fallback: Optional[Path] = None,
    skip_invalid: bool = False,
) -> Tuple[Dict[str, Split], str]:
    """Load all splits from the Hub or a local folder.

    source (str): "hub" (the Hub only), "auto" (the Hub, else `fallback`),
        or a local folder.
    fallback (Optional[Path]): the local folder "auto" uses when the Hub
        can't be reached.
    skip_invalid (bool): skip and count bad rows instead of raising.
    RETURNS (Tuple[Dict[str, Split], str]): the splits and a sentence saying
        which source was used.
    """
    if source not in ("auto", "hub"):
        return read_folder(Path(source), skip_invalid), f"local folder {source}"
    if source == "auto" and fallback is not None and not hub_reachable():
        splits = read_folder(Path(fallback), skip_invalid)
        return splits, f"local folder {fallback} (the Hugging Face Hub is unreachable)"
    try:
        return read_hub(skip_invalid=skip_invalid), f"Hugging Face Hub ({HUB_DATASET})"
    except DataError:
        raise
    except Exception as err:  # Hub error after a successful probe
        if source == "hub" or fallback is None:
            raise RuntimeError(f"Could not load {HUB_DATASET} from the Hub: {err}") from err
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        splits = read_folder(Path(fallback), skip_invalid)
        return splits, f"local folder {fallback} (loading from the Hub failed: {reason})"


def sample(examples: List[Example], limit: int, seed: int = 0) -> List[Example]:
    """A reproducible random subset of `limit` examples, in original order.

    limit (int): how many to keep; 0 keeps all.
    """
    if limit <= 0 or limit >= len(examples):
        return list(examples)
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]
