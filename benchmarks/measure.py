"""Measuring primitives shared by the benchmark commands: progress lines,
resident memory over a stream, percentiles, word counts, the stream's order
and where a spaCy pipeline's time goes. Standard library only at import time,
so that a measured process loads nothing it would not load anyway.
"""

import math
import os
import random
import resource
import sys
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional


def log(name: str, message: str) -> None:
    """Write a progress line on stderr.

    name (str): what the line is about (a system, a setting, a step).
    message (str): the line.
    """
    print(f"[bench {time.strftime('%H:%M:%S')}] {name}: {message}", file=sys.stderr, flush=True)


RSS_SAMPLE_DOCS = 16
"""Over the stream, the RSS is read every this many docs (/proc/self/statm: ~10 us)."""


def rss_mb() -> float:
    """Resident set size of this process now, in MB (Linux /proc; else peak)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    Linux: VmHWM of /proc/self/status, which starts afresh in a new program.
    Not ru_maxrss there: Linux keeps it across fork and exec, so a job process
    would report the peak of the process that started it when that is higher.
    Elsewhere ru_maxrss.
    RETURNS (float): the peak, in MB.
    """
    try:
        with open("/proc/self/status") as fh:
            line = next(line for line in fh if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def rss_curve(
    stream: Iterable[Any],
    marks: Iterable[int],
    read: Callable[[], float] = rss_mb,
    every: int = RSS_SAMPLE_DOCS,
    on_mark: Optional[Callable[[int, float], None]] = None,
) -> Dict[int, float]:
    """Consume a stream, reading the RSS every `every` items and at each mark.

    The value at a mark is the highest RSS read since the previous mark, so
    that memory handed back between two marks (a heap trim, say) can't hide
    what the process held in between.
    RETURNS (Dict[int, float]): {mark: MB} for the marks the stream reached.
    """
    marks = set(marks)
    curve: Dict[int, float] = {}
    high = 0.0
    for done, _ in enumerate(stream, 1):
        if done % every == 0 or done in marks:
            high = max(high, read())
        if done in marks:
            curve[done], high = high, 0.0
            if on_mark is not None:
                on_mark(done, curve[done])
    return curve


def percentile(values: List[float], q: float) -> float:
    """Nearest-rank percentile.

    values (List[float]): the values, in any order.
    q (float): the percentile, in [0, 100].
    RETURNS (float): the value at that rank; NaN for no values.
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def n_words(texts: Iterable[str]) -> int:
    """Words as the benchmark counts them: whitespace-separated."""
    return sum(len(t.split()) for t in texts)


def batches(items: Iterable[Any], size: int) -> Iterator[List[Any]]:
    """Split an iterable into lists of `size` items (the last may be shorter).

    items (Iterable[Any]): the items, consumed lazily.
    size (int): items per batch.
    YIELDS (List[Any]): one batch.
    """
    batch: List[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def stream_order(n_texts: int, n: int, seed: int) -> List[int]:
    """Indices of an n-text stream: the texts repeated, then shuffled."""
    order = [i % n_texts for i in range(n)]
    random.Random(seed).shuffle(order)
    return order


def time_split(runner: Any, texts: List[str], device: str) -> Dict[str, float]:
    """One more run of an A runner (a SpacyRunner) over the texts with the transformer's forward pass timed
    by torch hooks; on a GPU each forward call is bracketed by
    torch.cuda.synchronize(), so its kernels count as forward time (and the
    work queued before it does not). Not one of the timed runs.

    RETURNS (Dict[str, float]): ms per doc: "total", "forward" (the
    transformer's forward calls) and "other" (everything else: tokenizers,
    alignment, pooling, textcat, Docs), and "forward_calls" (per run).
    """
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    spent = {"forward": 0.0, "calls": 0, "start": 0.0}

    def before(module, args, kwargs=None):
        sync()
        spent["start"] = time.perf_counter()

    def after(module, args, output):
        sync()
        spent["forward"] += time.perf_counter() - spent["start"]
        spent["calls"] += 1

    handles = [runner.module.register_forward_pre_hook(before), runner.module.register_forward_hook(after)]
    try:
        t0 = time.perf_counter()
        runner.run(texts)
        sync()
        total = time.perf_counter() - t0
    finally:
        for handle in handles:
            handle.remove()
    n = len(texts)
    return {
        "total": 1000 * total / n,
        "forward": 1000 * spent["forward"] / n,
        "other": 1000 * (total - spent["forward"]) / n,
        "forward_calls": spent["calls"],
    }
