"""Annotate a file of texts with emotions: streaming, resumable, exactly once.

Used by ``spacy-emotion annotate INPUT OUTPUT``. Input formats (by suffix):

* ``.txt``: one text a line; every line is a row, an empty line too (it gets
  the uniform distribution and no emotion).
* ``.jsonl``: one JSON object a line; the text is in ``text_key`` (default
  ``text``), an optional id in ``id_key`` (default ``id``). Blank lines are
  skipped (counted, not rows).
* ``.csv``: a header row, then one record a row (quoted fields may span
  lines); text in column ``text_key``, optional id in column ``id_key``.
  Blank lines are skipped (counted). A quote left open (never closed, or
  closed only by a stray quote on a later line) would make the lines up to
  that point one text: its row is an error instead, and the lines after it
  are read as rows of their own.

Output formats (by suffix): ``.jsonl`` (``{"line", ["id"], "emotion",
"score", "cats", ["sentences"]}`` per row) or ``.csv`` (``line, [id],
emotion, score``, the six labels, [``sentences`` as JSON]). ``line`` is the
1-based input line where the row starts; ``id`` is there for .jsonl/.csv
inputs (null/empty when a row has none).

A row that can't be processed (not UTF-8, bad JSON, not an object, missing
field, a value that isn't a string) goes to the errors file (``.jsonl``:
``{"line", "id", "reason"}``) and not to the output. Every input row ends up
exactly once in the output or the errors file, each in input order.

Memory stays constant: the input is read one line at a time and written
``batch_size`` rows at a time.

Resuming: rows are processed in chunks of ``batch_size``. After a chunk's
complete lines are appended to the output and errors files and fsync'd, a
checkpoint (``OUTPUT.progress.json``, replaced atomically) records the input
byte offset and line reached and the byte sizes of both files. A restart with
the same settings truncates both files to the checkpoint's sizes (dropping a
half-written line or a chunk written after the last checkpoint), seeks the
input to the recorded offset and goes on. The checkpoint is written before
the output is created and removed when the run completes, so an output without
a checkpoint is a finished run: annotating again needs ``overwrite``.
"""

import contextlib
import csv
import io
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Generator, Iterator, List, Optional, Tuple

from spacy.language import Language

from ..labels import LABELS
from ..texts import invalid_text
from .classify import classify

INPUT_FORMATS = ("txt", "jsonl", "csv")
READABLE_FORMATS = INPUT_FORMATS + ("parquet",)  # RowReader's formats; parquet is for the Ray engine
OUTPUT_FORMATS = ("jsonl", "csv")
CHECKPOINT_VERSION = 1
_BOM = b"\xef\xbb\xbf"

csv.field_size_limit(2**31 - 1)  # a text may be long; rows are still read one at a time


class AnnotateError(Exception):
    """A problem with the whole job (arguments, header, checkpoint), not with one row."""


class OutputWriteError(Exception):
    """Writing the output, errors or checkpoint file failed mid-run (a full
    disk, a file-size limit, a storage error). The files are as the last
    checkpoint left them, or longer by lines a rerun drops: run again to resume."""


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn an OSError while writing `path` into an OutputWriteError that names it."""
    try:
        yield
    except OSError as err:
        raise OutputWriteError(f"Can't write {path}: {err.strerror or err}") from err


@dataclass
class Row:
    """One input row: a text to classify, or the reason it can't be."""

    line: int
    id: Any = None
    text: Optional[str] = None
    error: Optional[str] = None


