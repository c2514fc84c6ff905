#!/usr/bin/env bash
# Compile tests: the header as C99 (gcc, clang; with and without OpenMP), as C++11, under
# MOE_STATIC in two files of one program, as two translation units sharing one implementation,
# and the QUICK START comment in moe.h against examples/basic.c (they must be the same program).
set -u
cd "$(dirname "$0")/.."
W="-Wall -Wextra -Wpedantic -Wshadow -Werror"
WC="$W -Wstrict-prototypes -Wmissing-prototypes"
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
pass=0 fail=0
check() { local name=$1; shift; if "$@" >"$t/log" 2>&1; then pass=$((pass+1)); echo "ok   $name"; else fail=$((fail+1)); echo "FAIL $name"; head -20 "$t/log"; fi; }

printf '#define MOE_IMPLEMENTATION\n#include "moe.h"\nint main(void){return moe_result_string(MOE_OK)[0] != 111;}\n' > "$t/impl.c"
cp "$t/impl.c" "$t/impl.cpp"
for cc in gcc clang; do
  command -v $cc >/dev/null || { echo "skipped: $cc not installed"; continue; }
  check "$cc c99" $cc -std=c99 $WC -O2 -I. "$t/impl.c" -o "$t/a" -lm
  check "$cc c99 -fopenmp" $cc -std=c99 $WC -O2 -fopenmp -I. "$t/impl.c" -o "$t/a" -lm
  check "$cc c99 MOE_NO_SIMD" $cc -std=c99 $WC -O2 -DMOE_NO_SIMD -I. "$t/impl.c" -o "$t/a" -lm
done
if command -v g++ >/dev/null; then
  check "g++ c++11" g++ -std=c++11 $W -O2 -march=native -I. "$t/impl.cpp" -o "$t/a" -lm
  check "g++ c++11 -fopenmp" g++ -std=c++11 $W -O2 -fopenmp -I. "$t/impl.cpp" -o "$t/a" -lm
  check "g++ basic.c as C++" g++ -std=c++11 $W -Wno-missing-field-initializers -O2 -x c++ -I. examples/basic.c -o "$t/basic" -lm
  check "basic (C++) runs" "$t/basic"
else
  echo "skipped: g++ not installed"
fi

# MOE_STATIC: two files each with a private copy of the implementation link into one program
printf '#define MOE_STATIC\n#define MOE_IMPLEMENTATION\n#include "moe.h"\nint f1(void);\nint f1(void){return moe_result_string(MOE_E_DIM)[0];}\n' > "$t/s1.c"
printf '#define MOE_STATIC\n#define MOE_IMPLEMENTATION\n#include "moe.h"\nint f1(void);\nint main(void){return f1() != moe_result_string(MOE_E_DIM)[0];}\n' > "$t/s2.c"
check "MOE_STATIC in two files" sh -c "cc -std=c99 $WC -O2 -I. '$t/s1.c' '$t/s2.c' -o '$t/s' -lm && '$t/s'"
# two translation units: one implementation, one user of the declarations
printf '#define MOE_IMPLEMENTATION\n#include "moe.h"\n' > "$t/u1.c"
printf '#include "moe.h"\n#include <string.h>\nint main(void){return strcmp(moe_result_string(MOE_OK), "ok") != 0;}\n' > "$t/u2.c"
check "two translation units" sh -c "cc -std=c99 $WC -O2 -I. '$t/u1.c' '$t/u2.c' -o '$t/u' -lm && '$t/u'"

# the quick start in the header is examples/basic.c, line for line (basic.c has a 2-line banner)
awk '/QUICK START/{f=1;next} /CONFIGURATION MACROS/{f=0} f' moe.h | sed -e 's/^      //' -e 's/[[:space:]]*$//' | sed '/^$/N;/^\n$/D' | sed -e '1{/^$/d}' -e '${/^$/d}' > "$t/qs.c"
tail -n +3 examples/basic.c | sed 's/[[:space:]]*$//' > "$t/basic.c"
check "quick start == examples/basic.c" diff -u "$t/qs.c" "$t/basic.c"
check "examples/basic.c builds and runs" sh -c "cc -std=c99 $WC -O2 -I. examples/basic.c -o '$t/b' -lm && '$t/b'"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
