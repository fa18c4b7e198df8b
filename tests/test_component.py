"""The `emotion_classifier` component: contract, batching, saving, scoring, bad input."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import spacy
from helpers import classifier as make_classifier
from spacy.training import Example
from tiny import make_backbone, toy_examples

from spacy_emotion.component.predictors import ModelNotFoundError
from spacy_emotion.component.speed import SpeedOptions
from spacy_emotion.labels import LABELS

AS_TRAINED = SpeedOptions.as_trained().to_dict()

TEXTS = [t for t, _ in toy_examples(3, seed=7)]


def classifier(model, **config):
    return make_classifier(model, sentencizer=True, **config)


@pytest.fixture(scope="module")
def nlp(trained_pipeline):
    return classifier(trained_pipeline)


def assert_cats(cats, prefix=""):
    keys = [prefix + label for label in LABELS]
    assert all(k in cats for k in keys)
    assert all(isinstance(cats[k], float) and 0.0 <= cats[k] <= 1.0 for k in keys)
    assert sum(cats[k] for k in keys) == pytest.approx(1.0, abs=1e-5)


def test_doc_cats_and_extensions(nlp, trained_pipeline):
    doc = nlp("i feel so happy and glad today")
    assert_cats(doc.cats)
    top = max(LABELS, key=doc.cats.get)
    assert doc._.emotion == top
    assert doc._.emotion_score == pytest.approx(doc.cats[top])
    # the trained pipeline's own textcat: the same scores when run as trained,
    # nearly the same with the default speed settings (bf16 Linear layers on a CPU with native bf16)
    inner = spacy.load(trained_pipeline)("i feel so happy and glad today").cats
    as_trained = classifier(trained_pipeline, **SpeedOptions.as_trained().to_dict())("i feel so happy and glad today")
    assert as_trained.cats == pytest.approx({k: inner[k] for k in LABELS}, abs=1e-6)
    assert doc.cats == pytest.approx({k: inner[k] for k in LABELS}, abs=0.02)


def test_learned_the_toy_task(nlp):
    """Overfitting check: the tiny model trained in the session gets most toy texts right."""
    examples = toy_examples(5, seed=11)
    right = sum(nlp(text)._.emotion == label for text, label in examples)
    assert right / len(examples) >= 0.6


def test_other_annotations_untouched(trained_pipeline):
    from spacy.tokens import Doc

    if not Doc.has_extension("other"):
        Doc.set_extension("other", default=None)
    nlp = classifier(trained_pipeline, cats_prefix="emo_")
    doc = nlp.make_doc("i am so angry and mad now")
    doc.cats = {"POSITIVE": 0.3}
    doc._.other = "kept"
    doc.tensor = np.ones((len(doc), 3), dtype="float32")
    words = [t.text for t in doc]
    for _, proc in nlp.pipeline:
        doc = proc(doc)
    assert doc.cats["POSITIVE"] == 0.3
    assert_cats(doc.cats, prefix="emo_")
    assert not any(k in doc.cats for k in LABELS)
    assert doc._.other == "kept" and doc.tensor.shape == (len(doc), 3) and doc.tensor.sum() == len(doc) * 3
    assert [t.text for t in doc] == words


def test_threshold(trained_pipeline):
    low = classifier(trained_pipeline, threshold=0.0)("i am so scared")
    high = classifier(trained_pipeline, threshold=1.0)("i am so scared")
    assert low._.emotion in LABELS
    assert high._.emotion is None and high._.emotion_score is None
    assert high.cats == pytest.approx(low.cats)
    with pytest.raises(ValueError, match="threshold"):
        classifier(trained_pipeline, threshold=1.5)


def test_per_sentence(trained_pipeline):
    nlp = classifier(trained_pipeline, per_sentence=True)
    doc = nlp("i feel so happy today. i am scared at work now!")
    sents = list(doc.sents)
    assert len(sents) == 2
    single = classifier(trained_pipeline)
    for sent in sents:
        assert sent._.emotion in LABELS
        assert_cats(sent._.emotion_cats)
        assert sent._.emotion_score == pytest.approx(max(sent._.emotion_cats.values()))
        # a sentence scores as the same text on its own
        assert sent._.emotion_cats == pytest.approx(single(sent.text).cats, abs=1e-5)
    assert doc._.emotion in LABELS


def test_per_sentence_without_boundaries_is_a_clear_error(trained_pipeline):
    nlp = spacy.blank("en")
    nlp.add_pipe("emotion_classifier", config={"model": str(trained_pipeline), "per_sentence": True})
    with pytest.raises(ValueError, match="sentencizer"):
        nlp("no boundaries here")


def test_per_sentence_override_per_call(nlp):
    doc = nlp("i feel happy. i am sad.", component_cfg={"emotion_classifier": {"per_sentence": True}})
    assert all(s._.emotion_cats is not None for s in doc.sents)


def test_pipe_equals_call_in_order(nlp):
    texts = TEXTS + ["", "i adore you", "a"]
    one = [nlp(t) for t in texts]
    for batch_size in (1, 4, 64):
        many = list(nlp.pipe(texts, batch_size=batch_size))
        assert [d.text for d in many] == texts
        for a, b in zip(one, many):
            assert a._.emotion == b._.emotion
            assert [a.cats[k] for k in LABELS] == pytest.approx([b.cats[k] for k in LABELS], abs=1e-5)


def test_pipe_runs_the_model_per_batch(nlp, monkeypatch):
    component = nlp.get_pipe("emotion_classifier")
    calls = []
    original = component.predictor.run
    monkeypatch.setattr(
        component.predictor, "run", lambda prepared: calls.append(len(prepared.texts)) or original(prepared)
    )
    list(nlp.pipe(TEXTS[:10], batch_size=4))
    assert calls == [4, 4, 2]


def test_empty_and_whitespace(nlp):
    for text in ("", "   \n\t "):
        doc = nlp(text)
        assert [doc.cats[k] for k in LABELS] == pytest.approx([1 / 6] * 6)
        assert doc._.emotion is None and doc._.emotion_score is None


@pytest.mark.parametrize("bad", [None, 42, 3.5, ["a list"], {"text": "x"}])
def test_non_string_input(nlp, bad):
    with pytest.raises(ValueError, match="E1041"):
        nlp(bad)
    assert nlp("still works")._.emotion in LABELS


def test_pathological_docs_do_not_disturb_the_batch(nlp):
    normal = TEXTS[:4]
    expected = [nlp(t).cats for t in normal]
    weird = ["", "hello " * 20000, "a\x00b\x07c\x1b[0m", "😀🔥😱", "x" * 5000]
    texts = [normal[0], weird[0], normal[1], weird[1], weird[2], normal[2], weird[3], weird[4], normal[3]]
    docs = list(nlp.pipe(texts, batch_size=len(texts)))
    assert [d.text for d in docs] == texts
    got = [d.cats for d in docs if d.text in normal]
    for a, b in zip(expected, got):
        assert [a[k] for k in LABELS] == pytest.approx([b[k] for k in LABELS], abs=1e-5)
    for doc in docs:
        assert_cats(doc.cats)


def test_long_text_sees_every_window(trained_pipeline):
    """Beyond 512 wordpieces the text is scored over strided windows, not cut."""
    nlp = classifier(trained_pipeline)
    head = "i feel so happy and glad today " * 100  # ~700 wordpieces
    tail = "i am scared and terrified now " * 200
    assert nlp(head + tail).cats != pytest.approx(nlp(head + "i feel so happy").cats, abs=1e-4)


def test_save_load_after_source_is_deleted(trained_pipeline, tmp_path):
    source = tmp_path / "model"
    shutil.copytree(trained_pipeline, source)
    nlp = classifier(source, threshold=0.2, cats_prefix="e_")
    expected = nlp("i am so angry").cats
    nlp.to_disk(tmp_path / "saved")
    shutil.rmtree(source)
    loaded = spacy.load(tmp_path / "saved")
    doc = loaded("i am so angry")
    assert doc.cats == pytest.approx(expected)
    assert loaded.get_pipe("emotion_classifier").cfg["threshold"] == 0.2


def test_settings_given_to_spacy_load_win_over_the_saved_ones(nlp, tmp_path):
    nlp.to_disk(tmp_path / "saved")
    overrides = {"threshold": 0.99, "cats_prefix": "emo_", "per_sentence": True}
    loaded = spacy.load(tmp_path / "saved", config={"components": {"emotion_classifier": overrides}})
    assert {k: loaded.get_pipe("emotion_classifier").cfg[k] for k in overrides} == overrides
    assert {
        k: loaded.config["components"]["emotion_classifier"][k] for k in overrides
    } == overrides  # as nlp.config says
    doc = loaded("i am so angry. i am sad.")
    assert max(doc.cats.values()) < 0.99 and doc._.emotion is None  # the override's threshold applies
    assert sorted(doc.cats) == sorted("emo_" + label for label in LABELS)
    assert all(sent._.emotion_cats is not None for sent in doc.sents)


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_pipeline_with_capitalised_labels(trained_pipeline, tmp_path, fast_path):
    """Label names match in any case: a textcat trained with "Joy" writes doc.cats["Joy"]."""
    capitalised = tmp_path / "capitalised"
    shutil.copytree(trained_pipeline, capitalised)
    cfg_path = capitalised / "textcat" / "cfg"
    cfg = json.loads(cfg_path.read_text())
    cfg["labels"] = [label.capitalize() for label in cfg["labels"]]
    cfg_path.write_text(json.dumps(cfg))
    assert spacy.load(capitalised).get_pipe("textcat").labels[0][0].isupper()
    settings = {**AS_TRAINED, "fast_path": fast_path}
    got = classifier(capitalised, **settings)(TEXTS[0]).cats
    assert got == pytest.approx(classifier(trained_pipeline, **settings)(TEXTS[0]).cats, abs=1e-6)
    assert list(got) == list(LABELS)


@pytest.mark.parametrize("layout", ["source", "module"])
def test_a_folder_of_spacy_package_is_a_model(trained_pipeline, tmp_path, layout):
    """`model` may name the folder `spacy package` writes or the installed module folder."""
    meta = json.loads((trained_pipeline / "meta.json").read_text())
    module = f"{meta['lang']}_{meta['name']}"
    root = tmp_path / f"{module}-{meta['version']}"  # packages/en_emotion_trf-0.1.0
    module_dir = root / module if layout == "source" else root  # or site-packages/en_emotion_trf
    shutil.copytree(trained_pipeline, module_dir / f"{module}-{meta['version']}")
    (module_dir / "meta.json").write_text(json.dumps(meta))
    if layout == "source":
        (root / "meta.json").write_text(json.dumps(meta))
    assert classifier(root, **AS_TRAINED)(TEXTS[0]).cats == pytest.approx(
        classifier(trained_pipeline, **AS_TRAINED)(TEXTS[0]).cats
    )
    (module_dir / f"{module}-{meta['version']}" / "config.cfg").unlink()
    with pytest.raises(ModelNotFoundError, match="neither a spaCy pipeline"):
        classifier(root)(TEXTS[0])


@pytest.mark.parametrize(
    "settings",
    [{}, {"quantize": "int8"}, {"runtime": "onnx"}, AS_TRAINED],
    ids=["defaults", "int8", "onnx", "as-trained"],
)
def test_a_pipeline_with_the_component_pickles(trained_pipeline, settings):
    """nlp.pipe(n_process=N) pickles the pipeline where processes are spawned (Windows, macOS):
    int8 layers, an ONNX Runtime session and the padded bf16 tokenizer can't be pickled as they are."""
    import pickle

    nlp = classifier(trained_pipeline, cats_prefix="e_", threshold=0.1, **settings)
    expected = [nlp(t).cats for t in TEXTS]
    copy = pickle.loads(pickle.dumps(nlp))
    component = copy.get_pipe("emotion_classifier")
    assert component.cfg == nlp.get_pipe("emotion_classifier").cfg
    assert (
        component.predictor.runtime.linear_format == nlp.get_pipe("emotion_classifier").predictor.runtime.linear_format
    )
    for text, cats in zip(TEXTS, expected):
        assert copy(text).cats == pytest.approx(cats, abs=1e-6)


