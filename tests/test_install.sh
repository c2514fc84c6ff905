#!/usr/bin/env bash
# Installs moe.h into temporary prefixes and builds examples/basic.c against the installed copy,
# as a user would: `make install PREFIX=...` then pkg-config; `make install DESTDIR=...` and
# `make uninstall`; `cmake --install` then find_package(moe CONFIG); add_subdirectory of this
# tree; FetchContent from a tarball of it. basic.c is compiled from a copy outside the tree, so
# only the installed headers can be found. A missing tool (pkg-config, cmake) is reported as
# "skipped: <tool> not installed".
# Usage: bash tests/test_install.sh     prints one line per check and "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
repo=$PWD
CC=${CC:-cc}
WARN="-Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
have() { command -v "$1" >/dev/null 2>&1; }
# check NAME CMD...: runs CMD, shows its output only when it fails
check() {
  local name=$1; shift
  if "$@" >"$tmp/log" 2>&1; then pass=$((pass + 1)); echo "ok    $name"
  else fail=$((fail + 1)); echo "FAIL  $name"; sed 's/^/        /' "$tmp/log" | tail -30; fi
}
version=$(sed -n 's/^#define MOE_VERSION_\(MAJOR\|MINOR\|PATCH\) *\([0-9]*\).*/\2/p' moe.h | paste -sd.)

make -s build/moe build/moe-bench || exit 1
mkdir -p "$tmp/app"
cp examples/basic.c "$tmp/app/basic.c"
# the companion headers too: a config.json text mapped to a moe_config by the installed copies
cat >"$tmp/app/companion.c" <<'EOF'
#define _DEFAULT_SOURCE /* moe_io.h needs POSIX 2008; before any system header */
#define MOE_IMPLEMENTATION
#include "moe.h"
#define MOE_IO_IMPLEMENTATION
#include "moe_io.h"
#include "hf_config.h"
int main(void) {
    static const char js[] = "{\"model_type\": \"mixtral\", \"hidden_size\": 8, \"intermediate_size\": 16, "
                             "\"num_local_experts\": 4, \"num_experts_per_tok\": 2, \"num_hidden_layers\": 1}";
    mio_json_doc doc;
    hf_plan plan;
    char err[512];
    if (mio_json_parse(&doc, js, sizeof js - 1, "config.json", err, sizeof err) != MIO_OK) return 1;
    int r = hf_plan_layer(&plan, mio_json_root(&doc), "0", err, sizeof err);
    mio_json_free(&doc);
    return r != 0 || moe_config_check(&plan.cfg) != MOE_OK;
}
EOF

# ---- make install PREFIX=
P=$tmp/prefix
check "make install PREFIX" make -s install PREFIX="$P"
check "installed files" sh -c "test -f '$P/include/moe/moe.h' && test -f '$P/include/moe/moe_io.h' &&
  test -f '$P/include/moe/hf_config.h' && test -x '$P/bin/moe' && test -x '$P/bin/moe-bench' &&
  test -f '$P/share/pkgconfig/moe.pc'"
check "installed moe runs the toy layer" "$P/bin/moe"
if have pkg-config; then
  export PKG_CONFIG_PATH=$P/share/pkgconfig
  check "pkg-config --modversion = moe.h's $version" test "$(pkg-config --modversion moe)" = "$version"
  check "pkg-config --cflags" test "$(pkg-config --cflags moe | tr -d ' ')" = "-I$P/include/moe"
  # shellcheck disable=SC2046
  check "basic.c via pkg-config" sh -c "$CC -std=c99 -O2 $WARN $(pkg-config --cflags moe) '$tmp/app/basic.c' \
    -o '$tmp/basic-pc' $(pkg-config --libs moe) && '$tmp/basic-pc' | grep -q '^ok, y\[0\] = '"
  check "basic.c via pkg-config, -fopenmp" sh -c "$CC -std=c99 -O2 -fopenmp $WARN $(pkg-config --cflags moe) \
    '$tmp/app/basic.c' -o '$tmp/basic-pc-omp' $(pkg-config --libs moe) && '$tmp/basic-pc-omp' | grep -q '^ok'"
  check "moe.h + moe_io.h + hf_config.h via pkg-config" sh -c "$CC -std=c99 -O2 $WARN $(pkg-config --cflags moe) \
    '$tmp/app/companion.c' -o '$tmp/companion' $(pkg-config --libs moe) && '$tmp/companion'"
  unset PKG_CONFIG_PATH
else
  echo "skipped: pkg-config not installed"
fi

# ---- DESTDIR (a package build): files under DESTDIR, moe.pc naming the final prefix
S=$tmp/stage
check "make install DESTDIR PREFIX=/opt/moe" make -s install DESTDIR="$S" PREFIX=/opt/moe
check "DESTDIR: files staged, moe.pc prefix=/opt/moe" sh -c "test -f '$S/opt/moe/include/moe/moe.h' &&
  test -x '$S/opt/moe/bin/moe-bench' && grep -qx 'prefix=/opt/moe' '$S/opt/moe/share/pkgconfig/moe.pc'"