@dataclass
class Job:
    """What to annotate and how. Everything but batch_size must stay the same to resume."""

    input: Path
    output: Path
    model: str
    threshold: float = 0.0
    text_key: str = "text"
    id_key: str = "id"
    sentences: bool = False
    batch_size: int = 64
    errors: Optional[Path] = None

    def __post_init__(self) -> None:
        self.input, self.output = Path(self.input), Path(self.output)
        self.errors = Path(self.errors) if self.errors else default_errors_path(self.output)

    @property
    def input_format(self) -> str:
        return _format(self.input, INPUT_FORMATS, "input")

    @property
    def output_format(self) -> str:
        return _format(self.output, OUTPUT_FORMATS, "output")

    @property
    def checkpoint(self) -> Path:
        return checkpoint_path(self.output)

    def fingerprint(self) -> Dict[str, Any]:
        """The settings and input identity a checkpoint must match to be resumed."""
        stat = self.input.stat()
        return {
            "input": str(self.input.resolve()),
            "input_size": stat.st_size,
            "input_mtime_ns": stat.st_mtime_ns,
            "output": str(self.output.resolve()),
            "errors": str(self.errors.resolve()),
            "model": str(Path(self.model).resolve()) if Path(self.model).exists() else str(self.model),
            "threshold": float(self.threshold),
            "text_key": self.text_key,
            "id_key": self.id_key,
            "sentences": bool(self.sentences),
        }


@dataclass
class Progress:
    """Where a run stands; the checkpoint file holds one (plus the fingerprint)."""

    offset: int = 0  # input bytes consumed (always at a row boundary)
    line: int = 0  # input lines consumed
    rows: int = 0  # rows consumed: annotated + failed
    annotated: int = 0
    failed: int = 0
    blank: int = 0  # blank lines skipped (.jsonl, .csv)
    output_bytes: int = 0
    errors_bytes: int = 0


@dataclass
class Summary:
    """The outcome of a finished run."""

    rows: int
    annotated: int
    failed: int
    blank: int
    resumed_at_row: int
    output: Path
    errors: Optional[Path] = None  # None when no row failed


def default_errors_path(output: Path) -> Path:
    """``out.jsonl`` -> ``out.errors.jsonl`` (also for a .csv output)."""
    return Path(output).with_suffix(".errors.jsonl")


def checkpoint_path(output: Path) -> Path:
    """``out.jsonl`` -> ``out.jsonl.progress.json``."""
    output = Path(output)
    return output.with_name(output.name + ".progress.json")


def _format(path: Path, allowed: tuple, what: str) -> str:
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in allowed:
        raise AnnotateError(
            f"Unsupported {what} file {path}: the name must end in " + ", ".join("." + f for f in allowed)
        )
    return fmt


# ---- reading ---------------------------------------------------------------