def test_to_bytes_round_trip(trained_pipeline):
    nlp = classifier(trained_pipeline, per_sentence=True)
    expected = nlp("i love you. i am scared.").cats
    config = nlp.config.copy()
    config["components"]["emotion_classifier"]["model"] = "does-not-exist"  # the model comes from the bytes
    other = spacy.util.load_model_from_config(config)  # spaCy's way: the saved config, then the bytes
    other.from_bytes(nlp.to_bytes())
    doc = other("i love you. i am scared.")
    assert doc.cats == pytest.approx(expected)
    assert other.get_pipe("emotion_classifier").cfg["per_sentence"] is True


def test_from_bytes_replaces_the_model_and_keeps_the_components_settings(trained_pipeline):
    nlp = classifier(trained_pipeline, per_sentence=True, threshold=0.3)
    other = classifier("does-not-exist")
    other.from_bytes(nlp.to_bytes())
    assert other("i love you").cats == pytest.approx(nlp("i love you").cats)
    cfg = other.get_pipe("emotion_classifier").cfg
    assert cfg["per_sentence"] is False and cfg["threshold"] == 0.0


def test_missing_model_error_says_how_to_get_one():
    nlp = spacy.blank("en")
    nlp.add_pipe("emotion_classifier", config={"model": "en_emotion_does_not_exist"})
    with pytest.raises(ModelNotFoundError, match="spacy project run all"):
        nlp("hello")