check "make uninstall leaves no file" sh -c "make -s uninstall DESTDIR='$S' PREFIX=/opt/moe &&
  test -z \"\$(find '$S' -type f)\""

# ---- CMake
if have cmake; then
  # the user project: basic.c in C, and in C++ where there is a C++ compiler; under OpenMP, a
  # file that fails to compile unless moe::moe brought the flag
  write_app() { # DIR HOW: HOW is the CMake lines that make moe::moe available
    mkdir -p "$1"
    cp examples/basic.c "$1/basic.c"
    cp examples/basic.c "$1/basic_cxx.cpp"
    printf '#ifndef _OPENMP\n#error "moe::moe did not bring OpenMP"\n#endif\nint main(void) { return 0; }\n' >"$1/omp.c"
    cat >"$1/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.14)
project(app C)
include(CheckLanguage)
check_language(CXX)
if(CMAKE_CXX_COMPILER)
  enable_language(CXX)
endif()
$2
add_executable(basic basic.c)
target_link_libraries(basic PRIVATE moe::moe)
if(CMAKE_CXX_COMPILER)
  add_executable(basic_cxx basic_cxx.cpp)
  target_link_libraries(basic_cxx PRIVATE moe::moe)
endif()
if(TARGET OpenMP::OpenMP_C OR APP_OMP_TARGET)
  add_executable(omp omp.c)
  target_link_libraries(omp PRIVATE moe::moe)
endif()
EOF
  }
  # build_app NAME DIR CMAKE-ARGS...: configure, build, run basic (and basic_cxx)
  build_app() {
    local name=$1 dir=$2; shift 2
    check "$name: configure" cmake -S "$dir" -B "$dir/b" "$@"
    check "$name: build" cmake --build "$dir/b"
    check "$name: basic runs" sh -c "'$dir/b/basic' | grep -q '^ok, y\[0\] = '"
    if [ -x "$dir/b/basic_cxx" ]; then check "$name: basic as C++ runs" "$dir/b/basic_cxx"
    else echo "skipped: $name: basic as C++ (no C++ compiler for CMake)"; fi
    if [ -x "$dir/b/omp" ]; then check "$name: OpenMP comes with moe::moe" true
    else echo "skipped: $name: OpenMP (not found by CMake)"; fi
  }
  C=$tmp/cmake-prefix
  check "cmake --install --prefix" sh -c "cmake -S . -B '$tmp/moe-build' && cmake --install '$tmp/moe-build' --prefix '$C'"
  check "cmake install: package and moe.pc" sh -c "test -f '$C/share/cmake/moe/moeConfig.cmake' &&
    test -f '$C/share/cmake/moe/moeConfigVersion.cmake' && test -f '$C/include/moe/hf_config.h' &&
    grep -qx 'prefix=$C' '$C/share/pkgconfig/moe.pc' && grep -qx 'Version: $version' '$C/share/pkgconfig/moe.pc'"
  write_app "$tmp/find" "find_package(moe $version CONFIG REQUIRED)"
  build_app "find_package" "$tmp/find" -DCMAKE_PREFIX_PATH="$C"
  write_app "$tmp/find-newer" "find_package(moe 99.0 CONFIG REQUIRED)"
  check "find_package(moe 99.0) is refused" sh -c "! cmake -S '$tmp/find-newer' -B '$tmp/find-newer/b' -DCMAKE_PREFIX_PATH='$C'"
  write_app "$tmp/subdir" "add_subdirectory(\"$repo\" moe)"
  build_app "add_subdirectory" "$tmp/subdir"
  # the parent found OpenMP first: its targets are the ones moe::moe links
  write_app "$tmp/subdir2" "find_package(OpenMP)
add_subdirectory(\"$repo\" moe)"
  build_app "find_package(OpenMP), then add_subdirectory" "$tmp/subdir2"
  check "add_subdirectory: MOE_OPENMP=OFF leaves OpenMP out" sh -c "cmake -S '$tmp/subdir' -B '$tmp/subdir/b-noomp' \
    -DMOE_OPENMP=OFF -DAPP_OMP_TARGET=ON && cmake --build '$tmp/subdir/b-noomp' --target basic &&
    ! cmake --build '$tmp/subdir/b-noomp' --target omp"
  # FetchContent downloads and unpacks a tarball of the files a release holds
  tar -czf "$tmp/moe-src.tar.gz" -C "$repo" --transform 's|^|moe/|' moe.h moe.pc.in CMakeLists.txt LICENSE examples/moe_io.h examples/hf_config.h
  write_app "$tmp/fetch" "include(FetchContent)
if(POLICY CMP0135)
  cmake_policy(SET CMP0135 NEW) # extracted files get the extraction time
endif()
FetchContent_Declare(moe URL \"file://$tmp/moe-src.tar.gz\")
FetchContent_MakeAvailable(moe)"
  build_app "FetchContent" "$tmp/fetch"
else
  echo "skipped: cmake not installed"
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