class RowReader:
    """Stream the rows of an input file from a byte offset, one line at a time.

    After each row is yielded, `offset` and `line` tell where the next row
    starts: a checkpoint stores them and a restart passes them back.

    A .parquet file (read one record batch at a time) has one row per record:
    its `line` is the 1-based record number, and `offset` counts records.
    """

    def __init__(self, path: Path, fmt: str, text_key: str = "text", id_key: str = "id") -> None:
        self.path, self.fmt, self.text_key, self.id_key = Path(path), fmt, text_key, id_key
        self.offset = 0
        self.line = 0
        self.blank = 0
        self.header: Optional[List[str]] = None
        if fmt == "csv":
            self.header = self.read_header()
        elif fmt == "parquet":
            self.header = self.parquet_columns()

    def _lines(self, fh: BinaryIO) -> Iterator[bytes]:
        """The file's lines from the current offset, counting bytes and lines."""
        for raw in fh:
            if self.offset == 0 and raw.startswith(_BOM):
                self.offset += len(_BOM)
                raw = raw[len(_BOM) :]
            self.offset += len(raw)
            self.line += 1
            yield raw

    def read_header(self) -> List[str]:
        """The CSV header (its first record); checks the text column is there."""
        with self.path.open("rb") as fh:
            self.offset, self.line = 0, 0
            reader = csv.reader(raw.decode("utf-8", "surrogateescape") for raw in self._lines(fh))
            try:
                header = next(reader, None)
            except csv.Error as err:
                raise AnnotateError(f"{self.path}: the header row is not valid CSV ({err})") from err
            end = (self.offset, self.line)
        if not header:
            raise AnnotateError(f"{self.path} is empty: a .csv input needs a header row")
        header = [name.strip() for name in header]
        if self.text_key not in header:
            columns = ", ".join(header).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            raise AnnotateError(
                f"{self.path} has no column '{self.text_key}' (columns: {columns}); choose one with --text-column"
            )
        self.offset, self.line = end
        return header

    def parquet_columns(self) -> List[str]:
        """The column names of a .parquet file; checks the text column is there."""
        import pyarrow.parquet as pq

        try:
            names = pq.ParquetFile(self.path).schema_arrow.names
        except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ... for a file that isn't Parquet
            raise AnnotateError(f"{self.path} is not a readable Parquet file: {err}") from err
        if self.text_key not in names:
            raise AnnotateError(
                f"{self.path} has no column '{self.text_key}' (columns: {', '.join(names)}); choose one with "
                "--text-column"
            )
        return names

    def _parquet_rows(self) -> Iterator[Row]:
        """The records of a .parquet file after the first `offset`, one batch in memory at a time."""
        import pyarrow.parquet as pq

        assert self.header is not None
        columns = [self.text_key] + ([self.id_key] if self.id_key in self.header else [])
        seen = 0
        for batch in pq.ParquetFile(self.path).iter_batches(columns=columns, batch_size=4096):
            if seen + batch.num_rows <= self.offset:
                seen += batch.num_rows
                continue
            texts = batch.column(self.text_key).to_pylist()
            ids = batch.column(self.id_key).to_pylist() if len(columns) > 1 else [None] * len(texts)
            for text, row_id in zip(texts, ids):
                seen += 1
                if seen <= self.offset:
                    continue
                self.offset = self.line = seen
                error = text_error(text, self.text_key, "column")
                yield Row(line=seen, id=row_id, text=None if error else text, error=error)

    def rows(self, offset: Optional[int] = None, line: Optional[int] = None) -> Iterator[Row]:
        """Yield rows from `offset` (default: the start; after the header for CSV)."""
        if offset is not None:
            self.offset, self.line = offset, line or 0
        if self.fmt == "parquet":
            yield from self._parquet_rows()
            return
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            lines = self._lines(fh)
            if self.fmt == "csv":
                while (yield from self._csv_rows(lines)):  # a quote never closed: read again after its line
                    fh.seek(self.offset)
                    lines = self._lines(fh)
                return
            for raw in lines:
                if self.fmt == "txt":
                    yield _txt_row(raw, self.line)
                elif raw.strip():
                    yield _jsonl_row(raw, self.line, self.text_key, self.id_key)
                else:
                    self.blank += 1

    def _csv_rows(self, lines: Iterator[bytes]) -> Generator[Row, None, bool]:
        """The CSV records of `lines`. A quoted field left open would swallow
        the lines after it into one text (see `_bad_quotes`): that record's
        first line becomes an error row instead, and the generator returns True
        with `offset`/`line` just after that line, for `rows` to read on from there.
        RETURNS (bool): whether to read again from `offset` (False: the end)."""
        assert self.header is not None
        text_col = self.header.index(self.text_key)
        id_col = self.header.index(self.id_key) if self.id_key in self.header else None
        taken: List[Tuple[int, str]] = []  # the current record's lines: (offset after it, text)

        def decoded() -> Iterator[str]:
            for raw in lines:
                taken.append((self.offset, raw.decode("utf-8", "surrogateescape")))
                yield taken[-1][1]

        reader = csv.reader(decoded())
        start = self.line + 1

        def skip_first_line(reason: str) -> Row:
            """An error row for the record's first line; `offset`/`line` move to just after it."""
            self.offset, self.line = taken[0][0], start
            first: List[str] = []
            # the id as far as the line can be read; a stray carriage return left out for that only
            for line in (taken[0][1], taken[0][1].replace("\r", "")):
                try:
                    first = next(csv.reader([line]), [])
                    break
                except csv.Error:
                    continue
            row_id = first[id_col] if id_col is not None and id_col < len(first) else None
            return Row(line=start, id=row_id, error=reason)

        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as err:  # a carriage return in an unquoted field: csv.reader gives up on the file
                what = "a carriage return (\\r) outside quotes" if "new-line" in str(err) else str(err)
                yield skip_first_line(f"not valid CSV on line {self.line}: {what}")
                return True
            if _bad_quotes([text for _, text in taken]):
                yield skip_first_line(
                    f"a quoted field opened on line {start} is left open "
                    "(the lines after it are read as rows of their own)"
                )
                return True
            taken.clear()
            if not record:  # a blank line
                self.blank += 1
            else:
                row = Row(line=start, id=record[id_col] if id_col is not None and id_col < len(record) else None)
                if text_col >= len(record):
                    row.error = (
                        f"missing column '{self.text_key}' (the row has {len(record)} of {len(self.header)} fields)"
                    )
                else:
                    row.text = record[text_col]
                    row.error = invalid_text(row.text)
                    if row.error:
                        row.text = None
                yield row
            start = self.line + 1
        return False


