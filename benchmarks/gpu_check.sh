#!/usr/bin/env bash
# One command for a lent GPU machine: build the extension for its GPU, run the GPU tests and
# whole-model parity on CUDA, then `fastresnet bench` ResNet-50 in float16 and bfloat16 at
# batch 1, 32 and 256 against eager and torch.compile; a summary with each step's status and
# time comes out, in a few files (the device tool brings back at most 8).
#
#   bash benchmarks/gpu_check.sh [--dry-run] [--steps LIST] OUTDIR
#
# OUTDIR gets summary.md (read this first), summary.json, report.md and results.json (the
# bench runs), parity.md (verify) and logs.tar.gz (every log, the junit XML files, each bench
# run's own report and plot, the Triton autotune choices). The summary is rewritten after
# every step, so a run cut short still says how far it got.
#
# Each step runs under its own time limit (`timeout`) and inside one overall budget
# (TOTAL_BUDGET_S, 540 s: the device tool's 600 s per command less a margin); a step that
# fails or runs out of its time is recorded and the next one starts; a step that no longer
# fits the budget is not started and is reported as out-of-time. The exit status is 0 when no
# step failed or ran out of its time. TERM or INT stops the running steps and writes the summary.
#
# --dry-run (or GPU_CHECK_DRY_RUN=1) runs the same steps on the CPU, small: ResNet-18 at
# 32x32, batch 1 and 2, 2 rounds, float32, a few fast tests, no build unless --steps names it;
# it tests this script's plumbing without a GPU (tests/test_gpu_check.py runs it).
# --steps takes a comma-separated subset of: env,build,extension,gpu-tests,parity,bench,gpu-models.
# Every setting below can be overridden from the environment (e.g. BENCH_DTYPES=bfloat16).

set -uo pipefail

# ---- The backend names the script uses, and the bench candidates built from them.
: "${CUDA_CPP_BACKEND:=cpp-cuda}"  # the fastresnet backend holding the CUDA C++ kernels
: "${CPU_CPP_BACKEND:=cpp-cpu}"    # ... and the C++ CPU kernels, which stand in for it in a dry run
: "${TRITON_BACKEND:=triton}"      # the fastresnet backend holding the Triton kernels
: "${BENCH_CANDIDATES_BATCH1:=torch-compile-reduce-overhead}"  # candidates at batch 1 only

ALL_STEPS="env,build,extension,gpu-tests,parity,bench,gpu-models"

usage() {
    cat <<EOF
usage: bash benchmarks/gpu_check.sh [--dry-run] [--steps LIST] OUTDIR

Builds the extension for this machine's GPU, runs the GPU tests, whole-model parity on CUDA
and the ResNet-50 bench, and writes summary.md, summary.json, report.md, results.json,
parity.md and logs.tar.gz into OUTDIR (see the comment at the top of this script).

  --dry-run     the same steps on the CPU with small shapes (tests the script, needs no GPU)
  --steps LIST  comma-separated subset of: $ALL_STEPS
EOF
}

DRY_RUN="${GPU_CHECK_DRY_RUN:-0}"
STEPS=""
OUTDIR=""
while (($#)); do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --steps) [[ $# -ge 2 ]] || { usage >&2; echo "error: --steps needs a list" >&2; exit 2; }; STEPS="$2"; shift ;;
        --steps=*) STEPS="${1#--steps=}" ;;
        -h | --help) usage; exit 0 ;;
        -*) usage >&2; echo "error: unknown option $1" >&2; exit 2 ;;
        *) [[ -z "$OUTDIR" ]] || { usage >&2; echo "error: one OUTDIR only (got $OUTDIR and $1)" >&2; exit 2; }; OUTDIR="$1" ;;
    esac
    shift
done
if [[ -z "$OUTDIR" ]]; then
    usage >&2
    echo "error: OUTDIR is missing" >&2
    exit 2
