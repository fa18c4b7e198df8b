"""Annotate files, or a Ray Dataset, with emotions on a Ray cluster (Ray Data).

Used by ``spacy-emotion annotate INPUT OUTPUT --engine ray``, and by
:func:`annotate_dataset` for a Ray Dataset a program already has.

The model runs in a pool of Ray actors (``workers``); each builds the pipeline
once with `classify.build_pipeline` and classifies batches with
`classify.classify`, the code behind the component, the single-process
`annotate` and the REST API. Rows are read and checked on the driver by
`annotate_files.RowReader`, the reader of the single-process engine, so a bad
row gets the same reason with either engine.

How a file job runs, and why every row ends up exactly once in the output or
the errors:

* INPUT is a file, a folder (searched recursively; names starting with "." or
  "_" are left out, as Ray's readers do) or a glob of .txt, .jsonl, .csv and
  .parquet files, read in sorted order. Every row gets a place: shard
  ``row_number // shard_rows`` and its position in it. The same input and
  settings give the same shards on every run.
* A shard's rows that can't be classified are written to
  ``OUTPUT/_errors/part-NNNNN.jsonl`` on the driver; its other rows go through
  the actors. When all of a shard's rows are back, the driver writes
  ``OUTPUT/part-NNNNN.<format>`` (rows in input order), to a hidden temporary
  file first, renamed into place once complete. A shard's output file is
  therefore either absent or complete, and its presence is what marks the
  shard done. The errors file is written before it, so a done shard's errors
  are on disk too.
* Within one run, the driver counts each shard's rows by their position and
  drops a second copy of a row should one come back (a retried task), so a
  shard is written once, with each row once.
* A worker that dies (kill -9, out of memory, a lost node) is restarted by Ray
  and its unfinished batches are run again (actor ``max_restarts=-1``,
  ``max_task_retries=-1``); the results of a batch only count once it finishes.
* If the driver dies, the shards already written stay; running the same
  command again checks the job's settings (``OUTPUT/_job.json``), skips the
  done shards and annotates the rest. ``OUTPUT/_SUCCESS`` (a JSON summary) is
  written last: a folder with it holds a finished job.

Output rows have ``id`` (the input's id field or column as text; for a row
without one, ``SOURCE:LINE``), ``source`` (the input file, relative to the
input folder), ``line`` (as in the single-process output: the 1-based line
where the row starts, or the record number in a .parquet file), ``emotion``,
``score``, the six probabilities under their label names (the single-process
CSV layout) and, with ``sentences``, ``sentences`` as JSON text. Error rows
have ``id``, ``source``, ``line`` and ``reason``.
"""

import glob
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

from ..labels import LABELS
from .annotate_files import READABLE_FORMATS, AnnotateError, Row, RowReader, flat_result, fsync_dir, text_error
from .classify import build_pipeline, classify

if TYPE_CHECKING:
    import pyarrow
    import ray.data

OUTPUT_FORMATS = ("parquet", "jsonl")
JOB_FILE = "_job.json"
DONE_FILE = "_SUCCESS"
ERRORS_DIR = "_errors"
JOB_VERSION = 1
_SHARD = "_shard"  # columns that carry a row's place through the actors
_ROW = "_row"


@dataclass
class RayJob:
    """What to annotate and how. Everything but the Ray settings (address,
    workers, resources, batch sizes) must stay the same to resume."""

    input: str
    output: Path
    model: str
    threshold: float = 0.0
    text_field: str = "text"  # .jsonl
    text_column: str = "text"  # .csv, .parquet
    id_key: str = "id"
    sentences: bool = False
    batch_size: int = 64
    format: str = "parquet"
    shard_rows: int = 10_000
    rows_per_task: int = 1024
    workers: int = 0
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    speed: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        if Path(self.model).exists():  # the actors' working folder is not ours
            self.model = str(Path(self.model).resolve())

    def text_key(self, fmt: str) -> str:
        """The field or column holding the text in a file of format `fmt`."""
        return self.text_field if fmt == "jsonl" else self.text_column

    def fingerprint(self, files: List[Tuple[Path, str]]) -> Dict[str, Any]:
        """The settings and input identity a folder's job must match to be resumed."""
        return {
            "inputs": [
                {"path": str(path.resolve()), "size": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns}
                for path, _ in files
            ],
            "model": self.model,
            "threshold": float(self.threshold),
            "text_field": self.text_field,
            "text_column": self.text_column,
            "id_key": self.id_key,
            "sentences": bool(self.sentences),
            "format": self.format,
            "shard_rows": self.shard_rows,
        }


