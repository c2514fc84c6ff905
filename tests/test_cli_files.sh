#!/usr/bin/env bash
# What `build/moe run --model ...` does to files: the outputs of a run appear together or not
# at all, a failed run leaves every existing file as it was, no output may be one of the run's
# inputs or a file of the checkpoint, the temporary names are unpredictable and short. Each
# case prepares files, runs the CLI and compares every file of the work directories byte for
# byte with what it held before (and the listing: nothing added, nothing left behind).
# Usage: bash tests/test_cli_files.sh     one line per case and "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
make -s build/moe || exit 1
CK=tests/checkpoints
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); printf 'ok    %-44s %s\n' "$1" "$2"; }
bad() { fail=$((fail + 1)); printf 'FAIL  %-44s %s\n' "$1" "$2"; }

W=$tmp/w          # the outputs' directory
M=$tmp/m          # a private copy of the checkpoint
# fresh NAME: W with three existing outputs (distinct bytes), M a copy of checkpoint NAME
fresh() {
  rm -rf "$W" "$M"; mkdir -p "$W"; cp -r "$CK/$1" "$M"
  printf 'old y' > "$W/y.npy"; printf 'old e' > "$W/e.npy"; printf 'old w' > "$W/w.npy"
  cp "$M"/*.x.npy "$W/x.npy" 2>/dev/null || cp "$CK/$1"/*.x.npy "$W/x.npy"
}
# snapshot: a checksum of every file under W and M, and their listing
snap() { (cd "$tmp" && find w m -print0 | LC_ALL=C sort -z | xargs -0 sha256sum 2>/dev/null; find w m | LC_ALL=C sort); }

# expect_refused CASE "message regex" ARGS...: moe fails with the message, every file as it was
expect_refused() {
  local name=$1 words=$2 before after log rc; shift 2
  before=$(snap)
  log=$(timeout 60 build/moe run "$@" 2>&1); rc=$?
  log=$(printf '%s' "$log" | tr '\n' ' ')
  after=$(snap)
  if [ $rc -eq 0 ]; then bad "$name" "exit 0: $log"
  elif ! printf '%s' "$log" | grep -Eq -- "$words"; then bad "$name" "message lacks /$words/: $log"
  elif [ "$before" != "$after" ]; then bad "$name" "files changed: $(diff <(echo "$before") <(echo "$after") | head -4 | tr '\n' ' ')"
  else ok "$name" "rc $rc: $log"; fi
}

RUN_OLMOE="--model $M --layer 0"

# -- one output cannot be written: none is, the existing ones keep their bytes
fresh olmoe; mkdir "$W/edir"
expect_refused "experts-out is a directory" "experts-out.*not a regular file" \
  $RUN_OLMOE --input "$W/x.npy" --output "$W/y.npy" --experts-out "$W/edir" --weights-out "$W/w.npy"
fresh olmoe
expect_refused "experts-out in a missing directory" "directory .* is missing or not writable" \
  $RUN_OLMOE --input "$W/x.npy" --output "$W/y.npy" --experts-out "$W/nodir/e.npy"
fresh olmoe; mkdir "$W/ro"; printf 'old' > "$W/ro/w.npy"; chmod 555 "$W/ro"
if [ -w "$W/ro" ]; then printf "skip  %-44s %s\n" "weights-out in a read-only directory" "running as root"
else expect_refused "weights-out in a read-only directory" "missing or not writable" \
  $RUN_OLMOE --input "$W/x.npy" --output "$W/y.npy" --weights-out "$W/ro/w.npy"; fi
chmod 755 "$W/ro"

# -- two outputs naming the same file
fresh olmoe
expect_refused "output and experts-out the same" "--output '.*y\.npy' and --experts-out '.*y\.npy' name the same file" \
  $RUN_OLMOE --input "$W/x.npy" --output "$W/y.npy" --experts-out "$W/y.npy"
expect_refused "the same file spelled twice" "name the same file" \
  $RUN_OLMOE --input "$W/x.npy" --output "$W/y.npy" --weights-out "$W/../w/./y.npy"
ln -s y.npy "$W/link.npy"
expect_refused "the same file through a symlink" "name the same file" \
  $RUN_OLMOE --input "$W/x.npy" --output "$W/y.npy" --weights-out "$W/link.npy"
expect_refused "a new file named twice" "name the same file" \
  $RUN_OLMOE --input "$W/x.npy" --output "$W/new.npy" --experts-out "$W/./new.npy"

# -- an output over an input or a file of the checkpoint
fresh olmoe
expect_refused "output is the input" "refusing to write --output .*: it is the input \(--input\)" \
  $RUN_OLMOE --input "$W/x.npy" --output "$W/x.npy"
ln -s x.npy "$W/xlink.npy"
expect_refused "output is a symlink to the input" "it is the input" \
  $RUN_OLMOE --input "$W/x.npy" --output "$W/xlink.npy"
ln "$W/x.npy" "$W/xhard.npy"
expect_refused "output is a hard link to the input" "it is the input" \
  $RUN_OLMOE --input "$W/x.npy" --output "$W/xhard.npy"
expect_refused "output is model.safetensors" "refusing to write --output .*model\.safetensors.*a file of the checkpoint" \
  $RUN_OLMOE --input "$W/x.npy" --output "$M/model.safetensors"
expect_refused "experts-out is config.json" "refusing to write --experts-out .*config\.json" \
  $RUN_OLMOE --input "$W/x.npy" --output "$W/y.npy" --experts-out "$M/config.json"
fresh mixtral
expect_refused "weights-out is a shard" "refusing to write --weights-out .*model-00002-of-00002\.safetensors.*checkpoint" \
  --model "$M" --layer 1 --input "$W/x.npy" --output "$W/y.npy" --weights-out "$M/model-00002-of-00002.safetensors"
expect_refused "output is the index" "refusing to write --output .*index\.json.*checkpoint" \
  --model "$M" --layer 1 --input "$W/x.npy" --output "$M/./model.safetensors.index.json"

# -- a run that fails after reading: the existing outputs keep their bytes
fresh olmoe
perl -0777 -pi -e 's/experts\.3\.up_proj\.weight/experts.3.up_prxj.weight/' "$M/model.safetensors"
expect_refused "missing tensor, outputs kept" "missing tensor" \
  $RUN_OLMOE --input "$W/x.npy" --output "$W/y.npy" --experts-out "$W/e.npy" --weights-out "$W/w.npy"

# -- success: a user's OUT.partial and other files are not touched, nothing is left behind
fresh olmoe
printf 'mine' > "$W/y.npy.partial"; printf 'mine too' > "$W/y.npy.tmp"
cp "$W/y.npy.partial" "$tmp/keep1"; cp "$W/y.npy.tmp" "$tmp/keep2"
log=$(build/moe run $RUN_OLMOE --input "$W/x.npy" --output "$W/y.npy" --experts-out "$W/e.npy" \
      --weights-out "$W/w.npy" 2>&1); rc=$?
left=$(cd "$W" && ls -A | LC_ALL=C sort | tr '\n' ' ')
if [ $rc -eq 0 ] && cmp -s "$W/y.npy.partial" "$tmp/keep1" && cmp -s "$W/y.npy.tmp" "$tmp/keep2" &&
   [ "$left" = "e.npy w.npy x.npy y.npy y.npy.partial y.npy.tmp " ] &&
   [ "$(head -c 6 "$W/y.npy" | tail -c 5)" = "NUMPY" ] && [ "$(head -c 6 "$W/e.npy" | tail -c 5)" = "NUMPY" ]; then
  ok "user files beside the outputs untouched" "rc 0, directory: $left"
else bad "user files beside the outputs untouched" "rc $rc, directory: $left: $log"; fi
# the outputs are those of a run into an empty directory, byte for byte
mkdir "$tmp/ref"
build/moe run $RUN_OLMOE --input "$W/x.npy" --output "$tmp/ref/y.npy" --experts-out "$tmp/ref/e.npy" \
  --weights-out "$tmp/ref/w.npy" >/dev/null 2>&1
if cmp -s "$W/y.npy" "$tmp/ref/y.npy" && cmp -s "$W/e.npy" "$tmp/ref/e.npy" && cmp -s "$W/w.npy" "$tmp/ref/w.npy"; then
  ok "replaced outputs equal a fresh run" "y, e, w"
else bad "replaced outputs equal a fresh run" "differ"; fi

# -- an output name of 250 bytes (a suffix on it would pass NAME_MAX, 255)
fresh olmoe
long=$(printf 'y%.0s' $(seq 246)).npy
log=$(build/moe run $RUN_OLMOE --input "$W/x.npy" --output "$W/$long" 2>&1); rc=$?
if [ $rc -eq 0 ] && cmp -s "$W/$long" "$tmp/ref/y.npy" && [ "$(cd "$W" && ls -A | wc -l)" -eq 5 ]; then
  ok "output name of 250 bytes" "rc 0"
else bad "output name of 250 bytes" "rc $rc: $log"; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