fi
for step in ${STEPS//,/ }; do
    [[ ",$ALL_STEPS," == *",$step,"* ]] || { usage >&2; echo "error: unknown step $step" >&2; exit 2; }
done
if [[ -z "$STEPS" ]]; then
    STEPS="$ALL_STEPS"
    [[ "$DRY_RUN" == 1 ]] && STEPS="${STEPS/build,/}"  # a full build takes minutes of a small machine
fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 1
mkdir -p "$OUTDIR" && OUTDIR="$(cd "$OUTDIR" && pwd)" || { echo "error: cannot create $OUTDIR" >&2; exit 2; }
: "${PYTHON:=python3}"
# The steps' files; a temporary folder (removed at the end: logs.tar.gz holds all of it) unless
# GPU_CHECK_WORK names one to keep.
WORK="${GPU_CHECK_WORK:-}"
[[ -n "$WORK" ]] || WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")" TEMP_WORK=1
mkdir -p "$WORK"/{steps,logs,junit,parity,bench,cache,running,scripts}
NPROC="$(nproc 2>/dev/null || echo 2)"

# ---- Budgets (seconds). The checks and parity run side by side; everything else in turn.
: "${TOTAL_BUDGET_S:=540}"         # the whole run, summary included
: "${RESERVE_S:=15}"               # kept back for the summary and the tarball
: "${ENV_BUDGET_S:=60}"
: "${BUILD_BUDGET_S:=180}"
: "${EXTENSION_BUDGET_S:=45}"
: "${TESTS_BUDGET_S:=180}"
: "${PARITY_BUDGET_S:=150}"
: "${BENCH_RUN_BUDGET_S:=150}"     # each (dtype, batch) run
: "${BENCH_RUN_MIN_S:=60}"         # a run with less time left is skipped
: "${GPU_MODELS_BUDGET_S:=240}"
: "${GPU_MODELS_MIN_S:=120}"
: "${MIN_STEP_S:=15}"
: "${TEST_TIMEOUT_S:=150}"         # per test, with pytest-timeout where it is installed

if [[ "$DRY_RUN" == 1 ]]; then
    DEVICE=cpu
    CPP_BACKEND=$CPU_CPP_BACKEND
    : "${BENCH_MODEL:=resnet18}" "${BENCH_DTYPES:=float32}" "${BENCH_BATCHES:=1 2}" "${BENCH_IMAGE:=32}"
    : "${BENCH_REPEATS:=2}" "${BENCH_WARMUP:=1}"
    # max-autotune compiles for minutes on a small CPU: out of the plumbing test.
    : "${BENCH_DROP:=torch-compile-max-autotune}"
    : "${PARITY_DTYPES:=float32}" "${PARITY_MODELS:=resnet18}" "${PARITY_IMAGE:=32}" "${PARITY_ARGS:=--no-digits}"
    : "${PARITY_THREADS:=1}"
    # Tests that neither compile nor interpret kernels: the plumbing, not the kernels.
    : "${TESTS_K:=pinned_config or config_key or cache_round_trip or of_the_cpp_schemas or say_why}"
    : "${TEST_WORKERS:=0}"
else
    DEVICE=cuda
    CPP_BACKEND=$CUDA_CPP_BACKEND
    : "${BENCH_MODEL:=resnet50}" "${BENCH_DTYPES:=float16 bfloat16}" "${BENCH_BATCHES:=1 256 32}" "${BENCH_IMAGE:=224}"
    : "${BENCH_REPEATS:=20}" "${BENCH_WARMUP:=5}" "${BENCH_DROP:=}"
    : "${PARITY_DTYPES:=float32 float16 bfloat16}" "${PARITY_MODELS:=resnet18,resnet50}" "${PARITY_IMAGE:=64}"
    : "${PARITY_ARGS:=}" "${PARITY_THREADS:=2}"
    : "${TESTS_K:=}"
    : "${TEST_WORKERS:=$((NPROC >= 16 ? 8 : NPROC / 2))}"
fi
: "${GPU_TEST_FILES:=tests/test_triton.py tests/test_cuda_backend.py}"
# The bench candidates (fastresnet bench --backends) at every batch.
: "${BENCH_CANDIDATES:=eager eager-channels-last torch-compile-max-autotune fastresnet fastresnet-$TRITON_BACKEND fastresnet-$CPP_BACKEND}"
: "${GPU_MODELS_FILES:=benchmarks/test_gpu_models.py}"
# Triton compiles for the GPU (on a CPU the bench reports it unavailable, as it would be for a
# user: its interpreter is for tests, which set it themselves); no backend is forced or pinned.
unset TRITON_INTERPRET FASTRESNET_BACKEND FASTRESNET_DISABLE_TRITON FASTRESNET_TRITON_CONFIG
export PYTHONUNBUFFERED=1 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
# The tests' and parity's Triton autotune choices (made side by side, so not for timing);
# each bench run tunes afresh into its own folder, for its own batch size.
export FASTRESNET_CACHE_DIR="$WORK/cache/checks"

START=$(date +%s)
DEADLINE=$((START + TOTAL_BUDGET_S))
SEQ=0
cat >"$WORK/meta.env" <<EOF
mode=$([[ "$DRY_RUN" == 1 ]] && echo dry-run || echo gpu)
device=$DEVICE
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
total_budget_s=$TOTAL_BUDGET_S
steps=$STEPS
cpp_backend=$CPP_BACKEND
bench=$BENCH_MODEL ${BENCH_DTYPES// /,} batches ${BENCH_BATCHES// /,} image $BENCH_IMAGE repeats $BENCH_REPEATS
work=$WORK
EOF

log() { printf '[%4ds] %s\n' "$(($(date +%s) - START))" "$*"; }
selected() { [[ ",$STEPS," == *",$1,"* ]]; }
csv() { local IFS=,; echo "$*"; }
without() {  # the words of $1 that are not in $2
    local word out=()
    for word in $1; do [[ " $2 " == *" $word "* ]] || out+=("$word"); done
    echo "${out[*]}"
}

summarize() {
    echo "elapsed_s=$(($(date +%s) - START))" >>"$WORK/meta.env"
    "$PYTHON" "$REPO/benchmarks/gpu_check_summary.py" "$WORK" "$OUTDIR" >>"$WORK/logs/summary.log" 2>&1 \
        || log "warning: the summary could not be written (see logs/summary.log)"
}

# grant WANTED [MINIMUM]: the seconds a step may take now (0: it no longer fits).
grant() {
    local want=$1 min=${2:-$MIN_STEP_S} left=$((DEADLINE - $(date +%s) - RESERVE_S))
    if ((left < min)); then echo 0; elif ((want < left)); then echo "$want"; else echo "$left"; fi
}

# record SEQ NAME STATUS RC SECONDS BUDGET LOG NOTE
record() {
    local note="${8//$'\t'/ }"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "${note//$'\n'/ }" \
        >"$WORK/steps/$(printf %03d "$1")-$2.tsv"
    log "$2: $3${4:+ (rc $4)} in ${5}s of ${6}s${8:+: ${8:0:200}}"
}

# run_step SEQ NAME BUDGET NOTE -- COMMAND...: the command under `timeout`, output to logs/NAME.log.
run_step() {
    local seq=$1 name=$2 budget=$3 note=$4 rc status t0
    shift 5
    local logfile="logs/$name.log"
    t0=$(date +%s)
    {
        echo "# $(date -u +%FT%TZ) budget ${budget}s"
        printf '#'; printf ' %q' "$@"; echo
    } >"$WORK/$logfile"
    # `timeout` runs the command in a process group of its own, which it stops at the limit;
    # its id is kept while it runs, so that an interrupted script can stop it too.
    timeout --kill-after=10 "$budget" "$@" >>"$WORK/$logfile" 2>&1 &
    local pid=$!
    echo "$pid" >"$WORK/running/$name.pid"
    wait "$pid"
    rc=$?
    rm -f "$WORK/running/$name.pid"
    case $rc in
        0) status=passed ;;
        124 | 137) status=timeout; note="ran out of its ${budget}s${note:+; $note}" ;;
        130 | 143) status=interrupted ;;
        *) status=failed ;;
    esac
    record "$seq" "$name" "$status" "$rc" "$(($(date +%s) - t0))" "$budget" "$logfile" "$note"
    return $rc
}

