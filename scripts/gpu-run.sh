#!/usr/bin/env bash
# The GPU run, in one command, on a machine with no route to a package index.
#
#   scripts/gpu-run.sh OUT [--device cuda:0] [--profile gpu[,gradbench]] [--top-order 10] [--wheels DIR]
#                          [--python PY] [--problems LIST] [--cases EXPR]
#
# Uses the torch and JAX already installed for PY (default python3) and installs what the
# harness needs besides (autograd, numdifftools, array-api-compat, ...) from wheels in DIR
# (default: wheels/ beside this script's checkout), with --no-index, into a throwaway
# environment layered over PY's packages: PY's own environment is left as it was.
# Make DIR on a connected machine with the same Python version:
#
#   pip download --no-deps -d wheels autograd numdifftools array-api-compat
#
# Then, on DEVICE: the benchmark suite's PROFILE (a comma-separated list, e.g. gpu,gradbench:
# each row validated before it is timed; the device's copy bandwidth and card in the run;
# CUDA-event timings of the same calls beside torch's rows) and a summary of each, then
# validation of JAX (eager and jit) and torch in float32 and float64 on the default problems and
# orders, and order TOP (10) in float64. Benchmarks first: each step's file is written when the
# step ends, so a run cut short by a time limit still leaves what it finished. Into OUT:
#   <time>_<card>_<hash>.json                   each profile's saved run (pytest-benchmark's format)
#   summary.txt                                 python -m harness compare on each saved run
#   validation.json, validation-top-order.json the checks (python -m harness validate)
#   log.txt                                     everything printed
# `--device cpu --profile quick --top-order 3` runs the same steps on a CPU (as
# tests/scripts/test_gpu_run.py does). A smaller run of the same steps: --problems LIST validates
# only those problems (validate's -p), --cases EXPR benchmarks only the profile's cases whose
# names match EXPR (pytest's -k, e.g. "logistic"); both default to everything.
set -euo pipefail

usage() {
    echo "usage: $0 OUT [--device cuda:0] [--profile gpu[,gradbench]] [--top-order 10] [--wheels DIR] [--python PY]" \
        "[--problems LIST] [--cases EXPR]" >&2
    exit 2
}
[[ $# -ge 1 && $1 != -* ]] || usage
out=$1
shift
checkout=$(cd "$(dirname "$0")/.." && pwd)
device=cuda:0 profile=gpu top=10 wheels=$checkout/wheels python=python3
problems=() cases=()
while [[ $# -gt 0 ]]; do
    [[ $# -ge 2 ]] || usage
    case $1 in
        --device) device=$2 ;;
        --profile) profile=$2 ;;
        --top-order) top=$2 ;;
        --wheels) wheels=$2 ;;
        --python) python=$2 ;;
        --problems) problems=(-p "$2") ;;
        --cases) cases=(-k "$2") ;;
        *) usage ;;
    esac
    shift 2
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
exec > >(tee "$out/log.txt") 2>&1

# A virtual environment that sees PY's packages (pip and setuptools too) through a .pth file
# (--system-site-packages would show the base interpreter's, not those of a virtual
# environment PY may be in); without a pip of its own, which would bring an old setuptools.
env=$(mktemp -d "${TMPDIR:-/tmp}/gradient-harness-gpu-run.XXXXXX")
trap 'rm -rf "$env"' EXIT
"$python" -m venv --without-pip "$env"
site=$("$env/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
"$python" -c 'import site, sys; print("\n".join(p for p in sys.path if p.endswith("-packages")))' \
    >"$site/gpu-run-parent.pth"
mkdir -p "$wheels"
# setuptools builds the harness itself; --no-build-isolation uses the one PY has.
"$env/bin/python" -m pip install --quiet --no-index --find-links "$wheels" --no-build-isolation \
    "$checkout[all]"
run() { echo "+ $*"; "$@"; }
cd "$out"
export HARNESS_BACKENDS=${HARNESS_BACKENDS:-jax,torch}
# JAX and torch share the GPU in the benchmark's one process: JAX takes memory as it needs it,
# as torch's allocator does, rather than 75% of the card up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
h() { "$env/bin/python" -m harness "$@"; }
run h list --refresh
status=0
for each in ${profile//,/ }; do
    run "$env/bin/python" -m pytest "$checkout/tests/benchmarks/test_benchmarks.py" --benchmark-only -q \
        -p no:cacheprovider --rootdir "$checkout" --harness-profile "$each" --harness-device "$device" \
        --harness-results "$out" ${cases[@]+"${cases[@]}"} || status=1
    saved=$(ls -t "$out"/2*.json | head -1)
    run h compare "$saved" --results "$out" >>summary.txt || status=1
done
cat summary.txt
run h validate -q --device "$device" ${problems[@]+"${problems[@]}"} --dtype float32,float64 --format json \
    --output validation.json || status=1
run h validate -q --device "$device" ${problems[@]+"${problems[@]}"} --dtype float64 -o "$top" --format json \
    --output validation-top-order.json || status=1
echo "gpu-run: exit $status; results in $out"
exit $status
