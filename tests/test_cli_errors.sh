#!/usr/bin/env bash
# Error paths of `build/moe run --model ...`: each case copies a good fixture from
# tests/checkpoints into a temp dir, breaks one thing, and checks that the run exits non-zero,
# that its message holds the key words, and that no output file was created. Also checks the
# toy run (no arguments), --help, and bad toy flags.
# Usage: bash tests/test_cli_errors.sh     one line per case and "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
# make rebuilds what is older than its sources, the headers in examples/ included
make -s build/moe build/npy_compare || exit 1
CK=tests/checkpoints
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); printf 'ok    %-28s %s\n' "$1" "$2"; }
bad() { fail=$((fail + 1)); printf 'FAIL  %-28s %s\n' "$1" "$2"; }

# fixture NAME: a fresh copy of tests/checkpoints/NAME in $tmp/NAME
fixture() { rm -rf "${tmp:?}/$1"; cp -r "$CK/$1" "$tmp/$1"; }

# expect_fail CASE "key words regex" ARGS...: moe must fail, say the words, and leave no output
expect_fail() {
  local name=$1 words=$2 log rc; shift 2
  rm -f "$tmp"/out.*
  log=$(timeout 60 build/moe run "$@" --output "$tmp/out.y.npy" --experts-out "$tmp/out.e.npy" \
        --weights-out "$tmp/out.w.npy" 2>&1); rc=$?
  [ $rc -eq 124 ] && log="timed out (hangs): $log"
  log=$(printf '%s' "$log" | tr '\n' ' ')
  if [ $rc -eq 0 ]; then bad "$name" "exit 0: $log"
  elif ! printf '%s' "$log" | grep -Eiq -- "$words"; then bad "$name" "message lacks /$words/: $log"
  elif ls "$tmp"/out.* >/dev/null 2>&1; then bad "$name" "an output file was created: $(ls "$tmp"/out.*)"
  else ok "$name" "rc $rc: $log"; fi
}

X=$CK/olmoe/olmoe.0.x.npy

# -- directory and config
expect_fail "missing directory" "not found" --model "$tmp/nope" --layer 0 --input "$X"
fixture olmoe; rm "$tmp/olmoe/config.json"
expect_fail "missing config.json" "config\.json.*not found" --model "$tmp/olmoe" --layer 0 --input "$X"
fixture olmoe; sed -i 's/"model_type": "olmoe"/"model_type": "olmo_fancy"/' "$tmp/olmoe/config.json"
expect_fail "unknown model_type" "unknown model_type 'olmo_fancy'.*supported:.*mixtral" --model "$tmp/olmoe" --layer 0 --input "$X"
fixture olmoe; sed -i 's/"num_experts": 8/"num_experts": "eight"/' "$tmp/olmoe/config.json"
expect_fail "config key of wrong type" "num_experts" --model "$tmp/olmoe" --layer 0 --input "$X"
fixture olmoe; sed -i 's/"model_type": "olmoe"/"model_type": "olmoe\\u0000anything"/' "$tmp/olmoe/config.json"
expect_fail "NUL inside model_type" "config\.json: 'model_type' holds a NUL character" --model "$tmp/olmoe" --layer 0 --input "$X"
fixture olmoe; sed -i 's/"hidden_act": "silu"/"hidden_act": "silu\\u0000x"/' "$tmp/olmoe/config.json"
expect_fail "NUL inside hidden_act" "'hidden_act' holds a NUL character" --model "$tmp/olmoe" --layer 0 --input "$X"
fixture olmoe; printf '{"model_type": "olmoe",' > "$tmp/olmoe/config.json"
expect_fail "malformed config.json" "config\.json" --model "$tmp/olmoe" --layer 0 --input "$X"
fixture olmoe; sed -i 's/"num_experts": 8/"num_experts": 4294967304/' "$tmp/olmoe/config.json"
expect_fail "config int beyond int" "'num_experts' = 4294967304 is out of range" --model "$tmp/olmoe" --layer 0 --input "$X"