skip() {  # skip SEQ NAME WHY [STATUS]
    record "$1" "$2" "${4:-skipped}" "" 0 0 "" "$3"
}
out_of_time() {  # out_of_time SEQ NAME
    skip "$1" "$2" "not enough time left ($((DEADLINE - $(date +%s)))s of the ${TOTAL_BUDGET_S}s budget)" out-of-time
}

FINISHED=0
finish() {
    ((FINISHED)) && return
    FINISHED=1
    summarize
    log "wrote $(cd "$OUTDIR" && ls | tr '\n' ' ')into $OUTDIR"
    if [[ -n "${TEMP_WORK:-}" && -f "$OUTDIR/logs.tar.gz" ]]; then
        rm -rf "$WORK"
    else
        log "the steps' files are in $WORK"
    fi
    [[ -f "$OUTDIR/summary.md" ]] && cat "$OUTDIR/summary.md"  # last: the end of the output is what a device call shows
}
on_signal() {
    trap - TERM INT
    log "interrupted: stopping the steps still running"
    local file
    for file in "$WORK"/running/*.pid; do
        [[ -e "$file" ]] && kill -TERM -- "-$(cat "$file")" 2>/dev/null
    done
    local i
    for i in {1..20}; do  # up to 10 s for the steps to record how they ended
        [[ -z "$(jobs -rp)" ]] && break
        sleep 0.5
    done
    finish
    exit 143
}
trap on_signal TERM INT
trap finish EXIT
# Every step runs in the background and is waited for: bash runs a trap only between commands,
# and `wait` is one that a signal interrupts at once.
in_background() { "$@" & wait $!; }

# Checks a step's budget and the selection; `maybe NAME WANTED [MIN]` sets BUDGET and SEQ, or
# records the skip and returns 1.
maybe() {
    SEQ=$((SEQ + 1))
    if ! selected "$1"; then
        skip "$SEQ" "$1" "not selected (--steps $STEPS)"
        return 1
    fi
    BUDGET=$(grant "$2" "${3:-$MIN_STEP_S}")
    if ((BUDGET == 0)); then
        out_of_time "$SEQ" "$1"
        return 1
    fi
}

log "gpu_check: mode $(sed -n 's/^mode=//p' "$WORK/meta.env"), steps $STEPS; work in $WORK; python $PYTHON"

# ---- 1. env: the machine, the versions, and every name this script uses checked against the package.
if maybe env "$ENV_BUDGET_S"; then
    {
        echo "## nproc: $NPROC; $(uname -a)"
        command -v nvidia-smi >/dev/null && nvidia-smi || echo "no nvidia-smi"
        command -v nvcc >/dev/null && nvcc --version || echo "no nvcc on PATH"
    } >"$WORK/logs/machine.log" 2>&1
    cat >"$WORK/scripts/env.py" <<'EOF'
import json, os, platform, shutil, subprocess, sys

out, backend_names, candidates, device = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4]
import torch, torchvision, triton

env = {
    "python": platform.python_version(), "executable": sys.executable, "torch": torch.__version__,
    "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "triton": triton.__version__,
    "torchvision": torchvision.__version__, "cpus": os.cpu_count(), "cuda_available": torch.cuda.is_available(),
    "gpu": None, "capability": None, "driver": None, "nvcc": None,
}
if torch.cuda.is_available():
    env["gpu"] = torch.cuda.get_device_name()
    env["capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
    env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
if shutil.which("nvidia-smi"):
    query = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True)
    env["driver"] = query.stdout.strip() or None
if shutil.which("nvcc"):
    version = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout
    env["nvcc"] = version.strip().splitlines()[-1] if version.strip() else None
for plugin in ("xdist", "pytest_timeout", "sklearn", "matplotlib"):
    try:
        __import__(plugin)
        env[plugin] = True
    except ImportError:
        env[plugin] = False
print(json.dumps(env, indent=1))
with open(out, "w") as f:
    json.dump(env, f, indent=1)

from fastresnet import backends
from fastresnet.bench import peers

problems = [f"backend {b!r} is not one of {sorted(backends.BACKENDS)}" for b in backend_names if b not in backends.BACKENDS]
for c in candidates:
    try:
        peers.check_candidate_name(c)
    except ValueError as error:
        problems.append(str(error))
if device == "cuda" and not torch.cuda.is_available():
    problems.append("CUDA is not available")
sys.exit("\n".join(problems) or None)
EOF
    in_background run_step "$SEQ" env "$BUDGET" "" -- "$PYTHON" "$WORK/scripts/env.py" "$WORK/env.json" \
        "$CPP_BACKEND $TRITON_BACKEND" "$BENCH_CANDIDATES $BENCH_CANDIDATES_BATCH1" "$DEVICE"
fi
summarize

# ---- 2. build: the extension for this GPU, with every core, in place (no network, no isolation).
if maybe build "$BUILD_BUDGET_S" 60; then
    ARCH="${TORCH_CUDA_ARCH_LIST:-$("$PYTHON" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())" 2>/dev/null)}"
    ARCH="${ARCH:-9.0}"  # no GPU visible: the H200's
    in_background run_step "$SEQ" build "$BUDGET" "TORCH_CUDA_ARCH_LIST=$ARCH, MAX_JOBS=$NPROC" -- \
        env MAX_JOBS="$NPROC" TORCH_CUDA_ARCH_LIST="$ARCH" "$PYTHON" setup.py build_ext --inplace
fi
summarize

# ---- 3. extension: it loads, with the kernels for the device.
if maybe extension "$EXTENSION_BUDGET_S"; then
    cat >"$WORK/scripts/extension.py" <<'EOF'
import sys

import fastresnet
from fastresnet import _ext

device, cpp = sys.argv[1], sys.argv[2]
print("fastresnet", fastresnet.__file__, "extension:", _ext.build_info() or _ext.load_error())
for status in fastresnet.available_backends(device):
    print(status)
from fastresnet.backends import BACKENDS
from fastresnet.ops import kernel_missing
BACKENDS[cpp].ops()
missing = kernel_missing(BACKENDS[cpp].op_prefix, device.upper())  # asked of the dispatcher
unavailable = [s for s in fastresnet.available_backends(device) if s.name == cpp and not s.available]
if missing or unavailable:
    sys.exit(f"the extension lacks {device} kernels {missing}, or {cpp} cannot run: {unavailable}")
EOF
    in_background run_step "$SEQ" extension "$BUDGET" "" -- "$PYTHON" "$WORK/scripts/extension.py" "$DEVICE" \
        "$CPP_BACKEND"
fi
summarize

# ---- 4 and 5, side by side: the GPU tests, and whole-model parity (verify) on the device.
# -v: one line per test, so a log cut short by the time limit still says which tests ran.
PYTEST_ARGS=(-v -rfEs -p no:cacheprovider)
if [[ "$TEST_WORKERS" != 0 ]] && "$PYTHON" -c "import xdist" 2>/dev/null; then
    PYTEST_ARGS+=(-n "$TEST_WORKERS")
fi
if "$PYTHON" -c "import pytest_timeout" 2>/dev/null; then
    PYTEST_ARGS+=(--timeout "$TEST_TIMEOUT_S")
fi
[[ -n "$TESTS_K" ]] && PYTEST_ARGS+=(-k "$TESTS_K")

TESTS_PID=""
if maybe gpu-tests "$TESTS_BUDGET_S"; then
    # shellcheck disable=SC2086  # the file list is words
    run_step "$SEQ" gpu-tests "$BUDGET" "${PYTEST_ARGS[*]:4}" -- \
        "$PYTHON" -m pytest $GPU_TEST_FILES "${PYTEST_ARGS[@]}" --junitxml="$WORK/junit/gpu-tests.xml" &
    TESTS_PID=$!
fi

parity_step() {  # in the background: one verify per dtype, with Triton and with it disabled
    local seq=$1 budget=$2 t0 pids=() names=() rc=0 failed=() dtype name i
    t0=$(date +%s)
    for dtype in $PARITY_DTYPES; do
        for variant in default no-triton; do
            name="$dtype-$variant"
            local backends_arg="fastresnet,fastresnet-$CPP_BACKEND" disable=""
            [[ "$variant" == no-triton ]] && backends_arg=fastresnet disable=1
            # shellcheck disable=SC2086  # PARITY_ARGS is words
            env ${disable:+FASTRESNET_DISABLE_TRITON=1} timeout --kill-after=10 "$budget" \
                "$PYTHON" -m fastresnet verify --device "$DEVICE" --dtype "$dtype" --models "$PARITY_MODELS" \
                --image-size "$PARITY_IMAGE" --backends "$backends_arg" --threads "$PARITY_THREADS" $PARITY_ARGS \
                --out "$WORK/parity/$name" >"$WORK/logs/parity-$name.log" 2>&1 </dev/null &
            pids+=($!) names+=("$name")
            echo "$!" >"$WORK/running/parity-$name.pid"
        done
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { rc=$?; failed+=("${names[$i]} (rc $rc)"); }
        rm -f "$WORK/running/parity-${names[$i]}.pid"
    done
    local status=passed note="${#names[@]} verify runs (${names[*]}); FASTRESNET_DISABLE_TRITON=1 in the no-triton ones"
    if ((${#failed[@]})); then
        status=failed note="$note; failed: ${failed[*]}"
        [[ "${failed[*]}" == *"(rc 124)"* || "${failed[*]}" == *"(rc 137)"* ]] && status=timeout
    fi
    record "$seq" parity "$status" "$rc" "$(($(date +%s) - t0))" "$budget" "logs/parity-*.log" "$note"
}

PARITY_PID=""
if maybe parity "$PARITY_BUDGET_S"; then
    parity_step "$SEQ" "$BUDGET" &
    PARITY_PID=$!
fi
[[ -n "$TESTS_PID" ]] && wait "$TESTS_PID"
[[ -n "$PARITY_PID" ]] && wait "$PARITY_PID"
summarize

# ---- 6. bench: one `fastresnet bench` per (dtype, batch), so each has its own time limit and
# a slow compile costs only its own run; every candidate of a run is timed interleaved.
SEQ=$((SEQ + 1))
if ! selected bench; then
    skip "$SEQ" bench "not selected (--steps $STEPS)"
else
    for dtype in $BENCH_DTYPES; do
        for batch in $BENCH_BATCHES; do
            name="bench-$dtype-b$batch"
            SEQ=$((SEQ + 1))
            candidates="$BENCH_CANDIDATES"
            [[ "$batch" == 1 ]] && candidates="$candidates $BENCH_CANDIDATES_BATCH1"
            candidates="$(without "$candidates" "$BENCH_DROP")"
            BUDGET=$(grant "$BENCH_RUN_BUDGET_S" "$BENCH_RUN_MIN_S")
            if ((BUDGET == 0)); then
                out_of_time "$SEQ" "$name"
                continue
            fi
            # shellcheck disable=SC2046,SC2086
            in_background run_step "$SEQ" "$name" "$BUDGET" "$(csv $candidates)" -- \
                env FASTRESNET_CACHE_DIR="$WORK/bench/$name/autotune" \
                "$PYTHON" -m fastresnet bench --device "$DEVICE" --models "$BENCH_MODEL" --dtype "$dtype" \
                --batch-sizes "$batch" --image-size "$BENCH_IMAGE" --repeats "$BENCH_REPEATS" --warmup "$BENCH_WARMUP" \
                --backends "$(csv $candidates)" --out "$WORK/bench/$name"
            summarize
        done
    done
fi

# ---- 7. gpu-models: benchmarks/test_gpu_models.py (it repeats part of the bench, with its own
# torch.compile per batch: last, in whatever time is left).
if maybe gpu-models "$GPU_MODELS_BUDGET_S" "$GPU_MODELS_MIN_S"; then
    # shellcheck disable=SC2086
    in_background run_step "$SEQ" gpu-models "$BUDGET" "" -- \
        "$PYTHON" -m pytest $GPU_MODELS_FILES -v -rfEs -p no:cacheprovider --junitxml="$WORK/junit/gpu-models.xml"
fi

FAILED=$(cat "$WORK"/steps/*.tsv 2>/dev/null | awk -F'\t' '$3 == "failed" || $3 == "timeout"' | wc -l)
finish
exit $((FAILED > 0))