@dataclass
class RaySummary:
    """The outcome of a finished job."""

    rows: int
    annotated: int
    failed: int
    blank: int
    shards: int
    skipped_shards: int  # done by an earlier run
    output: Path
    seconds: float


# ---- the model on the actors -------------------------------------------------


class EmotionAnnotator:
    """A Ray Data map_batches callable: builds the pipeline once, then
    classifies batches of rows. Each output row has the batch's other columns,
    ``emotion``, ``score``, the six probabilities, ``error`` (why the text
    could not be classified, else null; its other results are then null) and,
    with `sentences`, ``sentences`` as JSON text."""

    def __init__(
        self,
        model: str,
        text_column: str = "text",
        threshold: float = 0.0,
        sentences: bool = False,
        batch_size: int = 64,
        use_gpu: bool = False,
        speed: Optional[Dict[str, Any]] = None,
        keep_text: bool = True,
        threads: int = 0,
    ) -> None:
        from .classify import set_cpu_threads

        set_cpu_threads(threads)
        self.nlp = build_pipeline(model, threshold=threshold, gpu_id=0 if use_gpu else -1, speed=speed)
        self.text_column, self.sentences, self.batch_size = text_column, sentences, batch_size
        self.keep_text = keep_text

    def __call__(self, batch: "pyarrow.Table") -> "pyarrow.Table":
        import pyarrow as pa

        values = batch.column(self.text_column).to_pylist()
        errors = [text_error(value, self.text_column, "column") for value in values]
        ok = [value for value, error in zip(values, errors) if error is None]
        results = iter(classify(self.nlp, ok, batch_size=self.batch_size, sentences=self.sentences))
        empty = dict.fromkeys(result_schema(self.sentences).names)
        records = [flat_result(next(results), self.sentences) if error is None else empty for error in errors]
        schema = result_schema(self.sentences)
        out = batch if self.keep_text else batch.select([c for c in batch.column_names if c != self.text_column])
        for name in schema.names:
            column = pa.array([record[name] for record in records], type=schema.field(name).type)
            out = _set_column(out, name, column)
        return _set_column(out, "error", pa.array(errors, type=pa.string()))


def result_schema(sentences: bool = False) -> "pyarrow.Schema":
    """The columns the model adds: emotion, score, the labels, [sentences]."""
    import pyarrow as pa

    fields = [pa.field("emotion", pa.string()), pa.field("score", pa.float64())]
    fields += [pa.field(label, pa.float64()) for label in LABELS]
    return pa.schema(fields + ([pa.field("sentences", pa.string())] if sentences else []))


def _set_column(table: "pyarrow.Table", name: str, column: Any) -> "pyarrow.Table":
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, column)
    return table.append_column(name, column)


