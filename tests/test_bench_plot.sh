#!/usr/bin/env bash
# moe-bench's outputs and roofline on short toy runs: --output json parses (python3 -m json.tool)
# and starts with the build line; csv and md start with it too; --plot writes a well-formed SVG
# (xmllint --noout) with one point (class="case") per case of the run's json or csv rows;
# --help, --version and bad flags. A missing xmllint or python3 is reported as "skipped: ...".
# Each run measures the machine's ceilings first: a few seconds.
# Usage: bash tests/test_bench_plot.sh     prints one line per check and "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
make -s build/moe-bench || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
have() { command -v "$1" >/dev/null 2>&1; }
check() {
  local name=$1; shift
  if "$@" >"$tmp/log" 2>&1; then pass=$((pass + 1)); echo "ok    $name"
  else fail=$((fail + 1)); echo "FAIL  $name"; sed 's/^/        /' "$tmp/log" | tail -20; fi
}
B=build/moe-bench
short=(--quick --preset toy --threads 1 --repeats 3)
points() { grep -o 'class="case"' "$1" | wc -l; }

check "--help: usage on stdout, exit 0" sh -c "$B --help >'$tmp/h' 2>'$tmp/he' && grep -q '^usage:' '$tmp/h' && grep -q -- '--plot FILE' '$tmp/h' && test ! -s '$tmp/he'"
check "--version: the build line, exit 0" sh -c "$B --version | grep -Eq '^moe-bench: moe\.h [0-9]+\.[0-9]+\.[0-9]+, kernels (avx512|avx2|neon|scalar) '"
check "an unknown flag: usage on stderr, exit 2" sh -c "$B --bogus >'$tmp/o' 2>'$tmp/e'; test \$? = 2 && grep -q '^usage:' '$tmp/e' && test ! -s '$tmp/o'"
check "--output xml: exit 2" sh -c "$B --output xml 2>/dev/null; test \$? = 2"
check "--tokens=x: exit 2 naming the flag" sh -c "$B --tokens=1,x 2>'$tmp/e'; test \$? = 2 && grep -q -- \"--tokens '1,x': not a comma list\" '$tmp/e'"
check "--experts 0: exit 2" sh -c "$B --experts 0 2>'$tmp/e'; test \$? = 2 && grep -q -- \"--experts '0'\" '$tmp/e'"
check "--tokens without a value: exit 2" sh -c "$B --tokens 2>'$tmp/e'; test \$? = 2 && grep -q -- '--tokens needs a value' '$tmp/e'"
check "an unknown preset: exit 2 before measuring, naming the presets" sh -c "$B --preset=toy,qwen4 >'$tmp/o' 2>'$tmp/e'; test \$? = 2 && grep -q \"unknown preset 'qwen4' (qwen3, \" '$tmp/e' && test ! -s '$tmp/o'"
check "--plot into a missing directory fails before measuring" sh -c "$B --plot '$tmp/no/such/x.svg' 2>'$tmp/e'; test \$? = 1 && grep -q 'cannot write' '$tmp/e'"

# json + plot: three cases (tokens 1, 16, 128)
if check "json run with --plot" sh -c "$B ${short[*]} --output json --plot '$tmp/j.svg' >'$tmp/j.json'"; then
  if have python3; then
    check "json parses (python3 -m json.tool)" python3 -m json.tool "$tmp/j.json"
    n=$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(len(d["cases"]) if d["build"].startswith("moe.h ") and d["ceilings"] else -1)' "$tmp/j.json" 2>/dev/null)
  else
    echo "skipped: python3 not installed (json parse)"
    n=$(grep -c '"preset": ' "$tmp/j.json")
  fi
  check "json: 3 cases, a point per case in the SVG ($(points "$tmp/j.svg") points)" test "${n:-0}" = 3 -a "$(points "$tmp/j.svg")" = 3
  if have xmllint; then check "SVG of the json run is well-formed (xmllint)" xmllint --noout "$tmp/j.svg"
  else echo "skipped: xmllint not installed (libxml2-utils)"; fi
fi

# csv (--csv is --output csv) + plot: four cases of two formats
if check "csv run with --plot" sh -c "$B ${short[*]} --tokens 1,8 --dtype f32,q8 --csv --plot '$tmp/c.svg' >'$tmp/c.csv'"; then
  check "csv: the build line first, as a comment" sh -c "head -1 '$tmp/c.csv' | grep -q '^# moe\.h '"
  rows=$(grep -c '^toy,' "$tmp/c.csv")
  check "csv: 4 rows, a point per row in the SVG ($(points "$tmp/c.svg") points)" test "$rows" = 4 -a "$(points "$tmp/c.svg")" = 4
  check "csv: every row has the header's column count" sh -c "awk -F, '/^preset,/{n=NF} /^toy,/{if (NF != n) exit 1}' '$tmp/c.csv'"
  check "SVG labels name preset, tokens and format" sh -c "grep -q '>toy T=8 q8<' '$tmp/c.svg'"
  if have xmllint; then check "SVG of the csv run is well-formed (xmllint)" xmllint --noout "$tmp/c.svg"
  else echo "skipped: xmllint not installed (libxml2-utils)"; fi
fi

# --opt=value spellings, and a warning for each flag that changes nothing: --experts above
# every preset's count, --csv beside --output, --threads above the processors (run as moe.h
# runs it, at the processors' count)
procs=$(nproc 2>/dev/null || echo 2)
if check "--opt=value run" sh -c "$B --quick --preset=toy --threads=$((procs + 7)) --repeats=3 --tokens=1 --experts=4096 --csv --output=md >'$tmp/w.md' 2>'$tmp/w.err'"; then
  check "warning: --experts 4096 has no effect" grep -q 'warning: --experts 4096 has no effect' "$tmp/w.err"
  check "warning: --csv and --output both given, md used" sh -c "grep -q 'warning: --csv and --output both given: the last one, md' '$tmp/w.err' && grep -q '^| toy |' '$tmp/w.md'"
  check "warning: --threads above the processors, run with $procs" sh -c "grep -q 'warning: --threads $((procs + 7)) exceeds the $procs processors' '$tmp/w.err' && grep -q '^| toy | f32 | $procs | 1 |' '$tmp/w.md' && grep -q '^- ceilings, $procs threads' '$tmp/w.md'"
fi
check "no warning for a run whose flags all count" sh -c "$B --quick --preset toy --threads 1 --repeats 3 --tokens 1 >/dev/null 2>'$tmp/n.err' && ! grep -q warning '$tmp/n.err'"

# md: the build line, then a Markdown table with a row per case
if check "md run" sh -c "$B ${short[*]} --tokens 1 --output md >'$tmp/m.md'"; then
  check "md: build line, header, separator, 1 row" sh -c "head -1 '$tmp/m.md' | grep -q '^moe\.h ' &&
    grep -q '^| preset | dtype |' '$tmp/m.md' && grep -q '^|---|' '$tmp/m.md' && test \"\$(grep -c '^| toy |' '$tmp/m.md')\" = 1"
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
