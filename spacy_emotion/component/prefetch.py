"""The next batch's docs and host work done in a background thread while the model runs.

`EmotionClassifier.pipe` reads its docs from a lazy stream: spaCy makes the
docs of the next batch (its tokenizer, and every component before this one)
only when the loop asks for them, after the current batch's model call. With
the `prefetch` setting a thread pulls the next batch and does the
predictor's host work on it (`prepare`: on the fast path the batches, the
wordpiece tokenizer and the alignment) while the model runs on the current
one (`run`). The wordpiece tokenizer and torch release the GIL for most of
their work, so on two or more cores the two overlap; where the model is
cheap, this host work is a large part of the time (docs/benchmarks.md,
host-bound mode).
"""

import contextvars
import queue
import threading
from typing import Iterable, Iterator, Optional, Tuple, TypeVar

T = TypeVar("T")
_END = object()
POLL_SECONDS = 0.1
"""How often a producer blocked on a full queue checks whether it was stopped."""


def prefetched(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Iterate `items` in a background thread, at most `depth` items ahead.

    The items come in their order, none dropped. An exception raised while
    iterating `items` is raised here, after the items before it. Closing this
    iterator early (a `break`, an exception in the loop, garbage collection)
    stops the thread before its next item, so it has pulled at most
    `depth + 1` items that were never used. The thread runs in a copy of the
    caller's context (context variables, such as thinc's current ops, carry
    over).

    items (Iterable[T]): the items, typically lazy.
    depth (int): items kept ready, at least 1.
    YIELDS (T): the items.
    """
    if int(depth) < 1:
        raise ValueError(f"prefetch depth must be at least 1, got {depth!r}")
    ready: "queue.Queue[Tuple[object, Optional[BaseException]]]" = queue.Queue(maxsize=int(depth))
    stop = threading.Event()

    def offer(entry: Tuple[object, Optional[BaseException]]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer((item, None)):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            offer((_END, error))
            return
        offer((_END, None))

    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(produce,), name="spacy-emotion-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
