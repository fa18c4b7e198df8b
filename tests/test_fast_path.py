"""The spaCy backend's fast path (`fast_path.BatchedTextcat`): the scores of
`nlp.pipe` on the trained pipeline, to float rounding, for every backbone
family, every kind of text and every batch cut; pipelines it can't run
exactly run `nlp.pipe`."""

import numpy as np
import pytest
import spacy
from conftest import BOW_CONFIG, ROOT, random_head_pipeline, train_tiny
from helpers import classifier
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.language import Language
from spacy_transformers.align import get_alignment_via_offset_mapping
from spacy_transformers.span_getters import get_doc_spans, get_strided_spans
from thinc.types import Ragged
from tiny import ARCHITECTURES, make_backbone, toy_examples

from spacy_emotion.component.fast_path import (
    BatchedTextcat,
    WordpieceEncoder,
    align_wordpieces,
    windows,
)
from spacy_emotion.component.predictors import from_directory
from spacy_emotion.component.speed import SpeedOptions
from spacy_emotion.labels import LABELS
from spacy_emotion.serving.classify import model_info

TEXTS = (
    [t for t, _ in toy_examples(3, seed=5)]
    + [
        "",
        "   ",
        "i adore you",
        "scared",
        "I AM SO ANGRY!!!",
        "😀😀 yay",
        "\u200b",
        "i feel \u200b happy",
        "\u200b\u200b \u200b",
    ]
    + ["i feel so happy today and " * 60]  # 361 spaCy tokens: three overlapping strided windows of 128
    + ["a" * 700, "i am " + "very " * 30 + "afraid", "tab\tand\nnew line"]
)
FLOAT32 = 1e-5
CLS_CONFIG = ROOT / "configs" / "trf_cls.cfg"


