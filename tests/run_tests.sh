#!/usr/bin/env bash
# Runs every test in every build variant this machine can build, and prints one line per run and
# a summary line. A variant whose tool is missing is reported as "skipped: <tool> not installed".
# Usage: bash tests/run_tests.sh [variant ...]   (default: all; `make test` runs this)
set -u
cd "$(dirname "$0")/.."
WARN="-Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror"
B=build/variants
mkdir -p "$B"
pass=0 fail=0 skip=0
failed=()

have() { command -v "$1" >/dev/null 2>&1; }
ok() { pass=$((pass + 1)); printf '  ok    %s%s\n' "$1" "${2:+ ($2)}"; }
bad() { fail=$((fail + 1)); failed+=("$1"); printf '  FAIL  %s\n' "$1"; }
skipped() { skip=$((skip + 1)); printf '  skipped: %s\n' "$1"; }

# run NAME CMD...: runs a command quietly, shows its output only when it fails
run() {
  local name=$1 log; shift
  local t0=$SECONDS
  log=$(mktemp)
  if "$@" >"$log" 2>&1; then
    ok "$name" "$((SECONDS - t0)) s"
    # parts a test left out for want of a tool ("skipped: ..." lines) count as skips here
    while IFS= read -r line; do skipped "$name: ${line#skipped: }"; done < <(grep '^skipped: ' "$log")
  else bad "$name"; sed 's/^/        /' "$log" | tail -40; fi
  rm -f "$log"
}

C_TESTS=$(ls tests/test_*.c 2>/dev/null)

# builds run NPROC at a time (every variant compiles moe.h once per test file, which is most of
# the time make test takes); the tests themselves run one at a time
NPROC=$(nproc 2>/dev/null || echo 2)
# build_bg OUT CMD...: runs CMD in the background (output OUT.log, status OUT.rc), NPROC at most
build_bg() {
  local out=$1; shift
  while [ "$(jobs -rp | wc -l)" -ge "$NPROC" ]; do wait -n; done
  ( "$@" >"$out.log" 2>&1; echo $? >"$out.rc" ) &
}

# variant NAME COMPILER FLAGS [RUNNER] [SKIP]: builds every C test with these flags and runs it
# (through RUNNER: qemu, valgrind), except the tests named in SKIP, which this build slows too
# much or adds nothing to (each is run in the other variants); with ONLY set, just those tests
variant() {
  local name=$1 cc=$2 flags=$3 runner=${4:-} skip=${5:-} t exe tests=""
  echo "== $name: $cc $flags${skip:+ (not: $skip)}${ONLY:+ (only: $ONLY)}"
  for t in $C_TESTS; do
    if [[ " $skip " == *" $(basename "$t" .c) "* ]]; then continue; fi
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $(basename "$t" .c) "* ]]; then continue; fi
    tests="$tests $t"
    exe="$B/$name-$(basename "$t" .c)"
    # shellcheck disable=SC2086
    build_bg "$exe" $cc $flags -I. -Iexamples "$t" -o "$exe" -lm -pthread
  done
  wait
  for t in $tests; do
    exe="$B/$name-$(basename "$t" .c)"
    if [ "$(cat "$exe.rc")" != 0 ]; then
      bad "$name $(basename "$t") (build)"; sed 's/^/        /' "$exe.log" | head -20; continue
    fi
    run "$name $(basename "$t" .c)" $runner "./$exe"
  done
}

