"""Tiny, randomly initialised transformers and toy emotion data for offline tests.

Nothing here downloads: vocabularies are written or trained on the toy texts,
and models are built from small configs.
"""

import json
import random
from pathlib import Path
from typing import Dict, List, Tuple

from spacy_emotion.labels import LABELS

KEYWORDS: Dict[str, List[str]] = {
    "sadness": ["sad", "lonely", "miserable", "gloomy"],
    "joy": ["happy", "glad", "cheerful", "delighted"],
    "love": ["love", "adore", "tender", "caring"],
    "anger": ["angry", "furious", "mad", "annoyed"],
    "fear": ["scared", "afraid", "terrified", "nervous"],
    "surprise": ["surprised", "amazed", "shocked", "astonished"],
}
FILLER = ["i", "feel", "so", "today", "really", "very", "am", "this", "morning", "and", "quite", "at", "work", "now"]


def toy_examples(n_per_label: int, seed: int = 0) -> List[Tuple[str, str]]:
    """Short texts whose emotion is given away by a keyword: (text, label) pairs."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n_per_label):
        for label in LABELS:
            words = rng.sample(FILLER, 4) + [rng.choice(KEYWORDS[label])]
            rng.shuffle(words)
            examples.append((" ".join(words), label))
    rng.shuffle(examples)
    return examples


def toy_training_examples(nlp, n_per_label: int, seed: int = 0) -> list:
    """`toy_examples` as spaCy Examples with one-hot `cats`, made with `nlp`'s tokenizer."""
    from spacy.training import Example

    return [
        Example.from_dict(nlp.make_doc(t), {"cats": {k: float(k == label) for k in LABELS}})
        for t, label in toy_examples(n_per_label, seed)
    ]


def _words() -> List[str]:
    return sorted(set(FILLER) | {w for ws in KEYWORDS.values() for w in ws})


def _bert_tokenizer(path: Path, no_token_type_ids: bool):
    from transformers import BertTokenizerFast

    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?';:-")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars] + _words()
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf8")
    kwargs = {"model_input_names": ["input_ids", "attention_mask"]} if no_token_type_ids else {}
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True, model_max_length=512, **kwargs)
    tok.save_pretrained(str(path))
    return tok


def _bpe_tokenizer(path: Path, roberta: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, RobertaTokenizerFast

    if roberta:
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        cls, sep, pad, unk, mask = "<s>", "</s>", "<pad>", "<unk>", "<mask>"
    else:
        specials = ["[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]"]
        cls, sep, pad, unk, mask = "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"
    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    texts = [t for t, _ in toy_examples(10)] + [" ".join(_words())]
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )
    common = dict(
        tokenizer_object=tok,
        bos_token=cls,
        eos_token=sep,
        cls_token=cls,
        sep_token=sep,
        pad_token=pad,
        unk_token=unk,
        mask_token=mask,
        model_max_length=512,
        model_input_names=["input_ids", "attention_mask"],
    )
    fast = RobertaTokenizerFast(**common) if roberta else PreTrainedTokenizerFast(**common)
    path.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(path))
    return fast


ARCHITECTURES = ("bert", "distilbert", "roberta", "modernbert")


CLASSIFIER_INIT_RANGE = 0.2
"""initializer_range of a sequence-classification checkpoint made by make_backbone."""


def make_backbone(path: Path, arch: str = "bert", num_labels: int = 0, id2label: Dict[int, str] = None) -> Path:
    """Save a tiny randomly initialised model of `arch` with its tokenizer in `path`.

    num_labels (int): 0 saves a bare encoder (a backbone); >0 a sequence-
        classification head with `id2label`.
    RETURNS (Path): the folder.
    """
    import torch
    from transformers import (
        AutoModel,
        AutoModelForSequenceClassification,
        BertConfig,
        DistilBertConfig,
        ModernBertConfig,
        RobertaConfig,
    )

    torch.manual_seed(0)
    path = Path(path)
    if arch in ("bert", "distilbert"):
        tok = _bert_tokenizer(path, no_token_type_ids=arch == "distilbert")
    else:
        tok = _bpe_tokenizer(path, roberta=arch == "roberta")
    vocab = len(tok)
    if arch == "bert":
        config = BertConfig(
            vocab_size=vocab,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=512,
        )
    elif arch == "distilbert":
        config = DistilBertConfig(
            vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=512
        )
    elif arch == "roberta":
        config = RobertaConfig(
            vocab_size=vocab,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=514,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.cls_token_id,
            eos_token_id=tok.sep_token_id,
        )
    elif arch == "modernbert":
        config = ModernBertConfig(
            vocab_size=vocab,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=512,
            pad_token_id=tok.pad_token_id,
            cls_token_id=tok.cls_token_id,
            sep_token_id=tok.sep_token_id,
            bos_token_id=tok.cls_token_id,
            eos_token_id=tok.sep_token_id,
            global_attn_every_n_layers=2,
            local_attention=64,
            reference_compile=False,
        )
    else:
        raise ValueError(arch)
    if num_labels:
        # with the default initialisation (std 0.02) a tiny random classifier gives every
        # text nearly the same, nearly uniform scores, and a comparison of two settings
        # passes whatever either computes: wider weights make the scores differ by text
        config.initializer_range = CLASSIFIER_INIT_RANGE
        config.num_labels = num_labels
        config.id2label = dict(id2label or {})
        config.label2id = {v: k for k, v in config.id2label.items()}
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModel.from_config(config)
    model.save_pretrained(str(path))
    return path


def write_txt_split(path: Path, examples: List[Tuple[str, str]]) -> Path:
    path.write_text("".join(f"{t};{l}\n" for t, l in examples), encoding="utf8")
    return path


def write_jsonl_split(path: Path, examples: List[Tuple[str, str]]) -> Path:
    path.write_text(
        "".join(json.dumps({"text": t, "label": LABELS.index(l)}) + "\n" for t, l in examples), encoding="utf8"
    )
    return path


def write_toy_folder(folder: Path, n_train: int = 12, n_eval: int = 3, fmt: str = "txt") -> Path:
    """A local dataset folder with train/validation/test in the given format."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = {"txt": write_txt_split, "jsonl": write_jsonl_split}[fmt]
    for i, (split, n) in enumerate((("train", n_train), ("validation", n_eval), ("test", n_eval))):
        writer(folder / f"{split}.{fmt}", toy_examples(n, seed=i))
    return folder