def test_hf_checkpoint_directory(hf_checkpoint):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    nlp = classifier(hf_checkpoint, **AS_TRAINED)  # float32: the checkpoint's own scores, on any CPU
    doc = nlp("i feel happy today")
    assert_cats(doc.cats)
    tok = AutoTokenizer.from_pretrained(hf_checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(hf_checkpoint).eval()
    with torch.no_grad():
        probs = torch.softmax(model(**tok("i feel happy today", return_tensors="pt")).logits, -1)[0].numpy()
    assert [doc.cats[k] for k in LABELS] == pytest.approx(probs.tolist(), abs=1e-5)


def test_hf_checkpoint_labels_mapped_by_name(tmp_path):
    shuffled = ["Fear", "joy", "SURPRISE", "sadness", "anger", "love"]
    path = make_backbone(tmp_path / "ckpt", "bert", num_labels=6, id2label=dict(enumerate(shuffled)))
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        probs = torch.softmax(model(**tok("so scared", return_tensors="pt")).logits, -1)[0].tolist()
    doc = classifier(path, **AS_TRAINED)("so scared")
    for i, name in enumerate(shuffled):
        assert doc.cats[name.lower()] == pytest.approx(probs[i], abs=1e-5)


def test_hf_checkpoint_long_text_uses_windows(hf_checkpoint, monkeypatch):
    """Beyond the model's window, every wordpiece is scored in some window."""
    nlp = classifier(hf_checkpoint)
    predictor = nlp.get_pipe("emotion_classifier").predictor
    seen = []
    forward = predictor.model.forward
    monkeypatch.setattr(predictor.model, "forward", lambda **kw: seen.append(kw["input_ids"]) or forward(**kw))
    text = "i feel happy " * 400 + "i am scared"
    doc = nlp(text)
    assert_cats(doc.cats)
    ids = torch_cat_rows(seen)
    n_pieces = len(predictor.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert n_pieces > 512 and len(ids) >= 3
    scared = predictor.tokenizer.convert_tokens_to_ids("scared")
    assert any(scared in row for row in ids)


def test_hf_checkpoint_long_text_is_the_length_weighted_mean_of_its_windows(hf_checkpoint):
    """Each window scored alone by the plain model, averaged by its wordpieces: the component's result."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    text = "i feel happy " * 300 + "i am so scared and angry " * 60
    tokenizer = AutoTokenizer.from_pretrained(hf_checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(hf_checkpoint).eval()
    windows = tokenizer(text, truncation=True, max_length=512, stride=128, return_overflowing_tokens=True)["input_ids"]
    assert len(windows) >= 3
    with torch.no_grad():
        scores = [torch.softmax(model(input_ids=torch.tensor([w])).logits[0], -1).numpy() for w in windows]
    lengths = np.asarray([len(w) for w in windows], dtype="float64")
    expected = (np.asarray(scores) * lengths[:, None]).sum(axis=0) / lengths.sum()
    assert np.ptp(np.asarray(scores), axis=0).max() > 0.01  # the windows disagree: the weighting matters
    got = classifier(hf_checkpoint, **AS_TRAINED)(text).cats
    assert [got[label] for label in LABELS] == pytest.approx(expected.tolist(), abs=1e-5)


def torch_cat_rows(batches):
    return [row.tolist() for batch in batches for row in batch]


def test_hf_checkpoint_with_wrong_labels(tmp_path):
    path = make_backbone(tmp_path / "ckpt", "bert", num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"})
    nlp = classifier(path)
    with pytest.raises(ValueError, match="not the six emotions"):
        nlp("hello")


def test_hf_checkpoint_saved_inside_pipeline(hf_checkpoint, tmp_path):
    src = tmp_path / "ckpt"
    shutil.copytree(hf_checkpoint, src)
    nlp = classifier(src)
    expected = nlp("i feel happy").cats
    nlp.to_disk(tmp_path / "saved")
    shutil.rmtree(src)
    assert spacy.load(tmp_path / "saved")("i feel happy").cats == pytest.approx(expected)


def test_evaluate_reports_cats_scores(nlp):
    examples = []
    for text, label in toy_examples(3, seed=2):
        ref = nlp.make_doc(text)
        ref.cats = {k: float(k == label) for k in LABELS}
        examples.append(Example(nlp.make_doc(text), ref))
    scores = nlp.evaluate(examples)
    assert 0.0 <= scores["cats_macro_f"] <= 1.0
    assert set(scores["cats_f_per_type"]) == set(LABELS)
    # macro-F agrees with scikit-learn on the same predictions
    from sklearn.metrics import f1_score

    pred = [nlp(e.reference.text)._.emotion for e in examples]
    gold = [max(e.reference.cats, key=e.reference.cats.get) for e in examples]
    assert scores["cats_macro_f"] == pytest.approx(
        f1_score(gold, pred, labels=list(LABELS), average="macro", zero_division=0), abs=1e-6
    )


def test_evaluate_with_a_cats_prefix_scores_the_prefixed_keys(trained_pipeline):
    nlp = classifier(trained_pipeline, cats_prefix="emotion_")
    plain = classifier(trained_pipeline)
    examples, plain_examples = [], []
    for text, label in toy_examples(3, seed=2):
        for pipeline, out, prefix in ((nlp, examples, "emotion_"), (plain, plain_examples, "")):
            ref = pipeline.make_doc(text)
            ref.cats = {prefix + k: float(k == label) for k in LABELS}
            out.append(Example(pipeline.make_doc(text), ref))
    scores = nlp.evaluate(examples)
    assert set(scores["cats_f_per_type"]) == {"emotion_" + k for k in LABELS}
    assert scores["cats_macro_f"] == pytest.approx(plain.evaluate(plain_examples)["cats_macro_f"])


def test_training_a_pipeline_that_contains_the_component_leaves_it_as_it_is(trained_pipeline):
    """emotion_classifier is frozen: nlp.update runs, reports a zero loss for it and changes no score."""
    nlp = classifier(trained_pipeline)
    before = nlp("i am so angry").cats
    doc = nlp.make_doc("i am so angry")
    examples = [Example.from_dict(doc, {"cats": {k: float(k == "anger") for k in LABELS}})]
    losses = nlp.update(examples)
    assert losses["emotion_classifier"] == 0.0
    assert nlp("i am so angry").cats == before
    with pytest.raises(TypeError):
        nlp.get_pipe("emotion_classifier").update(["not an Example"])


def test_saved_pipeline_loads_without_importing_the_package(nlp, tmp_path):
    """spacy.load finds the factory through the spacy_factories entry point."""
    nlp.to_disk(tmp_path / "saved")
    code = (
        "import json, spacy\n"
        f"nlp = spacy.load({str(tmp_path / 'saved')!r})\n"
        "doc = nlp('i am so happy')\n"
        "print(json.dumps({'emotion': doc._.emotion}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1])["emotion"] in LABELS
