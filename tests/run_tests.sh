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
ok() { pass=$((pass + 1)); printf '  ok    %s\n' "$1"; }
bad() { fail=$((fail + 1)); failed+=("$1"); printf '  FAIL  %s\n' "$1"; }
skipped() { skip=$((skip + 1)); printf '  skipped: %s\n' "$1"; }

# run NAME CMD...: runs a command quietly, shows its output only when it fails
run() {
  local name=$1 log; shift
  log=$(mktemp)
  if "$@" >"$log" 2>&1; then ok "$name"; else bad "$name"; sed 's/^/        /' "$log" | tail -40; fi
  rm -f "$log"
}

C_TESTS=$(ls tests/test_*.c 2>/dev/null)
# the tests fast enough to run under qemu (all of them, unless marked heavy here)
QEMU_SKIP="tests/test_io_fuzz.c tests/test_memory.c tests/test_accuracy.c"

# variant NAME COMPILER FLAGS [RUNNER]: builds every C test with these flags and runs it
variant() {
  local name=$1 cc=$2 flags=$3 runner=${4:-} t exe
  echo "== $name: $cc $flags"
  for t in $C_TESTS; do
    if [ -n "$runner" ] && [[ " $QEMU_SKIP " == *" $t "* ]]; then continue; fi
    exe="$B/$name-$(basename "$t" .c)"
    if ! $cc $flags -I. -Iexamples "$t" -o "$exe" -lm >"$exe.log" 2>&1; then
      bad "$name $(basename "$t") (build)"; sed 's/^/        /' "$exe.log" | head -20; continue
    fi
    run "$name $(basename "$t" .c)" $runner "./$exe"
  done
}

sel=("$@")
want_v() { [ ${#sel[@]} -eq 0 ] && return 0; local v; for v in "${sel[@]}"; do [ "$v" = "$1" ] && return 0; done; return 1; }

cpu_has() { grep -qw "$1" /proc/cpuinfo 2>/dev/null; }

if want_v native; then variant native "${CC:-cc}" "-std=c99 -O2 -march=native -fopenmp $WARN"; fi
if want_v scalar; then variant scalar "${CC:-cc}" "-std=c99 -O2 -DMOE_NO_SIMD $WARN"; fi
if want_v avx2; then
  if cpu_has avx2 && cpu_has fma; then variant avx2 "${CC:-cc}" "-std=c99 -O2 -mavx2 -mfma -fopenmp $WARN"
  else echo "== avx2"; skipped "avx2: this CPU has no AVX2+FMA"; fi
fi
if want_v clang; then
  if have clang; then variant clang clang "-std=c99 -O2 -march=native $WARN"
  else echo "== clang"; skipped "clang not installed"; fi
fi
if want_v asan; then
  if echo 'int main(void){return 0;}' | ${CC:-cc} -x c -fsanitize=address,undefined - -o "$B/asan-probe" >/dev/null 2>&1; then
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      variant asan "${CC:-cc}" "-std=c99 -O1 -g -march=native -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer $WARN"
  else echo "== asan"; skipped "sanitizer runtimes (libasan, libubsan) not installed"; fi
fi
if want_v neon; then
  if have aarch64-linux-gnu-gcc && have qemu-aarch64; then
    variant neon aarch64-linux-gnu-gcc "-std=c99 -O2 -static $WARN" "qemu-aarch64"
  else echo "== neon"; skipped "aarch64-linux-gnu-gcc or qemu-aarch64 not installed"; fi
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

echo
if [ $fail -gt 0 ]; then printf 'failed: %s\n' "${failed[@]}"; fi
echo "tests: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