# -- layer selection
expect_fail "layer out of range" "layer 5 is out of range.*1 layers" --model "$CK/olmoe" --layer 5 --input "$X"
expect_fail "negative layer" "bad --layer" --model "$CK/olmoe" --layer -1 --input "$X"
expect_fail "layer beyond int" "layer 9223372036854775807 is out of range" --model "$CK/olmoe" --layer 9223372036854775807 --input "$X"
fixture olmoe; sed -i 's/"num_hidden_layers": 1/"num_hidden_layers": -1/' "$tmp/olmoe/config.json"
expect_fail "negative layer count" "'num_hidden_layers' = -1 is negative" --model "$tmp/olmoe" --layer 0 --input "$X"
X3=$CK/deepseek_v3/deepseek_v3.1.x.npy
expect_fail "dense: first_k_dense_replace" "layer 0 is a dense layer.*first_k_dense_replace" --model "$CK/deepseek_v3" --layer 0 --input "$X3"
XQ=$CK/qwen2_moe/qwen2_moe.1.x.npy
expect_fail "dense: decoder_sparse_step" "dense layer.*decoder_sparse_step" --model "$CK/qwen2_moe" --layer 2 --input "$XQ"
expect_fail "dense: mlp_only_layers" "dense layer.*mlp_only_layers" --model "$CK/qwen2_moe" --layer 3 --input "$XQ"
expect_fail "dense: llama4 interleave" "dense layer.*interleave_moe_layer_step" --model "$CK/llama4" --layer 0 --input "$CK/llama4/llama4.1.x.npy"
expect_fail "dense: jamba period" "dense layer.*expert_layer_period" --model "$CK/jamba" --layer 0 --input "$CK/jamba/jamba.1.x.npy"
expect_fail "dense: ernie start index" "dense layer.*moe_layer_start_index" --model "$CK/ernie4_5_moe" --layer 0 --input "$CK/ernie4_5_moe/ernie4_5_moe.1.x.npy"
expect_fail "dense: mlp_layer_types" "layer 0 is a dense layer.*mlp_layer_types\[0\] = .dense" --model "$CK/mellum" --layer 0 --input "$CK/mellum/mellum.1.x.npy"
expect_fail "dense: num_dense_layers" "layer 0 is a dense layer.*num_dense_layers = 1" --model "$CK/lfm2_moe" --layer 0 --input "$CK/lfm2_moe/lfm2_moe.1.x.npy"
expect_fail "dense: moe_layers_enum" "layer 0 is a dense layer.*not listed in moe_layers_enum" --model "$CK/step3p7" --layer 0 --input "$CK/step3p7/step3p7.1.x.npy"
expect_fail "dense: step3p5 default" "layer 2 is a dense layer.*layers 0\.\.2 are dense" --model "$CK/step3p5" --layer 2 --input "$CK/step3p5/step3p5.3.x.npy"
expect_fail "dense: axk2 legacy rule" "layer 0 is a dense layer.*first_k_dense_replace = 1, moe_layer_freq = 1" --model "$CK/axk2" --layer 0 --input "$CK/axk2/axk2.1.x.npy"
fixture minimax_m3_vl   # older configs: a 0/1 list moe_layer_freq instead of mlp_layer_types
perl -0777 -pi -e 's/"mlp_layer_types": \[[^]]*\]/"moe_layer_freq": [1, 0]/' "$tmp/minimax_m3_vl/config.json"
expect_fail "dense: moe_layer_freq list" "layer 1 is a dense layer.*moe_layer_freq\[1\] = 0" --model "$tmp/minimax_m3_vl" --layer 1 --input "$CK/minimax_m3_vl/minimax_m3_vl.1.x.npy"
expect_fail "dense: layers_block_type" "layer 0 is a dense layer.*layers_block_type\[0\] = .linear_attention" --model "$CK/nemotron_h" --layer 0 --input "$CK/nemotron_h/nemotron_h.1.x.npy"
expect_fail "dense: hybrid_override_pattern" "layer 1 is a dense layer.*hybrid_override_pattern\[1\] = .\*" --model "$CK/nemotron_h_latent" --layer 1 --input "$CK/nemotron_h_latent/nemotron_h_latent.2.x.npy"
fixture gemma4; sed -i 's/"enable_moe_block": true/"enable_moe_block": false/' "$tmp/gemma4/config.json"
expect_fail "dense: enable_moe_block" "layer 1 is a dense layer.*enable_moe_block is false" --model "$tmp/gemma4" --layer 1 --input "$CK/gemma4/gemma4.1.x.npy"
expect_fail "deepseek_v4 hash layer" "layer 2 is a hash-routed layer.*token ids" --model "$CK/deepseek_v4" --layer 2 --input "$CK/deepseek_v4/deepseek_v4.3.x.npy"
expect_fail "stack of another family" "bad --layer 'talker.0'.*not a stack of olmoe" --model "$CK/olmoe" --layer talker.0 --input "$X"
fixture hunyuan_v1_moe; sed -i 's/"moe_topk": \[/"moe_topk": [2], "unused": [/' "$tmp/hunyuan_v1_moe/config.json"
expect_fail "per-layer list too short" "'moe_topk' is a list without an integer for layer 1" --model "$tmp/hunyuan_v1_moe" --layer 1 --input "$CK/hunyuan_v1_moe/hunyuan_v1_moe.1.x.npy"
XS=$CK/switch_transformers/switch_transformers.encoder.1.x.npy
expect_fail "dense: switch encoder.0" "dense" --model "$CK/switch_transformers" --layer encoder.0 --input "$XS"
expect_fail "switch decoder out of range" "out of range.*num_decoder_layers" --model "$CK/switch_transformers" --layer decoder.4 --input "$XS"

