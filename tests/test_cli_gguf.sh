#!/usr/bin/env bash
# test_cli_gguf.sh - build/moe run --model FILE.gguf on every fixture of tests/gguf/ (written by
# tests/gen_gguf.py): Y, E and W against the float64 references. Layers of Q8_0 / Q4_0 experts
# pack as q8 / q4 by default (int8 activations: NMSE within NMSE_Q), the others (MXFP4, Q4_K to
# f32, F16, BF16, F32) within TOL of max(1, max|ref|); with --dtype f32 every one within TOL.
# Then the errors: a bad --layer, a block out of range, a truncated file.
set -u
cd "$(dirname "$0")/.."
TOL=${TOL:-1e-5}
NMSE_Q=${NMSE_Q:-1e-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); printf 'ok    %s\n' "$*"; }
bad() { fail=$((fail + 1)); printf 'FAIL  %s\n' "$*"; }
while read -r name layer types; do
  case "$name" in ''|'#'*) continue ;; esac
  f=tests/gguf/$name
  for dt in auto f32; do
    if ! log=$(build/moe run --model "$f.gguf" --layer "$layer" --dtype "$dt" --input "$f.x.npy" \
          --output "$tmp/y.npy" --experts-out "$tmp/e.npy" --weights-out "$tmp/w.npy" 2>&1); then
      bad "$name --dtype $dt: $log"; continue
    fi
    if [ "$dt" = auto ] && [[ "$types" == *Q8_0* || "$types" == *Q4_0* ]] && [[ "$types" != Q4_K* ]]; then
      ry=$(build/npy_compare "$tmp/y.npy" "$f.y.npy" nmse "$NMSE_Q" 2>&1); cy=$?
    else
      ry=$(build/npy_compare "$tmp/y.npy" "$f.y.npy" "$TOL" 2>&1); cy=$?
    fi
    re=$(build/npy_compare "$tmp/e.npy" "$f.e.npy" exact 2>&1); ce=$?
    rw=$(build/npy_compare "$tmp/w.npy" "$f.w.npy" "$TOL" 2>&1); cw=$?
    if [ $cy -eq 0 ] && [ $ce -eq 0 ] && [ $cw -eq 0 ]; then ok "$name --dtype $dt  Y $ry | E $re"
    else bad "$name --dtype $dt  Y $ry | W $rw | E $re"; fi
  done
done < tests/gguf/cases.txt
# errors: each with its message, no output written
expect() { # words args...
  local words=$1; shift
  rm -f "$tmp/y.npy"
  local out rc
  out=$(build/moe run "$@" --output "$tmp/y.npy" 2>&1); rc=$?
  if [ $rc -ne 0 ] && [[ "$out" == *"$words"* ]] && [ ! -e "$tmp/y.npy" ]; then ok "error: $words"
  else bad "error: expected '$words' and no output, got rc $rc: $out"; fi
}
x=tests/gguf/llama_f16.x.npy
expect "a GGUF file takes a block index" --model tests/gguf/llama_f16.gguf --layer encoder.1 --input "$x"
expect "out of range" --model tests/gguf/llama_f16.gguf --layer 7 --input "$x"
head -c 300 tests/gguf/llama_f16.gguf > "$tmp/cut.gguf"
expect "$tmp/cut.gguf" --model "$tmp/cut.gguf" --layer 0 --input "$x"
expect "has width" --model tests/gguf/llama_f16.gguf --layer 0 --input tests/gguf/qwen3moe_q8_0.x.npy
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
