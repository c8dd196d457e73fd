#!/usr/bin/env bash
# GradBench's own Python evals against `python -m harness gradbench serve`, each backend, each eval.
#
#   scripts/gradbench-evals.sh GRADBENCH_CHECKOUT GRADBENCH_PYTHON [BACKEND...]   (default: autograd jax torch)
#
# GRADBENCH_CHECKOUT: a checkout of github.com/gradbench/gradbench with its golden `manual` tool
# built (make -C tools/manual bin/lse bin/llsq bin/det bin/ode; where the Makefile would download
# cpp/json.hpp, a one-line `#include <nlohmann/json.hpp>` does, with the include folder of PyPI's
# nlohmann-json==3.11.3 added to CXXFLAGS). GRADBENCH_PYTHON: a Python
# with GradBench's package installed (pip install python/gradbench numpy pydantic). The harness
# runs with the python on PATH (or $PYTHON). Sessions are logged to $OUT (default gradbench-out/)
# in GradBench's log format; one line per session says its outcome (exit code as GradBench's).
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
)
cd "$checkout" || exit 2
for backend in $backends; do
  for eval in lse llsq det ode; do
    start=$SECONDS
    "$python" -m harness gradbench run --timeout 600 \
      --eval "$gb_python python/gradbench/gradbench/evals/$eval/run.py ${sizes[$eval]} --min-seconds 0" \
      --tool "$python -m harness gradbench serve --backend $backend" \
      -o "$out/$backend-$eval.jsonl" 2> "$out/$backend-$eval.err"
    echo "$backend $eval exit=$? $((SECONDS - start)) s: $(tail -1 "$out/$backend-$eval.err")"
  done
done