def _bad_quotes(lines: List[str]) -> bool:
    """Whether a CSV record's quotes went wrong in a way that makes it swallow
    lines: a quoted field never closed (csv.reader then returns the rest of the
    file as that field), or one closed by a later line's stray quote. A record
    of several lines that the strict parser rejects is one of those; so is a
    last line whose quote is still open. A one-line record with a stray quote
    inside a field ('a"b', '"a"b') keeps csv.reader's reading."""
    if len(lines) == 1 and '"' not in lines[0]:
        return False
    try:
        for _ in csv.reader(io.StringIO("".join(lines), newline=""), strict=True):
            pass
    except csv.Error as err:
        return len(lines) > 1 or "unexpected end of data" in str(err)
    return False


def _strip_newline(raw: bytes) -> bytes:
    if raw.endswith(b"\r\n"):
        return raw[:-2]
    return raw[:-1] if raw.endswith(b"\n") else raw


def _txt_row(raw: bytes, line: int) -> Row:
    try:
        return Row(line=line, text=_strip_newline(raw).decode("utf-8"))
    except UnicodeDecodeError as err:
        return Row(line=line, error=f"not valid UTF-8 text (byte {err.start})")


def _jsonl_row(raw: bytes, line: int, text_key: str, id_key: str) -> Row:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        return Row(line=line, error=f"not valid UTF-8 text (byte {err.start})")
    except json.JSONDecodeError as err:
        return Row(line=line, error=f"invalid JSON: {err.msg} (column {err.colno})")
    except (ValueError, RecursionError) as err:  # a number of over 4,300 digits; arrays nested too deep
        return Row(line=line, error=f"JSON that Python can't read: {str(err)[:120]}")
    if not isinstance(obj, dict):
        return Row(line=line, error=f"not a JSON object (got {type(obj).__name__})")
    row = Row(line=line, id=obj.get(id_key))
    if text_key not in obj:
        row.error = f"missing field '{text_key}'"
    else:
        row.error = text_error(obj[text_key], text_key)
        row.text = None if row.error else obj[text_key]
    return row


def text_error(value: Any, key: str = "text", what: str = "field") -> Optional[str]:
    """Why a row's text value can't be classified (not a string, or not valid
    UTF-8), or None: the one check of a value for every reader and engine.

    key (str): the field or column the value is from, for the message.
    what (str): "field" or "column".
    """
    if not isinstance(value, str):
        return f"{what} '{key}' is not text (got {type(value).__name__})"
    return invalid_text(value)


# ---- writing ---------------------------------------------------------------


