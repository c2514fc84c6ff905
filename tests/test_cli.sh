#!/usr/bin/env bash
# Runs `build/moe run` on every checkpoint fixture of tests/checkpoints (written by
# tests/gen_checkpoints.py) and compares with the float64 HF references:
#   Y  max|y - ref| <= TOL * max(1, max|ref|)
#   E  exactly (the fixtures have clear routing margins)
#   W  the same tolerance as Y
# and --mmap (the mapped load path) gives the same bytes of Y as the default read path.
# TOL = 1e-5: moe.h computes in fp32 from the stored (already rounded) weights, so the error
# is fp32 rounding of the matmuls (K <= 136 terms) and the routing arithmetic; the worst seen is
# printed per case. Quantized checkpoints (config.json with a quantization_config) are packed
# as they ship (fp8, mxfp4: fp32 activations, the same TOL against the float64 reference of the
# exactly dequantized weights); compressed-tensors INT4 ("pack-quantized") packs as q4, whose
# int8 activations give Y within NMSE_INT4 instead, so those cases also run with --dtype f32
# (exact dequantization) against TOL.
# Needs build/moe and build/npy_compare (made here if stale); no Python.
# Usage: bash tests/test_cli.sh     prints one line per case and "N passed, M failed".
#        CASES=FILE bash tests/test_cli.sh   runs the cases listed in FILE instead
set -u
cd "$(dirname "$0")/.."
TOL=${TOL:-1e-5}
NMSE_INT4=${NMSE_INT4:-1e-3} # q4 on int8 activations (the kimi_k2_int4 fixture: 1.1e-4)
CASES=${CASES:-tests/checkpoints/cases.txt}
# make rebuilds what is older than its sources, the headers in examples/ included
make -s build/moe build/npy_compare || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
while read -r name dir layer stem flags; do
  case "$name" in ''|'#'*) continue ;; esac
  d=tests/checkpoints/$dir
  out="$tmp/$name"
  # shellcheck disable=SC2086 # the flags are words
  if ! log=$(build/moe run --model "$d" --layer "$layer" $flags --input "$d/$stem.x.npy" --output "$out.y.npy" \
        --experts-out "$out.e.npy" --weights-out "$out.w.npy" 2>&1); then
    fail=$((fail + 1)); printf 'FAIL  %-32s moe run failed: %s\n' "$name" "$log"; continue
  fi
  # the mapped load path gives the same bytes as the default (read) one
  # shellcheck disable=SC2086
  if ! build/moe run --mmap --model "$d" --layer "$layer" $flags --input "$d/$stem.x.npy" --output "$out.my.npy" \
        >/dev/null 2>&1 || ! cmp -s "$out.y.npy" "$out.my.npy"; then
    fail=$((fail + 1)); printf 'FAIL  %-32s --mmap gives other bytes than the default read\n' "$name"; continue
  fi
  if grep -q '"pack-quantized"' "$d/config.json"; then
    ry=$(build/npy_compare "$out.y.npy" "$d/$stem.y.npy" nmse "$NMSE_INT4" 2>&1); cy=$?
    # shellcheck disable=SC2086
    if build/moe run --model "$d" --layer "$layer" $flags --dtype f32 --input "$d/$stem.x.npy" \
         --output "$out.fy.npy" >/dev/null 2>&1; then
      rf=$(build/npy_compare "$out.fy.npy" "$d/$stem.y.npy" "$TOL" 2>&1) || cy=1
    else rf="--dtype f32 run failed"; cy=1; fi
    ry="q4 $ry | --dtype f32 Y $rf"
  else
    ry=$(build/npy_compare "$out.y.npy" "$d/$stem.y.npy" "$TOL" 2>&1); cy=$?
  fi
  re=$(build/npy_compare "$out.e.npy" "$d/$stem.e.npy" exact 2>&1); ce=$?
  rw=$(build/npy_compare "$out.w.npy" "$d/$stem.w.npy" "$TOL" 2>&1); cw=$?
  if [ $cy -eq 0 ] && [ $ce -eq 0 ] && [ $cw -eq 0 ]; then
    pass=$((pass + 1)); printf 'ok    %-32s Y %s | W %s | E %s\n' "$name" "$ry" "$rw" "$re"
  else
    fail=$((fail + 1)); printf 'FAIL  %-32s Y %s | W %s | E %s\n' "$name" "$ry" "$rw" "$re"
  fi
done < "$CASES"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
