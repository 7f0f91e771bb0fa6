#!/bin/sh
# The README's first command: installs the dependencies, builds, syncs this
# machine's /usr/share/doc into the embedded index and searches it.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --build
./scripts/build.sh
CONFIG=examples/usr-share-doc.yml
echo "== sluice sync $CONFIG"
status=0
./build/sluice sync "$CONFIG" || status=$?
# 3 = completed_with_errors: some files were unreadable; the rest is indexed.
if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then exit "$status"; fi
echo "== sluice search $CONFIG search-docs \"copyright license\" --limit 5"
./build/sluice search "$CONFIG" search-docs "copyright license" --limit 5
