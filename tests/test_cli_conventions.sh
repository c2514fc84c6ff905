#!/usr/bin/env bash
# The command-line conventions of build/moe: --version and --help on stdout with exit 0;
# --opt=value for every option with a value; a warning ("moe: warning: ...") for each option
# that has no effect in the run asked for, and none otherwise; the config.json keys that were
# absent, with their defaults (--verbose); .npy input of any rank >= 2 ([B][T][d]), the outputs
# in its leading shape; messages with long paths printed whole.
# Usage: bash tests/test_cli_conventions.sh     one line per case and "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
make -s build/moe || exit 1
CK=tests/checkpoints
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); printf 'ok    %-44s %s\n' "$1" "$2"; }
bad() { fail=$((fail + 1)); printf 'FAIL  %-44s %s\n' "$1" "$2"; }

# run ARGS...: build/moe's exit status in $rc, stdout in $out, stderr in $err
run() { build/moe "$@" >"$tmp/stdout" 2>"$tmp/stderr"; rc=$?; out=$(cat "$tmp/stdout"); err=$(cat "$tmp/stderr"); }
# the toy run's output without its timing line
untimed() { grep -v '^time:' "$tmp/stdout"; }
X=$CK/olmoe/olmoe.0.x.npy
OLMOE="--model $CK/olmoe --layer 0 --input $X"

# -- --version, --help
run --version
if [ $rc -eq 0 ] && [ -z "$err" ] && printf '%s' "$out" | grep -Eq '^moe\.h [0-9]+\.[0-9]+\.[0-9]+, kernels (avx512|avx2|neon|scalar) .*OpenMP (on|off).*formats '; then
  ok "--version" "$out"; else bad "--version" "rc $rc: $out $err"; fi
run --help
if [ $rc -eq 0 ] && [ -z "$err" ] && printf '%s' "$out" | head -1 | grep -q '^usage: moe' &&
   printf '%s' "$out" | grep -q -- '--version' && printf '%s' "$out" | grep -q -- '--opt=VALUE'; then
  ok "--help on stdout, exit 0" "$(printf '%s\n' "$out" | wc -l) lines"; else bad "--help on stdout, exit 0" "rc $rc: $err"; fi

# -- --opt=value: the same run as --opt value
run run --experts 16 --k 3 --seed 7 --tokens 5 --dtype f32 --threads 1; a=$(untimed)
run run --experts=16 --k=3 --seed=7 --tokens=5 --dtype=f32 --threads=1; b=$(untimed)
if [ $rc -eq 0 ] && [ -n "$a" ] && [ "$a" = "$b" ]; then ok "toy: --opt=value = --opt value" "same output"
else bad "toy: --opt=value = --opt value" "rc $rc: $err"; fi
build/moe run $OLMOE --output "$tmp/a.npy" --experts-out "$tmp/ae.npy" >/dev/null 2>&1
run run --model="$CK/olmoe" --layer=0 --input="$X" --output="$tmp/b.npy" --experts-out="$tmp/be.npy"
if [ $rc -eq 0 ] && [ -z "$err" ] && cmp -s "$tmp/a.npy" "$tmp/b.npy" && cmp -s "$tmp/ae.npy" "$tmp/be.npy"; then
  ok "checkpoint: --opt=value = --opt value" "same bytes"; else bad "checkpoint: --opt=value = --opt value" "rc $rc: $err"; fi