expect_fail "--drop without capacity" "--drop applies to layers with an expert capacity" --model "$CK/olmoe" --layer 0 --drop identity --input "$X"

# -- tensors
fixture olmoe   # rename one expert tensor (same length, so the file stays valid)
perl -0777 -pi -e 's/experts\.3\.up_proj\.weight/experts.3.up_prxj.weight/' "$tmp/olmoe/model.safetensors"
expect_fail "missing tensor" "missing tensor 'model\.layers\.0\.mlp\.experts\.3\.up_proj\.weight'" --model "$tmp/olmoe" --layer 0 --input "$X"
fixture mixtral  # sharded: drop a tensor from the index
sed -i '/"model.layers.1.block_sparse_moe.experts.5.w2.weight"/d' "$tmp/mixtral/model.safetensors.index.json"
expect_fail "missing tensor (index)" "missing tensor 'model\.layers\.1\.block_sparse_moe\.experts\.5\.w2\.weight'" --model "$tmp/mixtral" --layer 1 --input "$CK/mixtral/mixtral.1.x.npy"
fixture mixtral; rm "$tmp/mixtral/model-00002-of-00002.safetensors"
expect_fail "missing shard" "model-00002-of-00002" --model "$tmp/mixtral" --layer 1 --input "$CK/mixtral/mixtral.1.x.npy"
fixture olmoe; sed -i 's/"intermediate_size": 36/"intermediate_size": 40/' "$tmp/olmoe/config.json"
expect_fail "wrong shape" "wrong shape \[36, 24\], expected \[40, 24\]" --model "$tmp/olmoe" --layer 0 --input "$X"
fixture olmoe
perl -0777 -pi -e 's/("model\.layers\.0\.mlp\.gate\.weight":\{"data_offsets":\[\d+,\d+\],"dtype":")F32/${1}I32/' "$tmp/olmoe/model.safetensors"
expect_fail "unsupported dtype (I32)" "unsupported dtype I32" --model "$tmp/olmoe" --layer 0 --input "$X"
fixture olmoe; truncate -s 1000 "$tmp/olmoe/model.safetensors"
expect_fail "truncated header" "truncated" --model "$tmp/olmoe" --layer 0 --input "$X"
fixture olmoe; sz=$(stat -c %s "$tmp/olmoe/model.safetensors"); truncate -s $((sz - 64)) "$tmp/olmoe/model.safetensors"
expect_fail "truncated data" "model\.safetensors" --model "$tmp/olmoe" --layer 0 --input "$X"
fixture olmoe; printf '\x0f\x00\x00\x00\x00\x00\x00\x00{"a":[1,2,}    ' > "$tmp/olmoe/model.safetensors"
expect_fail "corrupt header JSON" "model\.safetensors" --model "$tmp/olmoe" --layer 0 --input "$X"
fixture olmoe; rm "$tmp/olmoe/model.safetensors"
expect_fail "no safetensors" "model\.safetensors" --model "$tmp/olmoe" --layer 0 --input "$X"