def output_columns(job: Job) -> List[str]:
    """The CSV output header."""
    columns = ["line"] + (["id"] if job.input_format != "txt" else []) + ["emotion", "score", *LABELS]
    return columns + (["sentences"] if job.sentences else [])


def _output_record(job: Job, row: Row, result: Dict[str, Any]) -> Dict[str, Any]:
    record: Dict[str, Any] = {"line": row.line}
    if job.input_format != "txt":
        record["id"] = row.id
    record.update(result)
    return record


def _encode_jsonl(records: List[Dict[str, Any]]) -> bytes:
    """JSON lines in UTF-8. An id that UTF-8 can't hold (undecodable bytes of a
    .csv input, a lone surrogate escape in a .jsonl one) keeps JSON's \\u escapes."""
    return b"".join(_json_line(r) for r in records)


def _json_line(record: Dict[str, Any]) -> bytes:
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf8")
    except UnicodeEncodeError:
        return (json.dumps(record) + "\n").encode("utf8")


def _encode_csv(rows: List[List[Any]]) -> bytes:
    """CSV rows in UTF-8; an id that UTF-8 can't hold is written with backslash escapes (\\udc80)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    return buf.getvalue().encode("utf8", "backslashreplace")


def flat_result(result: Dict[str, Any], sentences: bool = False) -> Dict[str, Any]:
    """A `doc_result` as one flat record, the layout of table outputs: emotion,
    score, one column per label (in LABELS order) and, with `sentences`, the
    sentences as JSON text."""
    record = {"emotion": result["emotion"], "score": result["score"]}
    record.update((label, result["cats"][label]) for label in LABELS)
    if sentences:
        record["sentences"] = json.dumps(result["sentences"], ensure_ascii=False)
    return record


def _csv_values(job: Job, record: Dict[str, Any]) -> List[Any]:
    values = [record["line"]] + ([record["id"]] if job.input_format != "txt" else [])
    flat = flat_result(record, job.sentences)
    values += ["" if flat[key] is None else flat[key] for key in ("emotion", "score")]
    values += list(flat.values())[2:]
    return values


def _write_durably(fh: BinaryIO, data: bytes) -> int:
    """Append `data` to an unbuffered file and fsync it; RETURNS the file's size afterwards.
    RAISES (OutputWriteError): the write or fsync failed."""
    with _writing(Path(fh.name)):
        view = memoryview(data)
        while view:
            view = view[fh.write(view) or 0 :]  # a raw write may take part of the data
        if data:
            os.fsync(fh.fileno())
        return fh.tell()


def _open_errors(job: Job) -> BinaryIO:
    with _writing(job.errors):
        return job.errors.open("ab", buffering=0)


def _save_checkpoint(job: Job, progress: Progress) -> None:
    """Replace the checkpoint atomically (write, fsync, rename); a failure leaves the previous one."""
    tmp = job.checkpoint.with_name(job.checkpoint.name + ".tmp")
    data = {"version": CHECKPOINT_VERSION, "fingerprint": job.fingerprint(), "progress": asdict(progress)}
    with _writing(job.checkpoint):
        with tmp.open("w", encoding="utf8") as fh:
            json.dump(data, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, job.checkpoint)
    fsync_dir(job.checkpoint.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename or new file in `folder` durable (where directories can be fsync'd)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:  # e.g. Windows: directories can't be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- the job ---------------------------------------------------------------


def check_job(job: Job, overwrite: bool = False) -> Optional[Progress]:
    """Validate a job without changing any file.

    RETURNS (Optional[Progress]): the checkpoint to resume from, or None for
        a fresh start.
    RAISES (AnnotateError): bad formats, a missing input or CSV column, an
        output left by a finished run (without `overwrite`), or a checkpoint
        for other settings or another version of the input.
    """
    if not job.input.is_file():
        raise AnnotateError(f"Input file not found: {job.input}")
    _ = (job.input_format, job.output_format)  # validates both suffixes
    if job.batch_size < 1:
        raise AnnotateError(f"--batch-size must be at least 1, got {job.batch_size}")
    paths = {job.input.resolve(), job.output.resolve(), job.errors.resolve(), job.checkpoint.resolve()}
    if len(paths) < 4:
        raise AnnotateError("The input, output, errors and checkpoint files must all be different files")
    for path in (job.output, job.errors):
        _check_writable(path)
    if job.input_format == "csv":
        RowReader(job.input, "csv", job.text_key, job.id_key)  # reads and checks the header
    if overwrite:
        return None
    if job.checkpoint.exists():
        try:
            saved = json.loads(job.checkpoint.read_text(encoding="utf8"))
            progress = Progress(**saved["progress"])
        except (ValueError, KeyError, TypeError) as err:
            raise AnnotateError(
                f"Unreadable checkpoint {job.checkpoint} ({err}); pass --overwrite to start again"
            ) from err
        expected = job.fingerprint()
        changed = [k for k in expected if saved.get("fingerprint", {}).get(k) != expected[k]]
        if saved.get("version") != CHECKPOINT_VERSION or changed:
            raise AnnotateError(
                f"{job.checkpoint} is from a run with a different {', '.join(changed) or 'version'}; "
                "rerun with the same input and settings to resume, or pass --overwrite to start again"
            )
        for path, size in ((job.output, progress.output_bytes), (job.errors, progress.errors_bytes)):
            actual = path.stat().st_size if path.exists() else 0
            if actual < size:
                raise AnnotateError(
                    f"{path} is shorter ({actual} bytes) than its checkpoint says ({size}): it was changed since; "
                    "pass --overwrite to start again"
                )
        return progress
    for path in (job.output, job.errors):
        if path.exists():
            raise AnnotateError(
                f"{path} exists and there is no checkpoint to resume from (a finished run?); pass --overwrite "
                "to annotate again"
            )
    return None


def _check_writable(path: Path) -> None:
    """Fail early when `path` can't be written: it is a folder, or its folder is
    under a file or in a folder this process may not write to (what `annotate`
    would only find after loading the model)."""
    if path.is_dir():
        raise AnnotateError(f"{path} is a folder: the output and errors must be files")
    folder = path.parent
    while not folder.exists():  # the first folder that exists is where the missing ones would be made
        folder = folder.parent
    if not folder.is_dir():
        raise AnnotateError(f"Can't create the folder of {path}: {folder} is a file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise AnnotateError(f"Can't write {path}: no permission to write in {folder}")


def annotate(
    job: Job,
    nlp: Language,
    *,
    overwrite: bool = False,
    progress_bar: bool = True,
    on_chunk: Optional[Callable[[Progress], None]] = None,
) -> Summary:
    """Run (or resume) a job: annotate every row of job.input into job.output.

    nlp (Language): a pipeline from `inference.build_pipeline` (job.model and
        job.threshold describe it for the checkpoint).
    overwrite (bool): discard an existing output, errors file and checkpoint.
    progress_bar (bool): show a tqdm bar (bytes read, rate, ETA, rows) on a TTY.
    on_chunk (Optional[Callable]): called with the progress after each chunk
        is durably written and checkpointed.
    RETURNS (Summary): counts and paths; failed rows are in job.errors.
    """
    from tqdm import tqdm

    resume = check_job(job, overwrite)
    if resume is None:
        for path in (job.output, job.errors, job.checkpoint):
            if path.exists():
                path.unlink()
    state = resume or Progress()
    resumed_at = state.rows
    for folder in {job.output.parent, job.errors.parent, job.checkpoint.parent}:
        with _writing(folder):
            folder.mkdir(parents=True, exist_ok=True)
    _save_checkpoint(job, state)  # before the output exists: an output without checkpoint is a finished run
    for path, size in ((job.output, state.output_bytes), (job.errors, state.errors_bytes)):
        if path.exists():
            with _writing(path), path.open("r+b") as fh:  # drop a torn line or a chunk written after the checkpoint
                fh.truncate(size)
                os.fsync(fh.fileno())
    reader = RowReader(job.input, job.input_format, job.text_key, job.id_key)
    total = job.input.stat().st_size
    started = time.monotonic()
    with _writing(job.output):
        out = job.output.open("ab", buffering=0)  # unbuffered: a failed write is reported by the write itself
    errors: Optional[BinaryIO] = None
    try:
        if job.errors.exists():
            errors = _open_errors(job)
        if job.output_format == "csv" and state.output_bytes == 0:
            state.output_bytes = _write_durably(out, _encode_csv([output_columns(job)]))
            _save_checkpoint(job, state)
        bar = tqdm(
            total=total,
            initial=state.offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc="annotate",
            dynamic_ncols=True,
            disable=None if progress_bar else True,
        )
        with bar:
            _postfix(bar, state, resumed_at, started)
            chunk: List[Row] = []
            rows = reader.rows(state.offset if state.offset else None, state.line)
            for row in rows:
                chunk.append(row)
                if len(chunk) >= job.batch_size:
                    errors = _process_chunk(job, nlp, chunk, reader, state, out, errors)
                    chunk = []
                    bar.update(state.offset - bar.n)
                    _postfix(bar, state, resumed_at, started)
                    if on_chunk is not None:
                        on_chunk(state)
            # the reader has reached the end: the last chunk ends there (blank lines included)
            errors = _process_chunk(job, nlp, chunk, reader, state, out, errors)
            bar.update(state.offset - bar.n)
            _postfix(bar, state, resumed_at, started)
            if on_chunk is not None and chunk:
                on_chunk(state)
    finally:
        out.close()
        if errors is not None:
            errors.close()
    if state.failed == 0 and job.errors.exists():
        job.errors.unlink()  # an empty errors file from a resumed run
    job.checkpoint.unlink()
    fsync_dir(job.checkpoint.parent)
    return Summary(
        rows=state.rows,
        annotated=state.annotated,
        failed=state.failed,
        blank=state.blank,
        resumed_at_row=resumed_at,
        output=job.output,
        errors=job.errors if state.failed else None,
    )


def _postfix(bar: Any, state: Progress, resumed_at: int, started: float) -> None:
    """Rows done, their rate in this run, and failures, after the bar's bytes, rate and ETA."""
    rate = (state.rows - resumed_at) / max(time.monotonic() - started, 1e-9)
    bar.set_postfix_str(f"rows={state.rows:,} ({rate:,.0f}/s) failed={state.failed:,}")


def _process_chunk(
    job: Job,
    nlp: Language,
    chunk: List[Row],
    reader: RowReader,
    state: Progress,
    out: BinaryIO,
    errors: Optional[BinaryIO],
) -> Optional[BinaryIO]:
    """Classify a chunk, append its lines durably, then checkpoint. RETURNS the errors file handle."""
    ok = [row for row in chunk if row.error is None]
    results = classify(nlp, [row.text for row in ok], batch_size=job.batch_size, sentences=job.sentences)
    records = [_output_record(job, row, result) for row, result in zip(ok, results)]
    if job.output_format == "jsonl":
        data = _encode_jsonl(records)
    else:
        data = _encode_csv([_csv_values(job, record) for record in records])
    failed = [{"line": row.line, "id": row.id, "reason": row.error} for row in chunk if row.error is not None]
    state.output_bytes = _write_durably(out, data)
    if failed:
        if errors is None:
            errors = _open_errors(job)
        state.errors_bytes = _write_durably(errors, _encode_jsonl(failed))
    state.offset, state.line = reader.offset, reader.line
    state.rows += len(chunk)
    state.annotated += len(ok)
    state.failed += len(failed)
    state.blank += reader.blank
    reader.blank = 0
    _save_checkpoint(job, state)
    return errors
