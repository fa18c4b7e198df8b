"""The `prefetch` setting: the next batch's docs and host work done in a background thread
(`spacy_emotion.component.prefetch`). Nothing lost or reordered, errors
raised where the caller iterates, the thread stopped when the caller stops."""

import contextvars
import itertools
import threading
import time

import numpy as np
import pytest
from helpers import classifier
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.language import Language

from spacy_emotion.component.prefetch import prefetched
from spacy_emotion.labels import LABELS

THREAD_NAME = "spacy-emotion-prefetch"


def wait_for_threads_to_end(deadline_s: float = 10.0) -> int:
    """The prefetch threads still alive after waiting up to `deadline_s` for them."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        alive = [t for t in threading.enumerate() if t.name == THREAD_NAME]
        if not alive:
            return 0
        time.sleep(0.02)
    return len([t for t in threading.enumerate() if t.name == THREAD_NAME])


@settings(max_examples=30, deadline=None)
@given(items=st.lists(st.integers()), depth=st.integers(min_value=1, max_value=4))
def test_every_item_comes_once_in_order(items, depth):
    assert list(prefetched(iter(items), depth=depth)) == items


def test_an_error_is_raised_after_the_items_before_it():
    class Broken(Exception):
        pass

    def items():
        yield from range(3)
        raise Broken("item 3")

    seen = []
    with pytest.raises(Broken, match="item 3"):
        for item in prefetched(items()):
            seen.append(item)
    assert seen == [0, 1, 2]
    assert wait_for_threads_to_end() == 0


@pytest.mark.parametrize("depth", [1, 3])
def test_stopping_early_stops_the_thread(depth):
    pulled = []

    def endless():
        for n in itertools.count():
            pulled.append(n)
            yield n

    iterator = prefetched(endless(), depth=depth)
    assert list(itertools.islice(iterator, 5)) == [0, 1, 2, 3, 4]
    iterator.close()
    assert wait_for_threads_to_end() == 0
    assert len(pulled) <= 5 + depth + 1


def test_an_error_in_the_callers_loop_stops_the_thread():
    with pytest.raises(RuntimeError):
        for item in prefetched(itertools.count()):
            if item == 2:
                raise RuntimeError("the caller's own error")
    assert wait_for_threads_to_end() == 0


def test_context_variables_carry_over():
    flag = contextvars.ContextVar("flag", default="unset")
    flag.set("caller's")
    assert list(prefetched(flag.get() for _ in range(2))) == ["caller's", "caller's"]


@pytest.mark.parametrize("depth", [0, -1])
def test_a_depth_below_one_is_refused(depth):
    with pytest.raises(ValueError, match="at least 1"):
        list(prefetched([1], depth=depth))


def cats(docs):
    return np.asarray([[doc.cats[label] for label in LABELS] for doc in docs])


TEXTS = ["i feel so happy today", "", "i am scared of the dark", "   ", "what a lovely surprise"] * 7


def test_the_component_gives_the_same_results_with_and_without_it(trained_pipeline):
    on = classifier(trained_pipeline, prefetch=True)
    off = classifier(trained_pipeline, prefetch=False)
    docs_on = list(on.pipe(TEXTS, batch_size=4))
    docs_off = list(off.pipe(TEXTS, batch_size=4))
    assert [d.text for d in docs_on] == TEXTS
    assert np.array_equal(cats(docs_on), cats(docs_off))
    assert [d._.emotion for d in docs_on] == [d._.emotion for d in docs_off]


@Language.component("fails_on_boom")
def fails_on_boom(doc):
    if "boom" in doc.text:
        raise ValueError(f"cannot handle {doc.text!r}")
    return doc


def test_an_error_of_an_earlier_component_reaches_the_caller(trained_pipeline):
    nlp = classifier(trained_pipeline, prefetch=True)
    nlp.add_pipe("fails_on_boom", first=True)
    texts = ["i feel fine"] * 9 + ["boom"] + ["i feel fine"] * 9
    done = []
    with pytest.raises(ValueError, match="cannot handle 'boom'"):
        for doc in nlp.pipe(texts, batch_size=4):
            done.append(doc.text)
    assert done == ["i feel fine"] * 8  # the two whole batches before the failing one
    assert wait_for_threads_to_end() == 0


def test_the_host_work_runs_in_the_thread_and_the_model_in_the_callers(trained_pipeline):
    """With prefetch the predictor's `prepare` (tokens, wordpieces) of each
    batch runs in the prefetch thread and its `run` (the model) in the
    caller's thread, once per batch; without it both run in the caller's."""
    for prefetch, prepare_thread in ((True, THREAD_NAME), (False, threading.current_thread().name)):
        nlp = classifier(trained_pipeline, prefetch=prefetch)
        predictor = nlp.get_pipe("emotion_classifier").predictor
        assert predictor.fast_path is not None
        threads = {"prepare": [], "run": []}
        for name in threads:
            original = getattr(predictor, name)

            def spy(*args, _name=name, _original=original, **kwargs):
                threads[_name].append(threading.current_thread().name)
                return _original(*args, **kwargs)

            setattr(predictor, name, spy)
        docs = list(nlp.pipe(TEXTS, batch_size=4))
        batches = -(-len(TEXTS) // 4)
        assert len(docs) == len(TEXTS)
        assert threads["prepare"] == [prepare_thread] * batches
        assert threads["run"] == [threading.current_thread().name] * batches
    assert wait_for_threads_to_end() == 0


def test_sentences_get_the_same_results_with_and_without_it(trained_pipeline):
    texts = ["I was so nervous. Then I passed! My mum hugged me.", "", "i am scared. so scared."] * 5
    on = classifier(trained_pipeline, sentencizer=True, prefetch=True, per_sentence=True)
    off = classifier(trained_pipeline, sentencizer=True, prefetch=False, per_sentence=True)
    docs_on, docs_off = list(on.pipe(texts, batch_size=2)), list(off.pipe(texts, batch_size=2))
    assert np.array_equal(cats(docs_on), cats(docs_off))
    for doc_on, doc_off in zip(docs_on, docs_off):
        assert [s._.emotion_cats for s in doc_on.sents] == [s._.emotion_cats for s in doc_off.sents]
        assert len(list(doc_on.sents)) == len(list(doc_off.sents))


def test_a_checkpoint_gets_the_same_results_with_and_without_it(hf_checkpoint):
    on = classifier(hf_checkpoint, prefetch=True)
    off = classifier(hf_checkpoint, prefetch=False)
    docs_on, docs_off = list(on.pipe(TEXTS, batch_size=3)), list(off.pipe(TEXTS, batch_size=3))
    assert [d.text for d in docs_on] == TEXTS
    assert np.array_equal(cats(docs_on), cats(docs_off))


def test_an_error_of_the_host_work_reaches_the_caller(trained_pipeline):
    """per_sentence without sentence boundaries fails in `prepare`, which
    runs in the prefetch thread: the caller gets the component's error."""
    nlp = classifier(trained_pipeline, prefetch=True, per_sentence=True)
    with pytest.raises(ValueError, match="needs sentence boundaries"):
        list(nlp.pipe(TEXTS, batch_size=4))
    assert wait_for_threads_to_end() == 0