# -- files that are not regular files (a FIFO blocked the reader forever)
fixture olmoe; rm "$tmp/olmoe/config.json"; mkfifo "$tmp/olmoe/config.json"
expect_fail "config.json is a FIFO" "config\.json: not a regular file \(a FIFO\)" --model "$tmp/olmoe" --layer 0 --input "$X"
mkfifo "$tmp/fifo.npy"
expect_fail "input is a FIFO" "fifo\.npy: not a regular file \(a FIFO\)" --model "$CK/olmoe" --layer 0 --input "$tmp/fifo.npy"
fixture mixtral; rm "$tmp/mixtral/model-00002-of-00002.safetensors"; mkfifo "$tmp/mixtral/model-00002-of-00002.safetensors"
expect_fail "shard is a FIFO" "model-00002-of-00002\.safetensors: not a regular file \(a FIFO\)" --model "$tmp/mixtral" --layer 1 --input "$CK/mixtral/mixtral.1.x.npy"
fixture olmoe; rm "$tmp/olmoe/model.safetensors"; mkfifo "$tmp/olmoe/model.safetensors"
expect_fail "model.safetensors is a FIFO" "model\.safetensors: not a regular file \(a FIFO\)" --model "$tmp/olmoe" --layer 0 --input "$X"
expect_fail "input is a directory" "not a regular file \(a directory\)" --model "$CK/olmoe" --layer 0 --input "$tmp"

