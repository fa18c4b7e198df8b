#!/usr/bin/env bash
# The ONE command of a GPU session, run THERE in the repo root with .gpu/ carried
# (built here by benchmarks/gpu/prepare.sh):
#
#   bash benchmarks/gpu/run.sh          # on the GPU machine: $OUT is set by the tool
#   bash benchmarks/gpu/run.sh --cpu    # here: the same steps on the CPU, tiny sizes, the local .venv
#
# Steps, each under its own `timeout` and within one overall budget
# (RUN_BUDGET seconds, default 540), each one run even when an earlier one failed:
#   install  the wheelhouse into /tmp/site (--cpu: a cp312 install check into a scratch folder)
#   env      nvidia-smi, versions, CUDA/CuPy/spaCy-on-GPU check, entry points  -> $OUT/env.txt
#   pytest   tests/test_gpu.py -ra
#   prep     a randomly initialised MiniLM-L6 (its carried config and tokenizer) and the corpus
#   train    configs/trf.cfg on it for TRAIN_STEPS steps on the GPU -> model-best (labels meaningless)
#   bench    bench.py --gpu, inference rows (systems and settings)   -> $OUT/infer/
#   bench    bench.py --gpu, training rows (fp32, fp16-mixed)         -> $OUT/train/
#   merge    one results.json / results.md                            -> $OUT/
# Everything printed goes to $OUT/run.log too (tee), so a run killed by the time
# limit still brings its log back. At most 8 files come back: run.log, env.txt,
# results.{json,md}, infer/results.{json,md}, train/results.{json,md}.
# Sizes can be changed from the command line, e.g. BENCH_STREAM=5000 bash benchmarks/gpu/run.sh
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
MODE=gpu
[ "${1:-}" = "--cpu" ] && MODE=cpu
OUT=${OUT:-/tmp/spacy-emotion-gpu-out}
mkdir -p "$OUT"
CARRY=$ROOT/.gpu
WORK=${WORK:-/tmp/spacy-emotion-gpu}
BUDGET=${RUN_BUDGET:-540}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ "$MODE" = gpu ]; then
    PY=${PY:-python3}
    SITE=/tmp/site
    GPU_ID=0
    GPU_FLAG=--gpu
    : "${TRAIN_STEPS:=150}" "${DEV_LIMIT:=1000}" "${CORPUS_LIMIT:=0}"
    : "${BENCH_REPEATS:=3}" "${BENCH_LATENCY:=100}" "${BENCH_STREAM:=10000}" "${BENCH_RSS_FROM:=2000}" "${BENCH_STREAM_C:=1000}"
    : "${BENCH_TEST_LIMIT:=0}" "${BENCH_TRAIN_STEPS:=30}" "${BENCH_TRAIN_WARMUP:=5}"
    : "${BENCH_SYSTEMS:=A-component,A-pipeline,B,C-batch64,C-default}" "${BENCH_VARIANTS:=}"   # empty: bench.py's GPU settings
    CAP_INSTALL=120 CAP_ENV=90 CAP_PYTEST=150 CAP_PREP=120 CAP_TRAIN=150 CAP_INFER=330 CAP_TRAINROWS=200
else
    PY=${PY:-$ROOT/.venv/bin/python}
    SITE=/tmp/spacy-emotion-cpu-site
    GPU_ID=-1
    GPU_FLAG=
    : "${TRAIN_STEPS:=4}" "${DEV_LIMIT:=20}" "${CORPUS_LIMIT:=100}"
    : "${BENCH_REPEATS:=1}" "${BENCH_LATENCY:=3}" "${BENCH_STREAM:=96}" "${BENCH_RSS_FROM:=32}" "${BENCH_STREAM_C:=16}"
    : "${BENCH_TEST_LIMIT:=48}" "${BENCH_TRAIN_STEPS:=3}" "${BENCH_TRAIN_WARMUP:=1}"
    : "${BENCH_SYSTEMS:=A-component,B,C-default}" "${BENCH_VARIANTS:=default}"   # few processes: < 3 min here
    CAP_INSTALL=120 CAP_ENV=90 CAP_PYTEST=120 CAP_PREP=120 CAP_TRAIN=120 CAP_INFER=300 CAP_TRAINROWS=200
fi

START=$SECONDS
SUMMARY=()

