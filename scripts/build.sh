#!/bin/sh
# Builds sluice into build/ (and, with --asan, an ASan+UBSan build into
# build-asan/). Assumes the dependencies are installed (scripts/install-deps.sh).
set -eu
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$JOBS"
if [ "${1:-}" = "--asan" ]; then
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=ON >/dev/null
    cmake --build build-asan -j"$JOBS"
fi