def annotate_dataset(
    ds: "ray.data.Dataset",
    model: str = "en_emotion_trf",
    *,
    text_column: str = "text",
    threshold: float = 0.0,
    sentences: bool = False,
    batch_size: int = 64,
    rows_per_task: int = 1024,
    workers: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    speed: Optional[Dict[str, Any]] = None,
    keep_text: bool = True,
) -> "ray.data.Dataset":
    """Add emotions to a Ray Dataset (lazily, as Ray Data does).

    ds (ray.data.Dataset): rows with a text column.
    model (str): package name or directory of the emotion model; every node
        must be able to load it (an installed package or a shared folder).
    text_column (str): the column holding the text.
    batch_size (int): texts per model call on a worker.
    rows_per_task (int): rows per Ray task (the unit Ray retries).
    workers (int): actors, each with its own copy of the model.
    cpus_per_worker (float): CPUs Ray reserves for an actor; its torch threads.
    gpus_per_worker (float): GPUs per actor (fractions share a GPU); 0: the CPU.
    speed (Optional[Dict[str, Any]]): component speed settings (runtime, quantize).
    keep_text (bool): keep the text column in the output.
    RETURNS (ray.data.Dataset): the rows with ``emotion``, ``score``, the six
        probabilities, ``error`` (null, or why the row's text could not be
        classified: not a string, not valid UTF-8) and with `sentences`
        ``sentences`` (JSON text). Actors that die are restarted and their
        unfinished batches run again.
    """
    import warnings

    from ray.data import ActorPoolStrategy

    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    # Restart a dead actor as often as needed and rerun its unfinished batches. Recent Ray
    # versions default to this for actor pools but deprecate passing it; older ones need it.
    remote_args: Dict[str, Any] = {"max_restarts": -1, "max_task_retries": -1}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        return ds.map_batches(
            EmotionAnnotator,
            fn_constructor_kwargs={
                "model": str(Path(model).resolve()) if Path(model).exists() else model,
                "text_column": text_column,
                "threshold": threshold,
                "sentences": sentences,
                "batch_size": batch_size,
                "use_gpu": gpus_per_worker > 0,
                "speed": speed or {},
                "keep_text": keep_text,
                "threads": max(1, int(cpus_per_worker)),
            },
            batch_format="pyarrow",
            batch_size=rows_per_task,
            compute=ActorPoolStrategy(size=workers),
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker if gpus_per_worker > 0 else None,
            **remote_args,
        )


# ---- Ray ---------------------------------------------------------------------


def connect(address: Optional[str] = None, num_cpus: Optional[int] = None) -> bool:
    """Connect to a Ray cluster, or start a local Ray for this process.

    address (Optional[str]): None: a local Ray with `num_cpus` CPUs and no
        dashboard; "auto", "HOST:PORT" or "ray://HOST:10001": that cluster.
    RETURNS (bool): whether Ray was started or connected here (False: this
        process was already connected, and stays so).
    """
    import logging

    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    return True