for args in "--k=0|bad value '0' for --k: expected an integer" "--model=|--model needs a value" \
            "--plain=1|--plain takes no value: '--plain=1'" "--dtype=nope|bad value 'nope' for --dtype" \
            "--k=|bad value '' for --k" "--kk=3|unknown option '--kk=3'"; do
  a=${args%%|*} words=${args#*|}
  run run "$a"
  if [ $rc -eq 2 ] && printf '%s' "$err" | grep -qF -- "$words"; then ok "refused: $a" "$err"; else bad "refused: $a" "rc $rc: $err"; fi
done

# -- warnings: each option without effect, and the run goes on with the same result
run run $OLMOE --output "$tmp/ref.npy"
if [ $rc -eq 0 ] && [ -z "$err" ]; then ok "no warning in a plain run" "stderr empty"; else bad "no warning in a plain run" "rc $rc: $err"; fi
for flag in "--d 8" "--ff 8" "--experts 4" "--k 3" "--shared 2" "--tokens 9" "--groups 2" \
            "--topk-group 1" "--seed 3" "--score sigmoid" "--act gelu" "--plain" "--norm" "--no-norm"; do
  # shellcheck disable=SC2086 # the flag and its value are words
  run run $OLMOE --output "$tmp/w.npy" $flag
  f=${flag%% *}
  if [ $rc -eq 0 ] && printf '%s' "$err" | grep -q -- "^moe: warning: $f has no effect with --model" &&
     [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && cmp -s "$tmp/w.npy" "$tmp/ref.npy"; then
    ok "warning: $flag with --model" "$err"; else bad "warning: $flag with --model" "rc $rc: $err"; fi
done
run run $OLMOE --output "$tmp/w.npy" --k 3 --seed=2 --k=4 --plain
n=$(printf '%s\n' "$err" | grep -c 'warning')
if [ $rc -eq 0 ] && [ "$n" -eq 3 ] && printf '%s' "$err" | head -1 | grep -q -- '--k has'; then
  ok "one warning per option, in order" "$n warnings"; else bad "one warning per option, in order" "rc $rc: $err"; fi
for flag in --mmap --no-mmap --verbose; do
  run run --tokens 2 $flag
  if [ $rc -eq 0 ] && printf '%s' "$err" | grep -q -- "^moe: warning: $flag has no effect without --model"; then
    ok "warning: $flag without --model" "$err"; else bad "warning: $flag without --model" "rc $rc: $err"; fi
done
if build/moe --version | grep -q 'OpenMP on'; then
  run run --tokens 2 --threads 4096
  if [ $rc -eq 0 ] && printf '%s' "$err" | grep -Eq "^moe: warning: --threads 4096 is more than the [0-9]+ cores available: moe\.h runs [0-9]+ threads"; then
    ok "warning: --threads beyond the cores" "$err"; else bad "warning: --threads beyond the cores" "rc $rc: $err"; fi
  run run --tokens 2 --threads 1
  if [ $rc -eq 0 ] && [ -z "$err" ]; then ok "no warning: --threads 1" ""; else bad "no warning: --threads 1" "rc $rc: $err"; fi
else
  run run --tokens 2 --threads 2
  if [ $rc -eq 0 ] && printf '%s' "$err" | grep -q "^moe: warning: --threads has no effect: this build has no OpenMP"; then
    ok "warning: --threads without OpenMP" "$err"; else bad "warning: --threads without OpenMP" "rc $rc: $err"; fi
fi
run run $OLMOE --output "$tmp/w.npy" --shared-dtype f16
if [ $rc -eq 0 ] && printf '%s' "$err" | grep -q "^moe: warning: --shared-dtype has no effect: olmoe layer 0 has no shared experts"; then
  ok "warning: --shared-dtype, no shared experts" "$err"; else bad "warning: --shared-dtype, no shared experts" "rc $rc: $err"; fi
run run --shared 0 --shared-dtype bf16 --tokens 2
if [ $rc -eq 0 ] && printf '%s' "$err" | grep -q "^moe: warning: --shared-dtype has no effect: the toy layer has no shared experts"; then
  ok "warning: toy --shared 0 --shared-dtype" "$err"; else bad "warning: toy --shared 0 --shared-dtype" "rc $rc: $err"; fi
run run $OLMOE --output "$tmp/w.npy" --bf16-dot
if [ $rc -eq 0 ] && [ -z "$err" ]; then ok "no warning: --bf16-dot (auto becomes bf16)" ""; else bad "no warning: --bf16-dot (auto becomes bf16)" "rc $rc: $err"; fi
run run --model "$CK/qwen2_moe" --layer 1 --input "$CK/qwen2_moe/qwen2_moe.1.x.npy" --output "$tmp/w.npy" --shared-dtype bf16
if [ $rc -eq 0 ] && [ -z "$err" ]; then ok "no warning: --shared-dtype, shared experts" ""; else bad "no warning: --shared-dtype, shared experts" "rc $rc: $err"; fi

# -- the keys config.json lacks: listed with --verbose, with the default taken
run run --model "$CK/gpt_oss_bf16" --layer 1 --input "$CK/gpt_oss_bf16/gpt_oss_bf16.1.x.npy" --output "$tmp/w.npy" --verbose
want=$'moe: note: swiglu_alpha absent from config.json, default 1.702\nmoe: note: swiglu_limit absent from config.json, default 7'
if [ $rc -eq 0 ] && [ "$err" = "$want" ]; then ok "--verbose: absent keys, defaults" "$(echo $err)"; else bad "--verbose: absent keys, defaults" "rc $rc: $err"; fi
run run --model "$CK/gpt_oss_bf16" --layer 1 --input "$CK/gpt_oss_bf16/gpt_oss_bf16.1.x.npy" --output "$tmp/w.npy"
if [ $rc -eq 0 ] && [ -z "$err" ]; then ok "no notes without --verbose" ""; else bad "no notes without --verbose" "rc $rc: $err"; fi
mkdir -p "$tmp/m"; cp -r "$CK/olmoe" "$tmp/m/absent"; cp -r "$CK/olmoe" "$tmp/m/null"
sed -i '/"norm_topk_prob"/d' "$tmp/m/absent/config.json"
sed -i 's/"norm_topk_prob": false/"norm_topk_prob": null/' "$tmp/m/null/config.json"
for k in absent null; do
  run run --model "$tmp/m/$k" --layer 0 --input "$X" --output "$tmp/$k.npy" --verbose
  w="norm_topk_prob absent from config.json, default false"; [ $k = null ] && w="norm_topk_prob is null in config.json, default false"
  if [ $rc -eq 0 ] && [ "$err" = "moe: note: $w" ] && cmp -s "$tmp/$k.npy" "$tmp/ref.npy"; then
    ok "--verbose: a key $k" "$err"; else bad "--verbose: a key $k" "rc $rc: $err"; fi
done
run run --model "$CK/qwen3_omni_moe_thinker" --layer thinker.1 --input "$CK/qwen3_omni_moe_thinker/qwen3_omni_moe_thinker.thinker.1.x.npy" --output "$tmp/w.npy" --verbose
if [ $rc -eq 0 ] && [ "$err" = "moe: note: thinker_config.text_config.decoder_sparse_step absent from config.json, default 1" ]; then
  ok "--verbose: a nested key by its path" "$err"; else bad "--verbose: a nested key by its path" "rc $rc: $err"; fi

# -- .npy input of rank >= 2: [B][T][d] is B*T tokens, the outputs in the same leading shape
hlen=$(od -An -tu2 -j8 -N2 "$X" | tr -d ' ')
data() { local h; h=$(od -An -tu2 -j8 -N2 "$1" | tr -d ' '); tail -c +$((10 + h + 1)) "$1"; }
shape_of() { head -c 200 "$1" | tr -d '\0' | grep -ao "'shape': ([0-9, ]*)" | head -1; }
# npy_as SHAPE OUT: X's data under another shape (the same 6 x 24 floats)
npy_as() {
  local dict="{'descr': '<f4', 'fortran_order': False, 'shape': $1, }"
  { printf '\x93NUMPY\x01\x00\x76\x00%s%*s\n' "$dict" $((117 - ${#dict})) ''; tail -c +$((10 + hlen + 1)) "$X"; } > "$2"
}
build/moe run $OLMOE --output "$tmp/r.y.npy" --experts-out "$tmp/r.e.npy" --weights-out "$tmp/r.w.npy" >/dev/null 2>&1
for sh in "(2, 3, 24)|(2, 3, 3)" "(1, 6, 24)|(1, 6, 3)" "(3, 1, 2, 24)|(3, 1, 2, 3)" "(6, 24)|(6, 3)"; do
  xs=${sh%%|*} ks=${sh#*|}
  npy_as "$xs" "$tmp/x.npy"
  run run --model "$CK/olmoe" --layer 0 --input "$tmp/x.npy" --output "$tmp/y.npy" --experts-out "$tmp/e.npy" --weights-out "$tmp/w.npy"
  if [ $rc -eq 0 ] && [ "$(shape_of "$tmp/y.npy")" = "'shape': $xs" ] && [ "$(shape_of "$tmp/e.npy")" = "'shape': $ks" ] &&
     [ "$(shape_of "$tmp/w.npy")" = "'shape': $ks" ] && cmp -s <(data "$tmp/y.npy") <(data "$tmp/r.y.npy") &&
     cmp -s <(data "$tmp/e.npy") <(data "$tmp/r.e.npy") && cmp -s <(data "$tmp/w.npy") <(data "$tmp/r.w.npy") &&
     printf '%s' "$out" | grep -q "6 tokens"; then
    ok "input $xs" "Y $xs, E and W $ks, the rank-2 run's values"
  else bad "input $xs" "rc $rc: $out $err; Y $(shape_of "$tmp/y.npy"), E $(shape_of "$tmp/e.npy")"; fi
done
dict="{'descr': '<f4', 'fortran_order': False, 'shape': (2, 0, 24), }"
{ printf '\x93NUMPY\x01\x00\x76\x00%s%*s\n' "$dict" $((117 - ${#dict})) ''; } > "$tmp/x0.npy"
run run --model "$CK/olmoe" --layer 0 --input "$tmp/x0.npy" --output "$tmp/y0.npy" --experts-out "$tmp/e0.npy"
if [ $rc -eq 0 ] && [ "$(shape_of "$tmp/y0.npy")" = "'shape': (2, 0, 24)" ] && [ "$(shape_of "$tmp/e0.npy")" = "'shape': (2, 0, 3)" ]; then
  ok "input (2, 0, 24): no tokens" "Y (2, 0, 24), E (2, 0, 3)"; else bad "input (2, 0, 24): no tokens" "rc $rc: $err"; fi

# -- messages with long paths come through whole
long=$tmp; while [ ${#long} -lt 3400 ]; do long=$long/$(printf 'd%.0s' $(seq 200)); done
run run --model "$long/nope" --layer 0 --input "$X" --output "$tmp/w.npy"
if [ $rc -ne 0 ] && [ "$err" = "moe: model directory '$long/nope' not found (or not a directory)" ]; then
  ok "long model path, whole" "${#err} bytes"; else bad "long model path, whole" "rc $rc: ${err:0:200}"; fi
run run $OLMOE --output "$long/nodir/y.npy"
if [ $rc -ne 0 ] && [ "$err" = "moe: cannot write output '$long/nodir/y.npy': directory '$long/nodir' is missing or not writable" ]; then
  ok "long output path, whole" "${#err} bytes"; else bad "long output path, whole" "rc $rc: ${err:0:200}"; fi
mkdir -p "$long" && cp -r "$CK/olmoe" "$long/m"
sed -i 's/"num_experts": 8/"num_experts": "x"/' "$long/m/config.json"
run run --model "$long/m" --layer 0 --input "$X" --output "$tmp/w.npy"
if [ $rc -ne 0 ] && [ "$err" = "moe: $long/m/config.json: 'num_experts' is a string, expected an integer" ]; then
  ok "long checkpoint path in a config error" "${#err} bytes"; else bad "long checkpoint path in a config error" "rc $rc: ${err:0:300}"; fi
cp "$CK/olmoe/config.json" "$long/m/config.json"
perl -0777 -pi -e 's/layers\.0\.mlp\.gate\.weight/layers.0.mlp.gxte.weight/' "$long/m/model.safetensors"
run run --model "$long/m" --layer 0 --input "$X" --output "$tmp/w.npy"
if [ $rc -ne 0 ] && [ "$err" = "moe: missing tensor 'model.layers.0.mlp.gate.weight' (the router of olmoe layer 0) in $long/m" ]; then
  ok "long checkpoint path, missing router" "${#err} bytes"; else bad "long checkpoint path, missing router" "rc $rc: ${err:0:300}"; fi
# the unknown-model_type message lists every family --help lists (it was cut at 400 bytes)
cp -r "$CK/olmoe" "$tmp/m/nope"; sed -i 's/"model_type": "olmoe"/"model_type": "nope"/' "$tmp/m/nope/config.json"
run run --model "$tmp/m/nope" --layer 0 --input "$X" --output "$tmp/w.npy"
listed=$(printf '%s' "$err" | sed 's/.*supported://' | wc -w)
helped=$(build/moe --help | sed -n '/^Families/,$p' | tail -n +2 | wc -w)
if [ $rc -ne 0 ] && [ "$listed" -gt 60 ] && [ "$listed" -eq "$helped" ] && printf '%s' "$err" | grep -q ' switch_transformers$'; then
  ok "unknown model_type: the whole list" "$listed families"; else bad "unknown model_type: the whole list" "$listed listed, $helped in --help: $err"; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