# -- input .npy
expect_fail "npy dtype f64" "dtype is '<f8'" --model "$CK/olmoe" --layer 0 --input "$CK/olmoe/olmoe.0.y.npy"
expect_fail "npy dtype i32" "dtype is '<i4'" --model "$CK/olmoe" --layer 0 --input "$CK/olmoe/olmoe.0.e.npy"
dict="{'descr': '<f4', 'fortran_order': False, 'shape': (24,), }"
{ printf '\x93NUMPY\x01\x00\x76\x00%s%*s\n' "$dict" $((117 - ${#dict})) ''; head -c 96 /dev/zero; } > "$tmp/rank1.npy"
expect_fail "npy rank 1" "shape \(24,\) has rank 1, expected \[\.\.\., hidden_size\]" --model "$CK/olmoe" --layer 0 --input "$tmp/rank1.npy"
dict="{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 40), }"
{ printf '\x93NUMPY\x01\x00\x76\x00%s%*s\n' "$dict" $((117 - ${#dict})) ''; head -c 960 /dev/zero; } > "$tmp/rank3w.npy"
expect_fail "npy rank 3, wrong width" "width 40, expected hidden_size 24" --model "$CK/olmoe" --layer 0 --input "$tmp/rank3w.npy"
expect_fail "npy width" "width 40, expected hidden_size 24" --model "$CK/olmoe" --layer 0 --input "$CK/dbrx/dbrx.0.x.npy"
expect_fail "missing input" "nope\.npy" --model "$CK/olmoe" --layer 0 --input "$tmp/nope.npy"
long=$tmp; while [ ${#long} -lt 3400 ]; do long=$long/$(printf 'd%.0s' $(seq 200)); done
expect_fail "long path keeps the reason" "^moe: input $tmp/d+.* \.\.\. d+/.*x\.npy: cannot open: No such file or directory$" --model "$CK/olmoe" --layer 0 --input "$long/x.npy"
fixture mixtral; printf 'PK\003\004\024\000\000\000\010\000archive/data.pkl' > "$tmp/mixtral/model-00002-of-00002.safetensors"
expect_fail "shard is not safetensors" "model-00002-of-00002\.safetensors: not a safetensors file" --model "$tmp/mixtral" --layer 1 --input "$CK/mixtral/mixtral.1.x.npy"

# -- outputs
rm -f "$tmp"/out.*
log=$(build/moe run --model "$CK/olmoe" --layer 0 --input "$X" --output "$tmp/nodir/y.npy" \
      --experts-out "$tmp/out.e.npy" 2>&1); rc=$?
if [ $rc -ne 0 ] && printf '%s' "$log" | grep -q "not writable" && ! ls "$tmp"/out.* >/dev/null 2>&1; then
  ok "unwritable output dir" "rc $rc: $log"; else bad "unwritable output dir" "rc $rc: $log"; fi
log=$(build/moe run --model "$CK/olmoe" --layer 0 --input "$X" --output "$tmp/out.y.npy" \
      --experts-out "$tmp/nodir/e.npy" 2>&1); rc=$?
if [ $rc -ne 0 ] && ! ls "$tmp"/out.* >/dev/null 2>&1; then
  ok "unwritable second output" "rc $rc: $log"; else bad "unwritable second output" "rc $rc: $log"; fi

# -- Kimi-K2 checkpoints say model_type "kimi_k2" and run the deepseek_v3 code
fixture deepseek_v3; sed -i 's/"model_type": "deepseek_v3"/"model_type": "kimi_k2"/' "$tmp/deepseek_v3/config.json"
log=$(build/moe run --model "$tmp/deepseek_v3" --layer 1 --input "$X3" --output "$tmp/kimi.y.npy" 2>&1 &&
      build/npy_compare "$tmp/kimi.y.npy" "$CK/deepseek_v3/deepseek_v3.1.y.npy" 1e-5 2>&1); rc=$?
if [ $rc -eq 0 ]; then ok "kimi_k2 as deepseek_v3" "$log"; else bad "kimi_k2 as deepseek_v3" "rc $rc: $log"; fi

# -- moe_layer_freq: transformers ignores it (every layer from first_k_dense_replace on is MoE),
#    so layer 1 with freq 2 runs the MoE block, with a note
fixture deepseek_v3; sed -i 's/"moe_layer_freq": 1/"moe_layer_freq": 2/' "$tmp/deepseek_v3/config.json"
log=$(build/moe run --model "$tmp/deepseek_v3" --layer 1 --input "$X3" --output "$tmp/freq.y.npy" 2>&1 &&
      build/npy_compare "$tmp/freq.y.npy" "$CK/deepseek_v3/deepseek_v3.1.y.npy" 1e-5 2>&1); rc=$?
if [ $rc -eq 0 ] && printf '%s' "$log" | grep -q "moe_layer_freq = 2 is ignored"; then ok "moe_layer_freq ignored" "$log"
else bad "moe_layer_freq ignored" "rc $rc: $log"; fi

# -- toy run and flags
log=$(build/moe 2>&1); rc=$?
if [ $rc -eq 0 ] && printf '%s' "$log" | grep -q "checksum" && printf '%s' "$log" | grep -q "token 0:"; then
  ok "toy run (no args)" "rc 0"; else bad "toy run (no args)" "rc $rc: $log"; fi
log=$(build/moe run --score sigmoid --experts 16 --k 4 --groups 4 --topk-group 2 --act gelu --stats 2>&1); rc=$?
if [ $rc -eq 0 ] && printf '%s' "$log" | grep -q "aux_loss"; then ok "toy run (options)" "rc 0"
else bad "toy run (options)" "rc $rc: $log"; fi
log=$(build/moe --help 2>&1); rc=$?
if [ $rc -eq 0 ] && printf '%s' "$log" | grep -q -- "--model DIR"; then ok "--help" "rc 0"
else bad "--help" "rc $rc"; fi
# --help lists every model_type the unknown-model_type error lists (both come from hf_table)
fixture olmoe; sed -i 's/"model_type": "olmoe"/"model_type": "nope"/' "$tmp/olmoe/config.json"
known=$(build/moe run --model "$tmp/olmoe" --layer 0 --input "$X" --output "$tmp/o.npy" 2>&1 | sed 's/.*supported://')
missing=""
for mt in $known llama4_text granitemoeshared; do
  printf '%s\n' "$log" | grep -qw -- "$mt" || missing="$missing $mt"
done
if [ -n "$known" ] && [ -z "$missing" ]; then ok "--help lists every model_type" "$(echo $known | wc -w) types"
else bad "--help lists every model_type" "missing:$missing"; fi
for args in "--layer 1" "--seed -1" "--bogus" "--score nope" "--k 0" "--experts" "--k 9 --experts 8" "--score sparsemixer --k 3" "--plain --act swiglu_oai"; do
  # shellcheck disable=SC2086
  log=$(build/moe run $args 2>&1); rc=$?
  if [ $rc -ne 0 ] && [ -n "$log" ]; then ok "toy: $args" "rc $rc: $log"; else bad "toy: $args" "rc $rc: $log"; fi
done
log=$(build/moe frobnicate 2>&1); rc=$?
if [ $rc -ne 0 ] && printf '%s' "$log" | grep -q "unknown command 'frobnicate'"; then ok "unknown command" "rc $rc"
else bad "unknown command" "rc $rc: $log"; fi
log=$(build/moe run --model "$CK/olmoe" --input "$X" --output "$tmp/out.y.npy" 2>&1); rc=$?
if [ $rc -ne 0 ] && printf '%s' "$log" | grep -q -- "--layer"; then ok "model run without --layer" "rc $rc"
else bad "model run without --layer" "rc $rc: $log"; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
