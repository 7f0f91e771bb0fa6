#!/bin/sh
# The container image's build steps, kept here so they are the same steps a
# newcomer runs and the tests exercise (no container engine runs on the
# development machines): install the dependencies, build, and install sluice
# into PREFIX (default /opt/sluice) as PREFIX/bin/sluice with its Lua library,
# connectors and examples in PREFIX/share/sluice, where the binary finds them.
#   scripts/docker-build.sh [PREFIX]
# SLUICE_SKIP_DEPS=1 skips the package installation; SLUICE_BUILD_DIR=DIR
# installs an existing build from DIR instead of building build/.
set -eu
cd "$(dirname "$0")/.."
PREFIX=${1:-/opt/sluice}
if [ "${SLUICE_SKIP_DEPS:-0}" != 1 ]; then
    ./scripts/install-deps.sh --build
fi
BUILD=${SLUICE_BUILD_DIR:-}
if [ -z "$BUILD" ]; then
    ./scripts/build.sh
    BUILD=build
fi
[ -x "$BUILD/sluice" ] || { echo "docker-build: no $BUILD/sluice" >&2; exit 1; }
SHARE="$PREFIX/share/sluice"
mkdir -p "$PREFIX/bin" "$SHARE"
install -m 0755 "$BUILD/sluice" "$PREFIX/bin/sluice"
rm -rf "$SHARE/lualib" "$SHARE/connectors" "$SHARE/examples"
cp -R lualib connectors examples "$SHARE/"
# the installed binary must find its library on its own
"$PREFIX/bin/sluice" connectors >/dev/null
echo "docker-build: installed $PREFIX/bin/sluice"
