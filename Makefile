# moe.h - build the CLI, examples, tests and benchmarks into build/.
#   make            everything (native, OpenMP)
#   make test       every test in every build variant (tests/run_tests.sh says which ran)
#   make run        the toy layer
#   make bench      a short standard benchmark set
# Variants the test runner adds: scalar (-DMOE_NO_SIMD), AVX2 only, clang, C++, MOE_STATIC and
# two translation units, ASan+UBSan, NEON (aarch64 cross compiler + qemu-user).

CC      ?= cc
WARN     = -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror
CFLAGS  ?= -std=c99 -O2 $(WARN)
NATIVE  ?= -march=native
OMP     ?= -fopenmp
INC      = -I. -Iexamples
LDLIBS   = -lm -pthread

EXAMPLES = build/moe $(patsubst examples/%.c,build/%,$(filter-out examples/moe_cli.c,$(wildcard examples/*.c)))
TESTS    = $(patsubst tests/%.c,build/%,$(wildcard tests/test_*.c tests/npy_compare.c))

.PHONY: all examples tests test bench run clean
all: examples tests build/moe-bench
examples: $(EXAMPLES)
tests: $(TESTS)

build:
	mkdir -p build

build/moe: examples/moe_cli.c moe.h $(wildcard examples/*.h) | build
	$(CC) $(CFLAGS) $(NATIVE) $(OMP) $(INC) $< -o $@ $(LDLIBS)

build/%: examples/%.c moe.h $(wildcard examples/*.h) | build
	$(CC) $(CFLAGS) $(NATIVE) $(OMP) $(INC) $< -o $@ $(LDLIBS)

build/%: tests/%.c moe.h $(wildcard examples/*.h) | build
	$(CC) $(CFLAGS) $(NATIVE) $(OMP) $(INC) $< -o $@ $(LDLIBS)

build/moe-bench: bench/moe_bench.c moe.h | build
	$(CC) $(filter-out -O2,$(CFLAGS)) -O3 $(NATIVE) $(OMP) $(INC) -Ibench $< -o $@ $(LDLIBS)

test: all
	bash tests/run_tests.sh

run: build/moe
	build/moe run

bench: build/moe-bench
	build/moe-bench --quick

clean:
	rm -rf build