sel=("$@")
want_v() { [ ${#sel[@]} -eq 0 ] && return 0; local v; for v in "${sel[@]}"; do [ "$v" = "$1" ] && return 0; done; return 1; }

cpu_has() { grep -qw "$1" /proc/cpuinfo 2>/dev/null; }
# can CC build and link a program with these flags?
probe() { local cc=$1; shift; echo 'int main(void){return 0;}' | $cc -x c "$@" - -o "$B/probe" >/dev/null 2>&1; }
FUZZ_SECONDS=${FUZZ_SECONDS:-4}

# the ISA variants (scalar, avx2) do not rerun the tests of file handling and configuration,
# which no kernel choice changes
ISA_SKIP="test_faults test_hf_config test_gguf_fuzz"
if want_v native; then variant native "${CC:-cc}" "-std=c99 -O2 -march=native -fopenmp $WARN"; fi
if want_v scalar; then variant scalar "${CC:-cc}" "-std=c99 -O2 -DMOE_NO_SIMD $WARN" "" "$ISA_SKIP"; fi
if want_v avx2; then
  if cpu_has avx2 && cpu_has fma; then variant avx2 "${CC:-cc}" "-std=c99 -O2 -mavx2 -mfma -fopenmp $WARN" "" "$ISA_SKIP"
  else echo "== avx2"; skipped "avx2: this CPU has no AVX2+FMA"; fi
fi
if want_v clang; then
  if have clang; then variant clang clang "-std=c99 -O2 -march=native $WARN"
  else echo "== clang"; skipped "clang not installed"; fi
fi
# AddressSanitizer in two builds, because UBSan's checks on the unrolled SIMD tiles make a test
# take 4 minutes to compile (ASan alone: 1): asan is ASan+UBSan with the scalar kernels, every
# test (the parsing, loading and layer code is the same on every ISA path); asan-simd is ASan
# with this CPU's kernels, on the tests that run them on every shape and format
SIMD_TESTS="test_kernels test_formats test_blocks test_layer test_determinism"
if want_v asan || want_v asan-simd; then
  if echo 'int main(void){return 0;}' | ${CC:-cc} -x c -fsanitize=address,undefined - -o "$B/asan-probe" >/dev/null 2>&1; then
    if want_v asan; then
      ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        variant asan "${CC:-cc}" "-std=c99 -O1 -g -DMOE_NO_SIMD -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer $WARN"
    fi
    if want_v asan-simd; then
      ONLY=$SIMD_TESTS ASAN_OPTIONS=detect_leaks=1 \
        variant asan-simd "${CC:-cc}" "-std=c99 -O1 -g1 -march=native -fopenmp -fsanitize=address -fno-omit-frame-pointer $WARN"
    fi
  else echo "== asan"; skipped "sanitizer runtimes (libasan, libubsan) not installed"; fi
fi
# ThreadSanitizer: test_threads runs many callers on one layer, test_determinism the thread
# counts, test_layer every parallel loop of a forward pass; the other tests run no threads
TSAN_TESTS="test_threads test_determinism test_layer"
if want_v tsan; then
  if have clang && probe clang -fsanitize=thread; then
    ONLY=$TSAN_TESTS TSAN_OPTIONS="halt_on_error=1" \
      variant tsan clang "-std=c99 -O1 -g -fsanitize=thread $WARN"
  else echo "== tsan"; skipped "clang or its ThreadSanitizer runtime (libclang-rt-14-dev) not installed"; fi
fi
if want_v tsan-omp; then
  # the same with OpenMP teams inside every call: LLVM's libomp, its synchronization made
  # visible to TSan by the Archer tool; tests/tsan.supp says why its own internals are ignored
  archer=$(clang -print-resource-dir 2>/dev/null)/../../libarcher.so
  if have clang && probe clang -fsanitize=thread -fopenmp && [ -f "$archer" ]; then
    ONLY="$TSAN_TESTS test_faults" OMP_TOOL_LIBRARIES=$archer \
      TSAN_OPTIONS="halt_on_error=1 suppressions=$PWD/tests/tsan.supp" \
      variant tsan-omp clang "-std=c99 -O1 -g -fsanitize=thread -fopenmp $WARN"
  else echo "== tsan-omp"; skipped "clang OpenMP with ThreadSanitizer and libarcher.so (libomp-14-dev) not installed"; fi
fi
if want_v neon; then
  if have aarch64-linux-gnu-gcc && have qemu-aarch64; then
    variant neon aarch64-linux-gnu-gcc "-std=c99 -O2 -static $WARN" "qemu-aarch64" \
      "test_io_fuzz test_gguf_fuzz test_memory test_accuracy $ISA_SKIP"
    # the sdot (dotprod) kernels of q8/q4, on qemu's "max" CPU
    ONLY="test_kernels test_determinism" \
      variant neon-dotprod aarch64-linux-gnu-gcc "-std=c99 -O2 -static -march=armv8.2-a+dotprod $WARN" "qemu-aarch64 -cpu max"
  else echo "== neon"; skipped "aarch64-linux-gnu-gcc or qemu-aarch64 not installed"; fi
fi
if want_v valgrind; then
  # memcheck: uninitialised reads, which the sanitizers do not see; no -march=native (valgrind
  # knows AVX2, not AVX-512), no OpenMP (a serial run covers the same code). Left out: the
  # fuzzing loops and the fault injection (thousands of runs, in the sanitizer variants),
  # test_accuracy and test_blocks (the bench presets and every block format: 15 minutes under
  # memcheck, and the asan variants run them), test_memory (it measures RSS, which memcheck's
  # own allocator changes)
  if have valgrind; then
    vflags="-std=c99 -O1 -g $WARN"
    if cpu_has avx2 && cpu_has fma; then vflags="$vflags -mavx2 -mfma"; fi
    variant valgrind "${CC:-cc}" "$vflags" \
      "valgrind -q --error-exitcode=99 --child-silent-after-fork=yes --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect" \
      "test_io_fuzz test_gguf_fuzz test_faults test_accuracy test_blocks test_memory"
  else echo "== valgrind"; skipped "valgrind not installed"; fi
fi
if want_v fuzz; then
  # every libFuzzer target of tests/fuzz/ on its committed corpus, then FUZZ_SECONDS of fuzzing;
  # what it finds new goes to build/, never into tests/corpus/
  if have clang && echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n); int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return d && n ? 0 : 0; }' |
       clang -x c -fsanitize=fuzzer,address,undefined - -o "$B/probe" >/dev/null 2>&1; then
    echo "== fuzz: clang -fsanitize=fuzzer,address,undefined, ${FUZZ_SECONDS}s a target"
    for f in tests/fuzz/fuzz_*.c; do
      t=$(basename "$f" .c); t=${t#fuzz_}; exe="$B/fuzz-$t"
      # shellcheck disable=SC2086
      build_bg "$exe" clang -std=c99 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        $WARN -I. -Iexamples "$f" -o "$exe" -lm
    done
    wait
    for f in tests/fuzz/fuzz_*.c; do
      t=$(basename "$f" .c); t=${t#fuzz_}; exe="$B/fuzz-$t"
      if [ "$(cat "$exe.rc")" != 0 ]; then
        bad "fuzz $t (build)"; sed 's/^/        /' "$exe.log" | head -20; continue
      fi
      rm -rf "$exe.new"; mkdir -p "$exe.new" "tests/corpus/fuzz/$t"
      run "fuzz $t" "./$exe" -seed=1 -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$exe." "$exe.new" "tests/corpus/fuzz/$t"
    done
  else echo "== fuzz"; skipped "clang with libFuzzer (libclang-rt-14-dev) not installed"; fi
fi
if want_v compile; then
  echo "== compile: C++, MOE_STATIC, two translation units, quick start = examples/basic.c"
  run "compile" bash tests/test_compile.sh
fi
if want_v cli; then
  echo "== cli"
  for s in tests/test_*.sh; do
    [ -e "$s" ] || continue
    [ "$s" = tests/test_compile.sh ] && continue
    run "cli $(basename "$s" .sh)" bash "$s"
  done
fi

if want_v python; then
  # examples/moe.py over build/libmoe.so; the first python3 that has numpy (Debian's is
  # /usr/bin/python3, which another python3 may shadow on PATH)
  echo "== python: examples/moe.py against numpy and PyTorch references"
  py=""
  for p in ${PYTHON:-} python3 /usr/bin/python3; do
    if have "$p" && "$p" -c 'import numpy' >/dev/null 2>&1; then py=$p; break; fi
  done
  if [ -n "$py" ]; then run "python test_python" "$py" tests/test_python.py
  else skipped "python3 with numpy (python3-numpy) not installed"; fi
fi

echo
if [ $fail -gt 0 ]; then printf 'failed: %s\n' "${failed[@]}"; fi
echo "tests: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