# step NAME CAP COMMAND...: run COMMAND under `timeout`, at most CAP seconds and
# what is left of the budget less RESERVE seconds kept for the steps after it
# (pytest gives way to the bench, the inference rows to the training rows;
# the steps the bench needs keep no reserve); skipped under MIN_STEP seconds
step() {
    local name=$1 cap=$2 reserve=${RESERVE:-0} min=${MIN_STEP:-15}
    shift 2
    local left=$(( BUDGET - (SECONDS - START) - reserve ))
    local limit=$(( cap < left ? cap : left ))
    if (( limit < min )); then
        echo "=== [$name] SKIPPED: ${left}s of the ${BUDGET}s budget left"
        SUMMARY+=("$name: skipped (no time left)")
        return 124
    fi
    echo "=== [$name] start at +$(( SECONDS - START ))s, limit ${limit}s: $*"
    local t0=$SECONDS rc
    timeout -k 10 "$limit" bash -c '"$@"' "$name" "$@"   # a function of this script too (export -f below)
    rc=$?
    local took=$(( SECONDS - t0 ))
    case $rc in
        0) SUMMARY+=("$name: ok (${took}s)") ;;
        124|137) SUMMARY+=("$name: TIMED OUT after ${took}s (limit ${limit}s)") ;;
        *) SUMMARY+=("$name: FAILED rc=$rc (${took}s)") ;;
    esac
    echo "=== [$name] rc=$rc in ${took}s"
    return $rc
}

