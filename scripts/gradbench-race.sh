#!/usr/bin/env bash
# GradBench's own JAX, PyTorch and TensorFlow tools against `python -m harness gradbench serve` (jit and eager),
# eval by eval, through `python -m harness gradbench race`: the same eval program, the tools in
# turn, rounds alternating, every tool pinned to CPU $CPUS (default 0: GradBench's JAX tool pins
# itself there).
#
#   scripts/gradbench-race.sh GRADBENCH_CHECKOUT GRADBENCH_PYTHON [jax|pytorch|tensorflow ...]
#   (default: jax pytorch; tensorflow needs tensorflow-cpu in the harness's python)
#
# GRADBENCH_CHECKOUT and GRADBENCH_PYTHON as for scripts/gradbench-evals.sh (its golden `manual`
# tool built, its data in place). GradBench's tools run under the python on PATH (or $PYTHON),
# the harness's own, with GradBench's python/gradbench on PYTHONPATH, so that both sides race on
# the same framework versions (its PyTorch lstm also imports dataclasses-json). $EVALS chooses
# the evals (default: every one the tool defines); $ROUNDS the rounds (default 3); races are
# written to $OUT (default race-out/) as JSON, one per framework and eval. $MODES: serve's modes
# (default "jit eager"; torch.compile of lstm's unrolled steps takes minutes a size).
set -u
checkout=$(cd "$1" && pwd) gb_python=$2
shift 2
frameworks=${*:-jax pytorch}
python=${PYTHON:-python}
out=$(mkdir -p "${OUT:-race-out}" && cd "${OUT:-race-out}" && pwd)
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
declare -A flags=(
  [lse]="-n 1000 10000 100000"
  [llsq]="-n 64 256 1024 -m 128"
  [ode]="-n 100 1000 -s 1 10"
  [kmeans]="-k 10 100 -n 1000 10000 -d 8"
  [gmm]="-d 2 10 -k 5 10 -n 1000"
  [lstm]="-l 2 4 -c 1024"
  [ba]="--min 1 --max 14"
  [ht]="--variant simple --model small --min 1 --max 2"
)
# What each GradBench tool defines (its evals.txt, less `hello` and what it lists as timeout or error).
declare -A defined=([jax]="lse llsq ode kmeans gmm" [pytorch]="lse kmeans gmm lstm ba ht" [tensorflow]="lse gmm lstm")
declare -A backend=([jax]=jax [pytorch]=torch [tensorflow]=tensorflow)
cd "$checkout" || exit 2
for framework in $frameworks; do
  for eval in ${EVALS:-${defined[$framework]}}; do
    [[ " ${defined[$framework]} " == *" $eval "* ]] || continue
    serve="$python -m harness gradbench serve --backend ${backend[$framework]} --no-warmup"
    tools=(--tool "env PYTHONPATH=$checkout/python/gradbench $python python/gradbench/gradbench/tools/$framework/run.py")
    for mode in ${MODES:-jit eager}; do tools+=(--tool "$serve --mode $mode"); done
    "$python" -m harness gradbench race --rounds "${ROUNDS:-3}" --cpus "${CPUS:-0}" \
      --eval "$gb_python python/gradbench/gradbench/evals/$eval/run.py ${flags[$eval]} --min-runs 5 --min-seconds 0" \
      "${tools[@]}" --output "$out/$framework-$eval.json"
    echo "$framework $eval exit=$?"
  done
done