def default_workers(cpus_per_worker: float, gpus_per_worker: float) -> int:
    """As many actors as the cluster's CPUs (or, with GPUs, its GPUs) hold."""
    import ray

    resources = ray.cluster_resources()
    if gpus_per_worker > 0:
        return max(1, int(resources.get("GPU", 0) // gpus_per_worker))
    return max(1, int(resources.get("CPU", 1) // cpus_per_worker))


# ---- the file job ------------------------------------------------------------


def input_files(spec: str) -> List[Tuple[Path, str]]:
    """The files of INPUT, sorted: (path, name in the output's ``source``).

    RAISES (AnnotateError): nothing found, or a file of a format not read.
    """
    path = Path(spec)
    if path.is_file():
        found = [(path, path.name)]
    elif path.is_dir():
        found = []
        for item in sorted(path.rglob("*")):
            rel = item.relative_to(path)
            if item.is_file() and not any(part.startswith((".", "_")) for part in rel.parts):
                found.append((item, rel.as_posix()))
    else:
        matches = sorted(glob.glob(spec, recursive=True))
        found = [(Path(m), m) for m in matches if Path(m).is_file()]
    if not found:
        raise AnnotateError(f"No input files found at {spec}")
    unreadable = [name for item, name in found if _suffix(item) not in READABLE_FORMATS]
    if unreadable:
        raise AnnotateError(
            f"Input files of a format not read ({', '.join(unreadable[:5])}"
            f"{', ...' if len(unreadable) > 5 else ''}): the names must end in "
            + ", ".join("." + f for f in READABLE_FORMATS)
        )
    return found


def _suffix(path: Path) -> str:
    return path.suffix.lower().lstrip(".")


def part_name(shard: int, fmt: str) -> str:
    return f"part-{shard:05d}.{fmt}"


def check_ray_job(job: RayJob, overwrite: bool = False) -> Tuple[List[Tuple[Path, str]], bool]:
    """Validate a job without changing any file (readers open each input's header).

    RETURNS (Tuple[List[Tuple[Path, str]], bool]): the input files, and whether
        OUTPUT holds an unfinished run of this job to resume.
    RAISES (AnnotateError): bad settings or input, an OUTPUT that isn't this
        job's folder, or a finished job (without `overwrite`).
    """
    if job.format not in OUTPUT_FORMATS:
        raise AnnotateError(f"Unsupported output format {job.format}: choose {' or '.join(OUTPUT_FORMATS)}")
    for name in ("batch_size", "shard_rows", "rows_per_task"):
        if getattr(job, name) < 1:
            raise AnnotateError(f"{name} must be at least 1, got {getattr(job, name)}")
    if job.output.exists() and not job.output.is_dir():
        raise AnnotateError(f"{job.output} is a file: the Ray engine writes a folder of shards")
    files = input_files(job.input)
    for path, _ in files:
        fmt = _suffix(path)
        RowReader(path, fmt, job.text_key(fmt), job.id_key)  # checks a CSV header or Parquet schema
    if not job.output.exists() or overwrite:
        return files, False
    if not (job.output / JOB_FILE).exists():
        if any(job.output.iterdir()):
            raise AnnotateError(
                f"{job.output} is not empty and holds no annotate job ({JOB_FILE}); choose an empty or new folder"
            )
        return files, False
    if (job.output / DONE_FILE).exists():
        raise AnnotateError(f"{job.output} holds a finished job; pass --overwrite to annotate again")
    try:
        saved = json.loads((job.output / JOB_FILE).read_text(encoding="utf8"))
    except ValueError as err:
        raise AnnotateError(f"Unreadable {job.output / JOB_FILE} ({err}); pass --overwrite to start again") from err
    expected = job.fingerprint(files)
    changed = [key for key in expected if saved.get("fingerprint", {}).get(key) != expected[key]]
    if saved.get("version") != JOB_VERSION or changed:
        raise AnnotateError(
            f"{job.output} holds a run with a different {', '.join(changed) or 'version'}; rerun with the same "
            "input and settings to resume, or pass --overwrite to start again"
        )
    return files, True


def _clear(output: Path) -> None:
    """Remove what a job writes into OUTPUT (nothing else)."""
    for fmt in OUTPUT_FORMATS:
        for path in output.glob(f"part-*.{fmt}"):
            path.unlink()
    for path in output.glob(".part-*.tmp"):
        path.unlink()
    if (output / ERRORS_DIR).is_dir():
        for path in (output / ERRORS_DIR).iterdir():
            path.unlink()
    for name in (JOB_FILE, DONE_FILE):
        if (output / name).exists():
            (output / name).unlink()


def _row_id(row: Row, source: str) -> str:
    """The output ``id``: the row's id as text, or SOURCE:LINE for a row without one."""
    if row.id is None:
        return f"{source}:{row.line}"
    return row.id if isinstance(row.id, str) else json.dumps(row.id, ensure_ascii=False)


@dataclass
class _Shard:
    index: int
    rows: List[Tuple[int, Row, str]] = field(default_factory=list)  # (position, row, source)


class ShardReader:
    """The input rows, read file after file with RowReader, in shards of
    `shard_rows`; `blank` counts the blank lines skipped (.jsonl, .csv)."""

    def __init__(self, job: RayJob, files: List[Tuple[Path, str]]) -> None:
        self.job, self.files, self.blank = job, files, 0

    def __iter__(self) -> Iterator[_Shard]:
        job, shard = self.job, _Shard(0)
        for path, source in self.files:
            fmt = _suffix(path)
            reader = RowReader(path, fmt, job.text_key(fmt), job.id_key)
            for row in reader.rows():
                shard.rows.append((len(shard.rows), row, source))
                if len(shard.rows) == job.shard_rows:
                    yield shard
                    shard = _Shard(shard.index + 1)
            self.blank += reader.blank
        if shard.rows or shard.index == 0:
            yield shard


def output_schema(sentences: bool) -> "pyarrow.Schema":
    """The columns of an output shard."""
    import pyarrow as pa

    head = [pa.field("id", pa.string()), pa.field("source", pa.string()), pa.field("line", pa.int64())]
    return pa.schema(head + list(result_schema(sentences)))


def _input_table(shard: _Shard) -> "pyarrow.Table":
    import pyarrow as pa

    ok = [(pos, row, source) for pos, row, source in shard.rows if row.error is None]
    return pa.table(
        {
            _SHARD: pa.array([shard.index] * len(ok), pa.int64()),
            _ROW: pa.array([pos for pos, _, _ in ok], pa.int64()),
            "id": pa.array([_row_id(row, source) for _, row, source in ok], pa.string()),
            "source": pa.array([source for _, _, source in ok], pa.string()),
            "line": pa.array([row.line for _, row, _ in ok], pa.int64()),
            "text": pa.array([row.text for _, row, _ in ok], pa.string()),
        }
    )


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write `path` through a hidden temporary file renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with tmp.open("rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _write_jsonl(path: Path, records: List[Dict[str, Any]]) -> None:
    with path.open("w", encoding="utf8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def _write_shard(job: RayJob, index: int, table: "pyarrow.Table") -> None:
    import pyarrow.parquet as pq

    table = table.select(output_schema(job.sentences).names)
    if job.format == "parquet":
        _write_atomically(job.output / part_name(index, "parquet"), lambda tmp: pq.write_table(table, tmp))
    else:
        _write_atomically(job.output / part_name(index, "jsonl"), lambda tmp: _write_jsonl(tmp, table.to_pylist()))


def _write_errors(job: RayJob, shard: _Shard) -> int:
    """Write a shard's error rows (if any); RETURNS their number."""
    failed = [
        {"id": _row_id(row, source), "source": source, "line": row.line, "reason": row.error}
        for _, row, source in shard.rows
        if row.error is not None
    ]
    if failed:
        folder = job.output / ERRORS_DIR
        folder.mkdir(exist_ok=True)
        _write_atomically(folder / part_name(shard.index, "jsonl"), lambda tmp: _write_jsonl(tmp, failed))
    return len(failed)


class _Collector:
    """Gathers the actors' result batches by shard, each row once, and writes
    a shard when all its rows are in."""

    def __init__(self, job: RayJob, expected: Dict[int, int], on_shard: Optional[Callable[[int], None]]) -> None:
        self.job, self.expected, self.on_shard = job, expected, on_shard
        self.parts: Dict[int, List["pyarrow.Table"]] = {}
        self.seen: Dict[int, Set[int]] = {}
        self.duplicates = 0

    def add(self, batch: "pyarrow.Table") -> int:
        """Take a result batch; RETURNS how many new rows it held."""
        import pyarrow.compute as pc

        new_rows = 0
        for index in pc.unique(batch.column(_SHARD)).to_pylist():
            piece = batch.filter(pc.equal(batch.column(_SHARD), index))
            seen = self.seen.setdefault(index, set())
            keep = []
            for i, pos in enumerate(piece.column(_ROW).to_pylist()):
                if pos in seen:
                    self.duplicates += 1
                else:
                    seen.add(pos)
                    keep.append(i)
            if len(keep) < piece.num_rows:
                piece = piece.take(keep)
            self.parts.setdefault(index, []).append(piece)
            new_rows += len(keep)
            if len(seen) == self.expected[index]:
                self._finish(index)
        return new_rows

    def _finish(self, index: int) -> None:
        import pyarrow as pa

        table = pa.concat_tables(self.parts.pop(index)).sort_by(_ROW)
        _write_shard(self.job, index, table)
        if self.on_shard is not None:
            self.on_shard(index)

    def missing(self) -> Dict[int, int]:
        """Shards not written, with how many of their rows never came back."""
        return {index: n - len(self.seen.get(index, ())) for index, n in self.expected.items() if index in self.parts}


def run_job(
    job: RayJob,
    *,
    overwrite: bool = False,
    progress_bar: bool = True,
    on_shard: Optional[Callable[[int], None]] = None,
) -> RaySummary:
    """Run (or resume) a file job on the connected Ray cluster (see `connect`).

    overwrite (bool): discard the job's files in OUTPUT and start again.
    progress_bar (bool): show a tqdm bar of the rows classified on a TTY.
    on_shard (Optional[Callable[[int], None]]): called with a shard's index
        after its output file is written.
    RETURNS (RaySummary): counts; error rows are in OUTPUT/_errors.
    RAISES (AnnotateError): a bad job (see check_job), or rows that didn't
        come back (nothing is lost: rerun to finish the job).
    """
    import ray
    from tqdm import tqdm

    started = time.monotonic()
    files, _ = check_ray_job(job, overwrite)
    job.output.mkdir(parents=True, exist_ok=True)
    if overwrite:
        _clear(job.output)
    if not (job.output / JOB_FILE).exists():
        data = {"version": JOB_VERSION, "fingerprint": job.fingerprint(files)}
        _write_atomically(job.output / JOB_FILE, lambda tmp: tmp.write_text(json.dumps(data, indent=1), "utf8"))
    rows = failed = shards = skipped = 0
    expected: Dict[int, int] = {}
    refs = []
    reader = ShardReader(job, files)
    for shard in reader:
        shards += 1
        rows += len(shard.rows)
        done = (job.output / part_name(shard.index, job.format)).exists()
        if done:
            skipped += 1
            failed += sum(1 for _, row, _ in shard.rows if row.error is not None)
            continue
        failed += _write_errors(job, shard)
        table = _input_table(shard)
        if table.num_rows == 0:  # every row failed: nothing for the workers
            _write_shard(job, shard.index, output_schema(job.sentences).empty_table())
            continue
        expected[shard.index] = table.num_rows
        refs.append(ray.put(table))
    collector = _Collector(job, expected, on_shard)
    if refs:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
        DataContext.get_current().print_on_execution_start = False
        workers = job.workers or default_workers(job.cpus_per_worker, job.gpus_per_worker)
        ds = annotate_dataset(
            ray.data.from_arrow_refs(refs),
            job.model,
            text_column="text",
            threshold=job.threshold,
            sentences=job.sentences,
            batch_size=job.batch_size,
            rows_per_task=job.rows_per_task,
            workers=workers,
            cpus_per_worker=job.cpus_per_worker,
            gpus_per_worker=job.gpus_per_worker,
            speed=job.speed,
            keep_text=False,
        )
        bar = tqdm(
            total=sum(expected.values()),
            unit="rows",
            desc="annotate",
            dynamic_ncols=True,
            disable=None if progress_bar else True,
        )
        with bar:
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                bar.update(collector.add(batch))
        del refs
    missing = collector.missing()
    if missing:
        raise AnnotateError(
            f"{sum(missing.values()):,} rows of {len(missing)} shards did not come back from the workers; run the "
            "same command again to finish the job"
        )
    summary = RaySummary(
        rows=rows,
        annotated=rows - failed,
        failed=failed,
        blank=reader.blank,
        shards=shards,
        skipped_shards=skipped,
        output=job.output,
        seconds=time.monotonic() - started,
    )
    record = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(summary).items()}
    _write_atomically(job.output / DONE_FILE, lambda tmp: tmp.write_text(json.dumps(record, indent=1), "utf8"))
    return summary


__all__: List[str] = [
    "RayJob",
    "RaySummary",
    "EmotionAnnotator",
    "annotate_dataset",
    "connect",
    "check_ray_job",
    "run_job",
    "input_files",
]