install_wheels() {
    local wheels=("$CARRY"/wheels/*.whl)
    [ -e "${wheels[0]}" ] || { echo "no wheels in $CARRY/wheels: run benchmarks/gpu/prepare.sh here and carry .gpu"; return 1; }
    rm -rf "$SITE"
    if [ "$MODE" = gpu ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}"
    else
        # the local interpreter is 3.11: check that the cp312 wheelhouse installs (as pip would there) ...
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE-cp312" \
            --python-version 3.12 --implementation cp --abi cp312 --only-binary=:all: \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux1_x86_64 "${wheels[@]}" || return 1
        echo "cp312 wheelhouse installs: $(ls "$SITE-cp312" | grep -c dist-info) distributions in $SITE-cp312"
        rm -rf "$SITE-cp312"
        # ... and run with the pure-Python wheels (this repo's, for its entry points) in front of the .venv
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
            "$CARRY"/wheels/spacy_emotion-*.whl
    fi
    ls "$SITE" | grep dist-info
}

env_check() {
    set -o pipefail
    {
        echo "# GPU session environment, $(date -u '+%Y-%m-%d %H:%M UTC'), mode $MODE"
        echo "commit: $(git rev-parse --short HEAD 2>/dev/null || cat "$CARRY/PREPARED_AT")$(git diff --quiet 2>/dev/null || echo ' +dirty'); .gpu prepared at $(cat "$CARRY/PREPARED_AT" 2>/dev/null)"
        echo "uname: $(uname -a)"; echo "cpus: $(nproc)"; free -g 2>/dev/null | head -2
        echo "## nvidia-smi"
        nvidia-smi 2>&1 || echo "(no nvidia-smi)"
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv 2>&1 || true
        echo "## python: $PY, PYTHONPATH=$PYTHONPATH"
        "$PY" -m pip list 2>/dev/null
    } > "$OUT/env.txt" 2>&1
    "$PY" - "$MODE" <<'EOF' 2>&1 | tee -a "$OUT/env.txt"
import importlib.metadata as md, sys
gpu = sys.argv[1] == "gpu"
import numpy, torch
print(f"python {sys.version.split()[0]}, numpy {numpy.__version__}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"cuda available: {torch.cuda.is_available()}")
for name in ("spacy", "thinc", "spacy-transformers", "transformers", "tokenizers", "huggingface-hub", "pydantic",
             "blis", "cupy-cuda13x", "spacy-emotion"):
    try:
        print(f"  {name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name}: not installed")
import spacy, spacy_transformers  # noqa: F401
# found through the entry points of the installed wheel (spacy_emotion not imported yet)
mine = [f"{g}:{e.name}" for g in ("spacy_factories", "spacy_architectures", "spacy_loggers")
        for e in md.entry_points(group=g) if e.value.startswith("spacy_emotion")]
print("entry points:", ", ".join(mine))
assert spacy.registry.architectures.get("spacy_emotion.TransformerModel.v1").__module__ == "spacy_emotion.training.backbone"
assert spacy.blank("en").has_factory("emotion_classifier")
import spacy_emotion
print(f"spacy_emotion from {spacy_emotion.__file__}")
if gpu:
    print(f"GPU {torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
    import cupy
    x = cupy.arange(1000, dtype="float32")
    assert float((x @ x).get()) == float(sum(i * i for i in range(1000)))
    print(f"cupy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}: ok")
    spacy.require_gpu(0)
    from thinc.api import get_current_ops
    ops = get_current_ops()
    y = ops.gemm(ops.alloc2f(4, 8) + 1, ops.alloc2f(8, 2) + 1)
    assert type(ops).__name__ == "CupyOps" and float(y.sum()) == 64.0, ops
    print(f"spaCy on the GPU: {type(ops).__name__}, gemm ok")
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    print("torch bf16 matmul ok:", float((a @ a).float().abs().mean()) > 0)
print("env check: ok")
EOF
}

train_model() {
    rm -rf "$WORK/train"
    "$PY" -m spacy train configs/trf.cfg --output "$WORK/train" \
        --paths.train "$WORK/corpus/train.spacy" --paths.dev "$WORK/corpus/dev.spacy" \
        --paths.backbone "$WORK/minilm-random" --gpu-id "$GPU_ID" \
        --training.max_epochs 0 --training.max_steps "$TRAIN_STEPS" --training.eval_frequency "$TRAIN_STEPS" \
        --corpora.dev.limit "$DEV_LIMIT" --training.logger.every 25
}

bench() {  # bench OUTDIR ARGS...
    local out=$1
    shift
    local model=$WORK/train/model-best
    [ -d "$model" ] || model=$WORK/train/model-last
    "$PY" benchmarks/bench.py $GPU_FLAG --model "$model" --data "$CARRY/data" --train-corpus "$WORK/corpus" \
        --backbone "$WORK/minilm-random" --export-dir "$WORK/hf-export" --out "$out" --test-limit "$BENCH_TEST_LIMIT" "$@"
}

export MODE OUT CARRY WORK PY SITE GPU_ID GPU_FLAG TRAIN_STEPS DEV_LIMIT BENCH_TEST_LIMIT
export -f install_wheels env_check train_model bench

main() {
    echo "=== spacy-emotion GPU session script, mode $MODE, budget ${BUDGET}s, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null)"
    echo "=== NOTE: the MiniLM-L6 backbone is RANDOMLY INITIALISED here (config + tokenizer only): the trained model's"
    echo "===       labels and all accuracies are meaningless; the figures are speed and memory only."
    [ -d "$CARRY" ] || { echo "no $CARRY: run bash benchmarks/gpu/prepare.sh here first and carry .gpu"; exit 1; }
    mkdir -p "$WORK"
    RESERVE=0 step install "$CAP_INSTALL" install_wheels
    export PYTHONPATH=$ROOT:$SITE
    RESERVE=0 step env "$CAP_ENV" env_check
    RESERVE=330 step pytest "$CAP_PYTEST" "$PY" -m pytest tests/test_gpu.py -ra -p no:cacheprovider
    RESERVE=0 step prep "$CAP_PREP" "$PY" benchmarks/gpu/prep.py --minilm "$CARRY/minilm" --data "$CARRY/data" \
        --out "$WORK" --limit "$CORPUS_LIMIT"
    RESERVE=0 step train "$CAP_TRAIN" train_model
    local variants=()
    [ -n "$BENCH_VARIANTS" ] && variants=(--variants "$BENCH_VARIANTS")
    RESERVE=100 step bench-inference "$CAP_INFER" bench "$OUT/infer" --systems "$BENCH_SYSTEMS" "${variants[@]}" \
        --repeats "$BENCH_REPEATS" --latency "$BENCH_LATENCY" --stream "$BENCH_STREAM" --rss-from "$BENCH_RSS_FROM" \
        --stream-c "$BENCH_STREAM_C" --train-steps 0
    RESERVE=10 step bench-training "$CAP_TRAINROWS" bench "$OUT/train" --systems "" --variants none \
        --repeats 1 --latency 0 --stream 0 --train-steps "$BENCH_TRAIN_STEPS" --train-warmup "$BENCH_TRAIN_WARMUP"
    RESERVE=0 MIN_STEP=3 step merge 30 "$PY" benchmarks/gpu/merge.py --infer "$OUT/infer/results.json" \
        --train "$OUT/train/results.json" --out "$OUT"
    echo "=== summary (mode $MODE, $(( SECONDS - START ))s of ${BUDGET}s)"
    printf '  %s\n' "${SUMMARY[@]}"
    echo "  files: $(cd "$OUT" && find . -type f | sort | tr '\n' ' ')"
    echo "=== NOTE: randomly initialised backbone: speed and memory only"
}

main 2>&1 | tee -a "$OUT/run.log"
