# moe.h - build the CLI, examples, tests and benchmarks into build/.
#   make            everything (native, OpenMP)
#   make test       every test in every build variant (tests/run_tests.sh says which ran)
#   make run        the toy layer
#   make bench      a short standard benchmark set
#   make lib        build/libmoe.so, moe.h as a shared library (examples/moe.py loads it)
#   make install    headers, the two tools and moe.pc under $(DESTDIR)$(PREFIX); make uninstall
#   build/moe-ep    expert parallelism over MPI (with mpicc; part of `make` where it is found)
# Variants the test runner adds: scalar (-DMOE_NO_SIMD), AVX2 only, clang, C++, MOE_STATIC and
# two translation units, ASan+UBSan, NEON (aarch64 cross compiler + qemu-user).

CC      ?= cc
# build/moe-ep (examples/moe_ep.c, expert parallelism over MPI) is part of `make` only where
# mpicc is found; everything else builds without MPI
MPICC   ?= mpicc
HAVE_MPICC := $(shell command -v $(MPICC) 2>/dev/null)
EP       = $(if $(HAVE_MPICC),build/moe-ep)
WARN     = -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror
CFLAGS  ?= -std=c99 -O2 $(WARN)
NATIVE  ?= -march=native
OMP     ?= -fopenmp
INC      = -I. -Iexamples
LDLIBS   = -lm -pthread

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
INCLUDEDIR ?= $(PREFIX)/include
# header-only, so the .pc file is the same on every architecture: share/, not lib/
PKGCONFIGDIR ?= $(PREFIX)/share/pkgconfig
# installed beside moe.h in $(INCLUDEDIR)/moe/ (a directory of its own: hf_config.h is too
# generic a name for a shared include directory); moe.pc's -I points there, so
# `#include "moe.h"` works as it does in this tree
COMPANION = examples/moe_io.h examples/hf_config.h
moe_version = $(shell sed -n 's/^.define MOE_VERSION_$(1) *\([0-9][0-9]*\).*/\1/p' moe.h)
VERSION := $(call moe_version,MAJOR).$(call moe_version,MINOR).$(call moe_version,PATCH)

EXAMPLES = build/moe $(patsubst examples/%.c,build/%,$(filter-out examples/moe_cli.c examples/moe_lib.c examples/moe_ep.c,$(wildcard examples/*.c)))
TESTS    = $(patsubst tests/%.c,build/%,$(wildcard tests/test_*.c tests/npy_compare.c))

.PHONY: all examples tests test bench run clean lib install uninstall
all: examples tests build/moe-bench lib $(EP)
lib: build/libmoe.so
examples: $(EXAMPLES)
tests: $(TESTS)

build:
	mkdir -p build

build/moe: examples/moe_cli.c moe.h $(wildcard examples/*.h) | build
	$(CC) $(CFLAGS) $(NATIVE) $(OMP) $(INC) $< -o $@ $(LDLIBS)

build/moe-ep: examples/moe_ep.c moe.h $(wildcard examples/*.h) | build
	$(MPICC) $(CFLAGS) $(NATIVE) $(OMP) $(INC) $< -o $@ $(LDLIBS)

build/%: examples/%.c moe.h $(wildcard examples/*.h) | build
	$(CC) $(CFLAGS) $(NATIVE) $(OMP) $(INC) $< -o $@ $(LDLIBS)

build/%: tests/%.c moe.h $(wildcard examples/*.h) | build
	$(CC) $(CFLAGS) $(NATIVE) $(OMP) $(INC) $< -o $@ $(LDLIBS)

build/moe-bench: bench/moe_bench.c moe.h | build
	$(CC) $(filter-out -O2,$(CFLAGS)) -O3 $(NATIVE) $(OMP) $(INC) -Ibench $< -o $@ $(LDLIBS)

# -fvisibility=hidden: only the API (MOEDEF, redefined in moe_lib.c) is exported
build/libmoe.so: examples/moe_lib.c moe.h $(wildcard examples/*.h) | build
	$(CC) $(CFLAGS) $(NATIVE) $(OMP) -fPIC -shared -fvisibility=hidden $(INC) $< -o $@ -lm

install: build/moe build/moe-bench
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCLUDEDIR)/moe $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 moe.h $(COMPANION) $(DESTDIR)$(INCLUDEDIR)/moe/
	install -m 755 build/moe build/moe-bench $(DESTDIR)$(BINDIR)/
	sed -e 's|@MOE_PREFIX@|$(PREFIX)|' -e 's|@MOE_INCLUDEDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|' \
	    -e 's|@MOE_VERSION@|$(VERSION)|' moe.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/moe.pc

uninstall:
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/moe/,moe.h $(notdir $(COMPANION)))
	rmdir $(DESTDIR)$(INCLUDEDIR)/moe 2>/dev/null || true
	rm -f $(DESTDIR)$(BINDIR)/moe $(DESTDIR)$(BINDIR)/moe-bench $(DESTDIR)$(PKGCONFIGDIR)/moe.pc

test: all
	bash tests/run_tests.sh

run: build/moe
	build/moe run

bench: build/moe-bench
	build/moe-bench --quick

clean:
	rm -rf build
