#!/bin/sh
# The whole test suite, as CI runs it (.ci/run calls this): installs the
# dependencies, builds the normal and the ASan+UBSan binaries, then runs the C
# unit tests (ctest) and the busted specs (inside the sluice binary) against
# both builds.
#   scripts/test.sh            everything
#   scripts/test.sh --quick    normal build only, no fuzzing
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
if [ "$QUICK" = 1 ]; then ./scripts/build.sh; else ./scripts/build.sh --asan; fi

# LuaJIT's allocator and libcurl's global state are freed at exit in ways
# LeakSanitizer misreads; leaks are checked separately (valgrind), not here.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

run_suite() {
    dir=$1
    echo "== ctest ($dir)"
    (cd "$dir" && ctest --output-on-failure -j2)
    echo "== busted ($dir)"
    SLUICE_BIN="./$dir/sluice" "./$dir/sluice" lua spec/busted.lua \
        --pattern=_spec --output=utfTerminal spec/
}

run_suite build
if [ "$QUICK" = 0 ]; then
    run_suite build-asan
    # A short libFuzzer run of every extractor entry point and the YAML
    # loader; `spec/fuzz/run.sh 3600` is the long one.
    echo "== fuzz (short)"
    ./spec/fuzz/run.sh 20
fi
echo "== all tests passed"
