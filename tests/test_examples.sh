#!/usr/bin/env bash
# Builds every examples/*.c except moe_cli.c (tests/test_cli.sh covers the CLI), moe_lib.c
# (a library, tests/test_python.py) and moe_ep.c (MPI, built with mpicc: tests/test_ep.sh)
# warning-free, without and with -fopenmp, runs it (with the arguments `args` gives it, most
# take none) and checks it exits 0 and prints its key lines. An example not listed in `expect`
# below is only built and run.
# Usage: bash tests/test_examples.sh     prints one line per build and "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
CC=${CC:-cc}
WARN="-Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

# args NAME: the command line of example NAME
args() {
  case "$1" in
    load_model) echo "tests/checkpoints/mixtral 1 tests/checkpoints/mixtral/mixtral.1.x.npy" ;;
  esac
}

# expect NAME OMP: the extended regexps (one a line) the output of example NAME must match
expect() {
  case "$1" in
    basic) echo '^ok, y\[0\] = ' ;;
    shared_experts) echo '^token 3: .* sum 2\.5000 '; echo '^tokens per expert:( [0-9]+){8} ' ;;
    route_only) echo '^dropped [0-9]+ of 16 slots \(capacity 3\)$'; echo '^aux_loss [0-9.]+ .* z_loss [0-9.]+$' ;;
    load_model) echo '^tests/checkpoints/mixtral: 2 layers, MoE: 0 1$'; echo '^mixtral layer 1: 7 tokens, d=24, 8 experts, top-2, sum \|y\| = [0-9]+\.[0-9]+$' ;;
    threads)
      echo '^each token alone .* vs the batch: bit-identical$'
      if [ "$2" = "-fopenmp" ]; then echo '^batch of 16, n_threads 1 vs 2: bit-identical$'; fi ;;
  esac
}

omp_flags=("")
if echo 'int main(void){return 0;}' | $CC -fopenmp -x c - -o "$tmp/probe" >/dev/null 2>&1; then
  omp_flags+=("-fopenmp")
else
  echo "skipped: -fopenmp ($CC cannot build with OpenMP)"
fi

for src in examples/*.c; do
  name=$(basename "$src" .c)
  case "$name" in moe_cli | moe_lib | moe_ep) continue ;; esac
  for omp in "${omp_flags[@]}"; do
    label="$name${omp:+ $omp}"
    exe="$tmp/$name$omp"
    if ! $CC -std=c99 -O2 $omp $WARN -I. -Iexamples "$src" -o "$exe" -lm >"$tmp/log" 2>&1; then
      fail=$((fail + 1)); echo "FAIL  $label (build)"; head -20 "$tmp/log"; continue
    fi
    # shellcheck disable=SC2046 # the arguments are words
    "$exe" $(args "$name") >"$tmp/out" 2>&1
    rc=$?
    why=""
    [ $rc -eq 0 ] || why="exit $rc"
    while IFS= read -r re; do
      [ -n "$why" ] && break
      grep -Eq -- "$re" "$tmp/out" || why="no line matching /$re/"
    done < <(expect "$name" "$omp")
    if [ -z "$why" ]; then
      pass=$((pass + 1)); echo "ok    $label"
    else
      fail=$((fail + 1)); echo "FAIL  $label: $why"; sed 's/^/        /' "$tmp/out" | head -20
    fi
  done
done

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
