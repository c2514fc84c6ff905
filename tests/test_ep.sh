#!/usr/bin/env bash
# Expert parallelism over MPI (build/moe-ep, examples/moe_ep.c) against one process (build/moe):
#   - every checkpoint fixture of tests/checkpoints/cases.txt (capacity ones included: moe-ep
#     applies capacity over the global token order), as it is and in one more packed format
#     (each of f32, bf16, f16, q8, q4, fp8, mxfp4, the bf16 dot, q4 with f32 shared experts in
#     turn), on N = 1, 2, 3, 4 ranks: Y, E and W are
#     byte for byte build/moe run's (cmp), whatever the token split (even, all on one rank,
#     zero-token ranks, skewed) and the OpenMP threads per rank (1 or 2); --stats prints the
#     same per-expert load, aux and z losses, dropped slots and y checksum;
#   - fewer tokens than ranks: 2-token inputs cut from some fixtures, on 3 and 4 ranks; zero
#     tokens; a [B][T][d] input (outputs of its leading shape, as build/moe writes them);
#   - failures stop every rank with a message naming the failed rank, never a hang: one rank
#     given a model directory that does not exist, one whose checkpoint has no tensor files,
#     one whose config.json states other shapes (its tensors do not fit), mismatched options
#     (--dtype) and a different checkpoint (caught by the layer digest); a failed job of
#     --jobs does not stop the next one;
#   - --bench on a toy layer with experts that do not divide over the ranks (its own check that
#     the expert-parallel output is the one-process output).
# One mpirun per rank count runs all the cases (--jobs): its start-up, not the layers, is the
# cost. Needs mpicc and mpirun (Open MPI: openmpi-bin, libopenmpi-dev); prints "skipped: ..."
# and passes without them.
set -u
cd "$(dirname "$0")/.."
if ! command -v mpicc >/dev/null 2>&1 || ! command -v mpirun >/dev/null 2>&1; then
  echo "skipped: mpicc/mpirun not installed"
  exit 0
fi
make -s build/moe build/moe-ep || exit 1
# Open MPI refuses root without these. --bind-to none: Open MPI binds each rank to one core by
# default, which would cap --threads 2 at one thread. mpi n ARGS: up to a rank per core the
# ranks poll (yield_when_idle 0); with more ranks than cores (--oversubscribe) they yield the
# core while they wait, else a waiting rank would spin on the core the others need
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cores=$(nproc 2>/dev/null || echo 1)
mpi() {
  local n=$1; shift
  if [ "$n" -le "$cores" ]; then timeout 300 mpirun --bind-to none --mca mpi_yield_when_idle 0 -np "$n" "$@"
  else timeout 300 mpirun --bind-to none --oversubscribe -np "$n" "$@"; fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { fail=$((fail + 1)); printf 'FAIL  %s\n' "$*"; }

# npy_rows FILE: the tokens of a float32 [..., D] .npy, the product of its shape but the last
npy_rows() {
  local dims n=1 i
  IFS=', ' read -ra dims <<<"$(head -c 256 "$1" | tr -d '\000' | LC_ALL=C sed -n "s/.*'shape': (\([^)]*\)).*/\1/p" | head -1)"
  for ((i = 0; i < ${#dims[@]} - 1; i++)); do n=$((n * dims[i])); done
  echo $n
}
# npy_head FILE T OUT [LEAD]: the first T rows of FILE as a new .npy (a version 1.0 header of
# 128 bytes) of shape (T, D), or (LEAD, D) when LEAD is given ("1, 7": [1][7][D])
npy_head() {
  local hl d cols
  hl=$(od -An -tu2 -j8 -N2 "$1" | tr -d ' ')
  cols=$(head -c 256 "$1" | tr -d '\000' | LC_ALL=C sed -n "s/.*'shape': ([0-9]*, *\([0-9]*\)).*/\1/p" | head -1)
  d="{'descr': '<f4', 'fortran_order': False, 'shape': (${4:-$2}, $cols), }"
  { printf '\223NUMPY\001\000\166\000'; printf '%-117s\n' "$d"; tail -c +$((hl + 11)) "$1" | head -c $(($2 * cols * 4)); } >"$3"
}
# split N T V: a --split for T tokens on N ranks, variant V (empty: the even default)
split() {
  local n=$1 t=$2 v=$3 r s=""
  case $v in
    0) return ;;
    1) for ((r = 0; r < n - 1; r++)); do s="${s}0,"; done; echo "--split ${s}$t" ;; # all on the last
    2) if [ "$t" -lt $((n - 1)) ] || [ "$n" -eq 1 ]; then return; fi                # skewed: 1 each, the rest on rank 0
       s=$((t - n + 1)); for ((r = 1; r < n; r++)); do s="$s,1"; done; echo "--split $s" ;;
    3) local odd=$(((n + 1) / 2)) at=0 c                                              # the odd ranks get none
       for ((r = 0; r < n; r++)); do
         if [ $((r % 2)) -eq 1 ]; then c=0; else c=$(((at + 1) * t / odd - at * t / odd)); at=$((at + 1)); fi
         s="$s${s:+,}$c"
       done
       echo "--split $s" ;;
  esac
}

