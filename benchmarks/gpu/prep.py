"""GPU session, step "prep": a randomly initialised MiniLM-L6 and the spaCy corpus.

    python benchmarks/gpu/prep.py --minilm .gpu/minilm --data .gpu/data --out WORK [--limit N]

WORK/minilm-random: a BertModel built from the carried config.json of
all-MiniLM-L6-v2 (same layers, widths and vocabulary) with RANDOM weights
(seed 0), and the carried tokenizer files. The real weights (88 MB) don't
travel; for speed and memory the weights don't matter, for labels and
accuracy they do: figures measured on it are speed and memory only.
WORK/corpus: train.spacy, dev.spacy and test.spacy from the carried .jsonl
splits (spacy_emotion.training.corpus.convert; --limit N keeps N examples per split).
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
NOTE = (
    "RANDOM WEIGHTS: the MiniLM-L6 backbone here is randomly initialised (its config and tokenizer, not its "
    "trained weights), so labels and accuracy are meaningless; the figures are speed and memory only."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minilm", required=True, help="folder with MiniLM's config.json and tokenizer files")
    parser.add_argument("--data", required=True, help="folder with train/validation/test .jsonl")
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int, default=0, help="examples per split (0: all)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    started = time.perf_counter()
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(args.minilm)
    model = AutoModel.from_config(config)
    target = out / "minilm-random"
    if target.exists():
        shutil.rmtree(target)
    model.save_pretrained(str(target))
    for f in Path(args.minilm).iterdir():
        if f.is_file() and f.name != "config.json":
            shutil.copy2(f, target / f.name)
    (target / "RANDOM_INIT.txt").write_text(NOTE + "\n", encoding="utf8")
    tok = AutoTokenizer.from_pretrained(str(target))
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"[prep] {target}: {type(model).__name__} {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"vocab {config.vocab_size} (tokenizer {len(tok)}), {n_params / 1e6:.1f} M parameters, "
        f"{time.perf_counter() - started:.1f} s"
    )
    print(f"[prep] {NOTE}")

    from spacy_emotion.training.corpus import convert

    started = time.perf_counter()
    convert(out / "corpus", source=str(args.data), limit=args.limit)
    print(f"[prep] corpus {out / 'corpus'} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