@pytest.fixture(scope="module", params=ARCHITECTURES)
def pipeline(request, tmp_path_factory):
    return random_head_pipeline(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module", params=ARCHITECTURES)
def cls_pipeline(request, tmp_path_factory):
    """The first-wordpiece head of configs/trf_cls.cfg."""
    return random_head_pipeline(request.param, tmp_path_factory.mktemp(f"cls-{request.param}"), CLS_CONFIG)


OPTIONS = [
    {},  # float32, the pipeline's own batch budget
    {"sort_by_length": True, "batch_tokens": 24},  # many small length buckets
    {"sort_by_length": True, "inference_mode": True, "quantize": "bf16"},  # padded wordpieces, bf16 Linear layers
]


@pytest.mark.parametrize("options", OPTIONS)
def test_fast_path_gives_the_scores_of_nlp_pipe(pipeline, options):
    check_fast_path(pipeline, options)


@pytest.mark.parametrize("options", OPTIONS[:2])
def test_fast_path_runs_the_first_wordpiece_head(cls_pipeline, options):
    check_fast_path(cls_pipeline, options)


def check_fast_path(pipeline, options):
    """The fast path of `pipeline` gives the scores of nlp.pipe, whatever the batch."""
    reference = from_directory(pipeline, SpeedOptions.as_trained(**options))
    assert reference.fast_path is None
    fast = from_directory(pipeline, SpeedOptions.as_trained(fast_path=True, **options))
    assert fast.fast_path is not None, fast.fast_path_reason
    expected = reference.predict(TEXTS)
    got = fast.predict(TEXTS)
    assert np.abs(got - expected).max() <= FLOAT32
    # the same from docs already tokenized (what the component passes)
    make_doc = fast.fast_path.nlp.make_doc
    assert np.abs(fast.predict(TEXTS, [make_doc(t) for t in TEXTS]) - expected).max() <= FLOAT32
    assert got.sum(axis=1) == pytest.approx(np.ones(len(TEXTS)), abs=1e-5)
    assert np.ptp(got[[0, 1, 2]], axis=0).max() > 1e-3  # the random head tells texts apart: a real comparison
    # the same scores whatever the batch a text comes in
    single = np.concatenate([fast.predict([text]) for text in TEXTS[::-1]])[::-1]
    assert np.abs(single - got).max() <= FLOAT32


def test_fast_path_is_the_component_default(trained_pipeline):
    nlp = spacy.blank("en")
    nlp.add_pipe("emotion_classifier", config={"model": str(trained_pipeline)})
    assert nlp.get_pipe("emotion_classifier").predictor.fast_path is not None
    assert model_info(nlp)["fast_path"] is True
    off = spacy.blank("en")
    off.add_pipe("emotion_classifier", config={"model": str(trained_pipeline), "fast_path": False})
    assert off.get_pipe("emotion_classifier").predictor.fast_path is None
    assert model_info(off)["fast_path"] is False
    docs, off_docs = list(nlp.pipe(TEXTS)), list(off.pipe(TEXTS))
    for doc, off_doc in zip(docs, off_docs):
        assert doc.cats == pytest.approx(off_doc.cats, abs=FLOAT32)
        assert doc._.emotion == off_doc._.emotion


def test_hf_backend_has_no_fast_path(hf_checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("emotion_classifier", config={"model": str(hf_checkpoint)})
    assert model_info(nlp)["fast_path"] is False


def test_pipelines_it_cannot_run_exactly_run_nlp_pipe(trained_pipeline, toy_corpus, tmp_path):
    """A component before the transformer may change the docs; a bag-of-words
    textcat reads them itself: both take nlp.pipe, with the reason."""
    nlp = spacy.load(trained_pipeline)
    nlp.add_pipe("sentencizer", first=True)
    nlp.to_disk(tmp_path / "extra")
    bow = train_tiny(BOW_CONFIG, toy_corpus, tmp_path / "bow", {"training.max_steps": 10})
    for path, reason in ((tmp_path / "extra", "sentencizer, transformer, textcat"), (bow, "components are textcat")):
        predictor = from_directory(path, SpeedOptions.as_trained(fast_path=True))
        assert predictor.fast_path is None and reason in predictor.fast_path_reason
        docs = list(spacy.load(path).pipe(TEXTS[:6]))
        expected = np.asarray([[doc.cats[k] for k in LABELS] for doc in docs])
        assert predictor.predict(TEXTS[:6])[2:] == pytest.approx(expected[2:], abs=1e-6)  # 0, 1: empty, uniform


def test_a_textcat_that_is_not_a_listener_is_refused(trained_pipeline):
    nlp = spacy.load(trained_pipeline)
    textcat = nlp.get_pipe("textcat")
    textcat.model.layers[0].layers[0].layers[0].layers[0].name = "something-else"  # the listener, renamed
    fast, reason = BatchedTextcat.from_pipeline(nlp)
    assert fast is None and "not a transformer listener" in reason


def test_docs_without_wordpieces_get_zero_rows():
    """Token rows as spacy-transformers' alignment gives them: a doc whose
    tokens have no wordpieces at all gets one zero row (index 7 here) per
    token; a token without wordpieces in another doc keeps none."""
    align = Ragged(np.asarray([1, 2, 3, 5], dtype="int32"), np.asarray([2, 0, 1, 0, 0, 1], dtype="int32"))
    # docs of 3, 2 and 1 tokens: the second has no wordpieces
    index, lengths = BatchedTextcat._token_rows((align.dataXd, align.lengths), [3, 2, 1], zero_row=7)
    assert lengths.tolist() == [2, 0, 1, 1, 1, 1]
    assert index.tolist() == [1, 2, 3, 7, 7, 5]
    with pytest.raises(ValueError, match="aligned 6 tokens for a batch of 5"):
        BatchedTextcat._token_rows((align.dataXd, align.lengths), [3, 2], zero_row=7)


@pytest.mark.parametrize("window,stride", [(128, 96), (5, 3), (4, 4), (3, 5), (0, 0)])
def test_windows_are_those_of_the_span_getter(window, stride):
    """`windows` cuts a doc as spacy-transformers' strided_spans (doc_spans for window 0) does."""
    nlp = spacy.blank("en")
    for n in list(range(0, 40)) + [95, 96, 97, 127, 128, 129, 191, 192, 193, 224, 225, 361]:
        doc = nlp.make_doc(" ".join(["w"] * n))
        spans = get_doc_spans([doc])[0] if window == 0 else get_strided_spans([doc], window, stride)[0]
        assert windows(n, window, stride) == [(span.start, span.end) for span in spans]


WORDS = st.sampled_from(
    ["i", "feel", "happy", "so", "sad", "a" * 9, "can't", "U.S.", "(yes)", "\u200b", "😀", "x-y", "!!", "\n", "\t"]
)


@settings(max_examples=30, deadline=None)
@given(texts=st.lists(st.lists(WORDS, min_size=1, max_size=12), min_size=1, max_size=4), seps=st.randoms())
def test_alignment_is_that_of_spacy_transformers(texts, seps, wordpiece_tokenizers):
    """`align_wordpieces` gives the rows and lengths of spacy-transformers'
    `get_alignment_via_offset_mapping` on strided windows of any texts."""
    nlp = spacy.blank("en")
    docs = [nlp.make_doc("".join(w + seps.choice(["", " ", "  "]) for w in words)) for words in texts]
    for tokenizer in wordpiece_tokenizers:
        spans = [span for doc in docs for span in get_strided_spans([doc], 5, 3)[0]]
        encoding = tokenizer([span.text for span in spans], return_offsets_mapping=True, padding="longest")
        offsets = np.asarray(encoding["offset_mapping"], dtype="int64").reshape(len(spans), -1, 2)
        expected = get_alignment_via_offset_mapping(spans, offsets)
        starts, ids, bases, base = [], [], [], 0
        first_token = {id(doc): sum(len(d) for d in docs[:i]) for i, doc in enumerate(docs)}
        for span in spans:
            begin = span[0].idx
            starts.append(np.asarray([t.idx - begin + base for t in span]))
            ids.append(np.arange(span.start, span.end) + first_token[id(span.doc)])
            bases.append(base)
            base += len(span.text) + 1
        rows, lengths = align_wordpieces(
            np.concatenate(starts), np.concatenate(ids), np.asarray(bases), offsets, sum(len(d) for d in docs)
        )
        assert lengths.tolist() == expected.lengths.tolist()
        assert rows.tolist() == expected.dataXd.tolist()


@pytest.fixture(scope="module")
def wordpiece_tokenizers(all_tokenizers):
    """A BERT wordpiece and a byte-level BPE tokenizer (RoBERTa), tiny and local."""
    return [all_tokenizers["bert"], all_tokenizers["roberta"]]


@pytest.fixture(scope="module")
def all_tokenizers(tmp_path_factory):
    """The tokenizer of every tiny architecture, by name."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tokenizers")
    return {arch: AutoTokenizer.from_pretrained(make_backbone(folder / arch, arch)) for arch in ARCHITECTURES}


@settings(max_examples=40, deadline=None)
@given(
    texts=st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=40), min_size=1, max_size=5),
    offsets=st.booleans(),
    multiple=st.sampled_from([None, 16]),
)
def test_the_wordpiece_encoder_returns_what_the_tokenizer_does(texts, offsets, multiple, all_tokenizers):
    """`WordpieceEncoder` (the Rust tokenizer's encode_batch) gives the arrays
    of the transformers call it replaces, on any text, with and without
    offsets and padding to a multiple, for every architecture; a transformers
    call afterwards is unchanged."""
    from spacy_emotion.component.predictors import pad_to_multiple, unpad

    for arch, tokenizer in all_tokenizers.items():
        if multiple:
            pad_to_multiple(tokenizer, multiple)
        try:
            truncated = dict(padding=True, truncation=True, max_length=32, return_tensors="np")
            before = {key: value.tolist() for key, value in tokenizer(texts, **truncated).items()}
            kwargs = dict(add_special_tokens=True, return_attention_mask=True, return_tensors="np")
            kwargs.update(return_offsets_mapping=offsets, return_token_type_ids=None, padding="longest")
            expected = dict(tokenizer(texts, **kwargs))
            got = WordpieceEncoder(tokenizer)(texts, offsets=offsets)
            assert sorted(got) == sorted(expected), arch
            for key, value in expected.items():
                assert got[key].dtype == np.int64 and got[key].tolist() == value.tolist(), (arch, key)
            after = {key: value.tolist() for key, value in tokenizer(texts, **truncated).items()}
            assert after == before, arch
        finally:
            unpad(tokenizer)


def test_the_component_passes_its_docs_when_their_tokens_are_the_models(trained_pipeline):
    """In a blank English pipeline the component's docs carry the model's
    tokens and go to the fast path as they are; after a component that
    merges tokens, or under another tokenizer, the texts are tokenized again;
    the scores are the same either way."""
    texts = [t for t in TEXTS if t.strip()]
    plain = classifier(trained_pipeline, **SpeedOptions.as_trained(fast_path=True).to_dict())
    component = plain.get_pipe("emotion_classifier")
    seen = []
    fast = component.predictor.fast_path
    original = fast.prepare
    fast.prepare = lambda texts, docs=None: seen.append(docs) or original(texts, docs)
    reference = np.asarray([[doc.cats[k] for k in LABELS] for doc in plain.pipe(texts)])
    assert seen and all(doc is not None for docs in seen for doc in docs)

    merged = classifier(trained_pipeline, **SpeedOptions.as_trained(fast_path=True).to_dict())
    merged.add_pipe("merge_first_two_tokens", first=True)
    other = classifier(trained_pipeline, **SpeedOptions.as_trained(fast_path=True).to_dict())
    other.tokenizer.add_special_case("feel", [{"ORTH": "fe"}, {"ORTH": "el"}])
    for nlp in (merged, other):
        assert not nlp.get_pipe("emotion_classifier")._docs_keep_model_tokens()
        got = np.asarray([[doc.cats[k] for k in LABELS] for doc in nlp.pipe(texts)])
        assert np.abs(got - reference).max() <= FLOAT32
    assert component._docs_keep_model_tokens()
    # a component made without its pipeline (here: unpickled) tokenizes the texts
    make, args = classifier(trained_pipeline).get_pipe("emotion_classifier").__reduce__()
    assert not make(*args)._docs_keep_model_tokens()


@Language.component("merge_first_two_tokens")
def merge_first_two_tokens(doc):
    if len(doc) > 1:
        with doc.retokenize() as retokenizer:
            retokenizer.merge(doc[0:2])
    return doc
