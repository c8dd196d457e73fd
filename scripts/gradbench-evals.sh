#!/usr/bin/env bash
# GradBench's own Python evals against `python -m harness gradbench serve`, each backend, each eval.
#
#   scripts/gradbench-evals.sh GRADBENCH_CHECKOUT GRADBENCH_PYTHON [BACKEND...]   (default: autograd jax torch)
#
# GRADBENCH_CHECKOUT: a checkout of github.com/gradbench/gradbench with its golden `manual` tool
# built (make -C tools/manual bin/lse bin/llsq bin/det bin/ode bin/kmeans bin/gmm bin/lstm bin/ba
# bin/ht; where the Makefile would download cpp/json.hpp, a one-line `#include <nlohmann/json.hpp>`
# does, with the include folder of PyPI's nlohmann-json==3.11.3 added to CXXFLAGS) and its data
# (evals/ba/data, evals/ht/data, evals/lstm/data/lstm_full.txt). GRADBENCH_PYTHON: a Python
# with GradBench's package installed (pip install python/gradbench numpy pydantic). The harness
# runs with the python on PATH (or $PYTHON). $EVALS chooses the evals (default: every one but
# particle, whose evaluate is two whole descents, some 40 minutes on autograd); the sizes are
# GradBench's smallest (its defaults for ba: ba1 ... ba14). Sessions are logged to $OUT (default
# gradbench-out/) in GradBench's log format; one line per session says its outcome (exit code as
# GradBench's). $TIMEOUT: seconds a response may take (default 1800: saddle on JAX eager is slow).
# $SERVE_ARGS: more arguments for serve, e.g. --no-warmup (each evaluate computes once, not twice:
# particle's and saddle's sessions take half as long).
set -u
checkout=$(cd "$1" && pwd) gb_python=$2
shift 2
backends=${*:-autograd jax torch}
python=${PYTHON:-python}
out=$(mkdir -p "${OUT:-gradbench-out}" && cd "${OUT:-gradbench-out}" && pwd)
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
declare -A sizes=(
  [lse]="-n 2500 5000"
  [llsq]="-n 16 32 64 -m 128"
  [det]="-l 5 6 7"
  [ode]="-n 1000 -s 1 10"
  [kmeans]="-k 10 100 -n 1000 -d 8"
  [gmm]="-d 2 5 -k 5"
  [lstm]="-l 2 4 -c 1024"
  [ba]="--min 1 --max 14"
  [ht]="--variant simple --model small --min 1 --max 2"
  [saddle]=""
  [particle]=""
)
cd "$checkout" || exit 2
for backend in $backends; do
  for eval in ${EVALS:-lse llsq det ode kmeans gmm lstm ba ht saddle}; do
    start=$SECONDS
    "$python" -m harness gradbench run --timeout "${TIMEOUT:-1800}" \
      --eval "$gb_python python/gradbench/gradbench/evals/$eval/run.py ${sizes[$eval]} --min-seconds 0" \
      --tool "$python -m harness gradbench serve --backend $backend ${SERVE_ARGS:-}" \
      -o "$out/$backend-$eval.jsonl" 2> "$out/$backend-$eval.err"
    echo "$backend $eval exit=$? $((SECONDS - start)) s: $(tail -1 "$out/$backend-$eval.err")"
  done
done