# the references, one process: every case as cases.txt gives it, and again packed in another
# format (a different one for each case, in turn); 2-token inputs cut from some cases
formats=("f32" "bf16" "f16" "q8" "q4" "fp8" "mxfp4" "bf16 --bf16-dot" "q4 --shared-dtype f32")
small="mixtral.1 deepseek_v3.1 switch_transformers.encoder.1 llama4.1 longcat_flash.1 nemotron_h_latent.2 qwen2_moe.1"
cases=()
while read -r name dir layer stem flags; do
  case "$name" in ''|'#'*) continue ;; esac
  d=tests/checkpoints/$dir
  cases+=("$name|$d|$layer|$d/$stem.x.npy|$flags")
  f=${formats[$(( ${#cases[@]} % ${#formats[@]} ))]}
  cases+=("$name.${f%% *}|$d|$layer|$d/$stem.x.npy|$flags --dtype $f")
  if [[ " $small " == *" $name "* ]]; then
    npy_head "$d/$stem.x.npy" 2 "$tmp/$name.x2.npy"
    cases+=("$name.t2|$d|$layer|$tmp/$name.x2.npy|$flags")
  fi
  if [ "$name" = mixtral.1 ]; then # zero tokens, and a [B][T][d] input (7 tokens as 1 x 7)
    npy_head "$d/$stem.x.npy" 0 "$tmp/$name.x0.npy"
    npy_head "$d/$stem.x.npy" 7 "$tmp/$name.x3.npy" "1, 7"
    cases+=("$name.t0|$d|$layer|$tmp/$name.x0.npy|$flags" "$name.b1|$d|$layer|$tmp/$name.x3.npy|$flags")
  fi
done < tests/checkpoints/cases.txt
for c in "${cases[@]}"; do
  IFS='|' read -r name d layer x flags <<<"$c"
  # shellcheck disable=SC2086 # the case's flags are words
  if ! build/moe run --model "$d" --layer "$layer" $flags --input "$x" --output "$tmp/$name.y.npy" \
      --experts-out "$tmp/$name.e.npy" --weights-out "$tmp/$name.w.npy" --stats >"$tmp/$name.ref" 2>&1; then
    bad "$name: build/moe run failed: $(cat "$tmp/$name.ref")"
  fi
done
# the lines both tools print with --stats: load per expert, losses, dropped, y checksum
stats() { grep -E '^(load \(tokens|  |aux_loss|y checksum)' "$@"; }

for n in 1 2 3 4; do
  jobs=$tmp/jobs.$n
  : >"$jobs"
  i=0
  for c in "${cases[@]}"; do
    IFS='|' read -r name d layer x flags <<<"$c"
    t=$(npy_rows "$x")
    echo "--model $d --layer $layer $flags --input $x --output $tmp/$name.$n.y.npy --experts-out $tmp/$name.$n.e.npy" \
      "--weights-out $tmp/$name.$n.w.npy --stats --threads $((1 + i % 2)) $(split $n "$t" $((i % 4)))" >>"$jobs"
    i=$((i + 1))
  done
  t0=$SECONDS
  if ! mpi $n build/moe-ep run --jobs "$jobs" >"$tmp/out.$n" 2>"$tmp/err.$n"; then
    bad "N=$n: moe-ep failed:"; tail -20 "$tmp/err.$n"
  fi
  same=0 differ=0
  for c in "${cases[@]}"; do
    IFS='|' read -r name d layer x flags <<<"$c"
    ok=1
    for f in y e w; do cmp -s "$tmp/$name.$f.npy" "$tmp/$name.$n.$f.npy" || ok=0; done
    if [ $ok = 1 ]; then same=$((same + 1)); else differ=$((differ + 1)); bad "N=$n $name: Y/E/W differ from build/moe run"; fi
  done
  for c in "${cases[@]}"; do IFS='|' read -r name _ <<<"$c"; stats "$tmp/$name.ref"; done >"$tmp/stats.ref"
  if ! stats "$tmp/out.$n" | diff "$tmp/stats.ref" - >"$tmp/stats.diff"; then
    bad "N=$n: --stats differs from build/moe run's:"; head -10 "$tmp/stats.diff"
  fi
  echo "N=$n: $same of ${#cases[@]} cases byte-identical to build/moe run, stats identical ($((SECONDS - t0)) s)"
done

# expect_fail NAME PATTERN... -- MPIRUN ARGS: the run must fail (not time out), and its
# messages hold every pattern (mpirun --oversubscribe: the ranks of an MPMD line are counted
# apart)
expect_fail() {
  local name=$1 rc p; shift
  local pats=()
  while [ "$1" != -- ]; do pats+=("$1"); shift; done
  shift
  timeout 300 mpirun --bind-to none --oversubscribe "$@" >"$tmp/f.out" 2>"$tmp/f.err"
  rc=$?
  if [ $rc = 0 ]; then bad "$name: exited 0"; return; fi
  if [ $rc = 124 ]; then bad "$name: hung (killed after 300 s)"; return; fi
  for p in "${pats[@]}"; do
    if ! grep -qF -- "$p" "$tmp/f.err"; then bad "$name: no '$p' in:"; sed 's/^/        /' "$tmp/f.err" | head -20; return; fi
  done
  echo "ok    $name (exit $rc): $(grep -m1 -F 'rank 0 of' "$tmp/f.err")"
}
m=tests/checkpoints/mixtral
run=(build/moe-ep run --layer 1 --input $m/mixtral.1.x.npy --output "$tmp/f.y.npy")
expect_fail "a model directory missing on rank 1" \
  "rank 1 of 2: model directory '$tmp/none' not found" "rank 0 of 2: stopped: rank 1 failed: model directory" -- \
  -np 1 "${run[@]}" --model $m : -np 1 "${run[@]}" --model "$tmp/none"
mkdir -p "$tmp/notensors" && cp $m/config.json "$tmp/notensors/"
expect_fail "no tensor files on rank 2" \
  "rank 2 of 3:" "rank 0 of 3: stopped: rank 2 failed:" "rank 1 of 3: stopped: rank 2 failed:" -- \
  -np 2 "${run[@]}" --model $m : -np 1 "${run[@]}" --model "$tmp/notensors"
mkdir -p "$tmp/shapes" && ln -s "$PWD"/$m/*.safetensors* "$tmp/shapes/"
sed 's/"intermediate_size": *[0-9]*/"intermediate_size": 24/' $m/config.json >"$tmp/shapes/config.json"
expect_fail "a layer whose tensors do not fit its config on rank 1" \
  "rank 1 of 2: tensor 'model.layers.1.block_sparse_moe.experts" "rank 0 of 2: stopped: rank 1 failed: tensor" "has wrong shape" -- \
  -np 1 "${run[@]}" --model $m : -np 1 "${run[@]}" --model "$tmp/shapes"
expect_fail "mismatched --dtype" \
  "rank 0 of 2: the options differ across ranks: rank 1 against rank 0 (rank 0: run dtype=f32" "rank 1: run dtype=bf16" -- \
  -np 1 "${run[@]}" --model $m --dtype f32 : -np 1 "${run[@]}" --model $m --dtype bf16
q=tests/checkpoints/qwen3_moe
mkdir -p "$tmp/other" && ln -s "$PWD"/$q/*.safetensors* "$tmp/other/"
sed 's/"norm_topk_prob": *true/"norm_topk_prob": false/' $q/config.json >"$tmp/other/config.json"
runq=(build/moe-ep run --layer 1 --input $q/qwen3_moe.1.x.npy --output "$tmp/f.y.npy")
expect_fail "a different checkpoint on rank 1 (layer digest)" \
  "rank 0 of 2: the layers differ across ranks: rank 1 against rank 0" -- \
  -np 1 "${runq[@]}" --model $q : -np 1 "${runq[@]}" --model "$tmp/other"
printf '%s\n' "--model $m --layer 1 --input $tmp/none.npy --output $tmp/j1.y.npy" \
  "--model $m --layer 1 --input $m/mixtral.1.x.npy --output $tmp/j2.y.npy" >"$tmp/jobs.f"
expect_fail "a failed job, then a good one" "stopped: rank 0 failed: input" "job 1 failed" -- \
  -np 2 build/moe-ep run --jobs "$tmp/jobs.f"
cmp -s "$tmp/j2.y.npy" "$tmp/mixtral.1.y.npy" || bad "the job after a failed one: Y differs or is missing"

# the benchmark's own check, experts that do not divide over the ranks (6 over 4)
if mpi 4 build/moe-ep --bench --d 32 --ff 16 --experts 6 --k 2 --tokens 1,3 --iters 2 \
    >"$tmp/b.out" 2>&1 && [ "$(grep -c 'output bits identical' "$tmp/b.out")" = 2 ]; then
  echo "ok    --bench on 4 ranks, 6 experts: $(grep -m1 'layer (slowest' "$tmp/b.out")"
else
  bad "--bench:"; tail -20 "$tmp/b.out"
fi

[ $fail -eq 0 ] && echo "all passed"
[ $fail -eq 0 ]
