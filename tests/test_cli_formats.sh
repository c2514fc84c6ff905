#!/usr/bin/env bash
# The packed formats through the CLI, on every checkpoint fixture of tests/checkpoints:
#   - the default (--dtype auto: a bf16 checkpoint packs as bf16, f16 as f16) gives the same
#     bytes of Y, E and W as --dtype f32: exact mode keeps the f32 chain;
#   - --dtype q8 and q4 within NMSE_Q8 / NMSE_Q4 of the reference (see test_accuracy.c), fp8 and
#     mxfp4 (quantized from the fixtures' weights) within NMSE_FP8 / NMSE_MX;
#   - --dtype bf16 and --dtype f16 (lossy for f32 checkpoints) and --bf16-dot stay within
#     TOL_LOSSY of the float64 reference, with the same experts (the router is always fp32).
# TOL_LOSSY = 2e-2 of max(1, max|ref|): the weights (and for --bf16-dot the activations) carry
# 8 (bf16) or 11 (f16) significant bits, 2^-9 = 2e-3 relative each; a fixture's output sums a
# few dozen of them, and the worst case seen is printed.
# A quantized checkpoint (config.json with a quantization_config) packs as it ships under auto
# (fp8, mxfp4, q4: tests/test_cli.sh checks that), not as f32: for it, --dtype f32 (the exact
# dequantization) must be within TOL = 1e-5 of the reference instead of auto's bytes.
# CASES=FILE runs the cases listed in FILE instead of tests/checkpoints/cases.txt.
set -u
cd "$(dirname "$0")/.."
TOL=${TOL:-1e-5}
CASES=${CASES:-tests/checkpoints/cases.txt}
TOL_LOSSY=${TOL_LOSSY:-2e-2}
NMSE_Q8=${NMSE_Q8:-1e-3}  # q8, q4: normalized squared error (worst fixture 4.1e-4, 4.3e-2)
NMSE_Q4=${NMSE_Q4:-1e-1}
NMSE_FP8=${NMSE_FP8:-1e-2} # fp8, mxfp4 quantized from the fixtures' weights at creation
NMSE_MX=${NMSE_MX:-2e-1}
make -s build/moe build/npy_compare || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
while read -r name dir layer stem case_flags; do
  case "$name" in ''|'#'*) continue ;; esac
  d=tests/checkpoints/$dir
  run() { # tag flags...
    local tag=$1; shift
    # shellcheck disable=SC2086 # the case's flags are words
    build/moe run --model "$d" --layer "$layer" $case_flags --input "$d/$stem.x.npy" --output "$tmp/$tag.y.npy" \
      --experts-out "$tmp/$tag.e.npy" --weights-out "$tmp/$tag.w.npy" "$@" >/dev/null 2>"$tmp/err"
  }
  if ! run auto || ! run f32 --dtype f32; then
    fail=$((fail + 1)); printf 'FAIL  %-32s %s\n' "$name" "$(cat "$tmp/err")"; continue
  fi
  if grep -q '"quantization_config"' "$d/config.json"; then
    ok=1
    rq=$(build/npy_compare "$tmp/f32.y.npy" "$d/$stem.y.npy" "$TOL" 2>&1) || ok=0
    line="quantized: f32 Y $rq"
  else
    same=ok
    for f in y e w; do cmp -s "$tmp/auto.$f.npy" "$tmp/f32.$f.npy" || same="differs ($f)"; done
    line="auto = f32: $same"
    ok=1; [ "$same" = ok ] || ok=0
  fi
  for v in bf16 f16 dot q8 q4 fp8 mxfp4; do
    flags="--dtype $v"; [ $v = dot ] && flags="--dtype bf16 --bf16-dot"
    # shellcheck disable=SC2086
    if ! run $v $flags; then ok=0; line="$line | $v: $(cat "$tmp/err")"; continue; fi
    case $v in
      q8) ry=$(build/npy_compare "$tmp/$v.y.npy" "$d/$stem.y.npy" nmse "$NMSE_Q8" 2>&1) || ok=0 ;;
      q4) ry=$(build/npy_compare "$tmp/$v.y.npy" "$d/$stem.y.npy" nmse "$NMSE_Q4" 2>&1) || ok=0 ;;
      fp8) ry=$(build/npy_compare "$tmp/$v.y.npy" "$d/$stem.y.npy" nmse "$NMSE_FP8" 2>&1) || ok=0 ;;
      mxfp4) ry=$(build/npy_compare "$tmp/$v.y.npy" "$d/$stem.y.npy" nmse "$NMSE_MX" 2>&1) || ok=0 ;;
      *) ry=$(build/npy_compare "$tmp/$v.y.npy" "$d/$stem.y.npy" "$TOL_LOSSY" 2>&1) || ok=0 ;;
    esac
    re=$(build/npy_compare "$tmp/$v.e.npy" "$d/$stem.e.npy" exact 2>&1) || ok=0
    line="$line | $v Y $ry, E $re"
  done
  if [ $ok -eq 1 ]; then pass=$((pass + 1)); printf 'ok    %-32s %s\n' "$name" "$line"
  else fail=$((fail + 1)); printf 'FAIL  %-32s %s\n' "$name" "$line"; fi
done < "$CASES"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
