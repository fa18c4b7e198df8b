"""GPU session, last step: one results.json / results.md from bench.py's two runs.

    python benchmarks/gpu/merge.py --infer OUT/infer/results.json --train OUT/train/results.json --out OUT

run.sh runs bench.py twice (inference rows with --train-steps 0, then the
training rows with --systems "" --variants none) so that a run cut off by its
time limit during training keeps the inference results. This joins them
(either may be missing), recomputes the headline with bench.py's own
functions, and marks every results file as measured on a randomly initialised
backbone (speed and memory only).
"""

import argparse
import copy
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import bench  # noqa: E402
from prep import NOTE  # noqa: E402


def load(path: str):
    p = Path(path)
    return json.loads(p.read_text(encoding="utf8")) if p.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--infer", required=True)
    parser.add_argument("--train", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    infer, train = load(args.infer), load(args.train)
    if infer is None and train is None:
        raise SystemExit("[merge] neither bench run wrote results.json")
    merged = copy.deepcopy(infer or train)
    merged.setdefault("systems", {})
    merged.setdefault("variants", {})
    merged["training"] = (train or {}).get("training", {})
    meta = merged["meta"]
    if infer and train:
        for key, value in train["meta"].items():
            if key.startswith("train_"):
                meta[key] = value
        meta["command"] = f"{infer['meta']['command']} ; {train['meta']['command']}"
        meta["wall_s"] = infer["meta"].get("wall_s", 0) + train["meta"].get("wall_s", 0)
    meta["parts"] = {"inference": infer is not None, "training": train is not None}
    meta["note"] = NOTE
    merged["headline"] = bench.headline(merged)
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(merged, indent=2), encoding="utf8")
    banner = f"**{NOTE}**\n\n"
    (out / "results.md").write_text(banner + bench.markdown(merged), encoding="utf8")
    for part in (args.infer, args.train):
        md = Path(part).with_suffix(".md")
        if md.is_file() and NOTE not in md.read_text(encoding="utf8"):
            md.write_text(banner + md.read_text(encoding="utf8"), encoding="utf8")
    print(
        f"[merge] {out / 'results.json'}, {out / 'results.md'} (inference: {infer is not None}, training: "
        f"{train is not None})"
    )
    print(banner + bench.markdown(merged))


if __name__ == "__main__":
    main()
