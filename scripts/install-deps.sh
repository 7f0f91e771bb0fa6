#!/bin/sh
# Installs the system packages sluice needs on Debian 12. Idempotent:
# packages already present are left alone. Needs root (or sudo).
#   scripts/install-deps.sh          build and test: compilers, libraries, and
#                                    the servers and tools the test suite runs
#   scripts/install-deps.sh --build  only what building needs (the demo and the
#                                    container image)
set -eu

BUILD_PKGS="build-essential cmake pkg-config git ca-certificates
libluajit2-5.1-dev luajit2 libcurl4-openssl-dev libuv1-dev libyaml-dev libssl-dev
libsqlite3-dev sqlite3 lua-cjson-dev libmagic-dev zlib1g-dev
libpq-dev libmariadb-dev libhiredis-dev
libxml2-dev libzip-dev libdeflate-dev libexpat1-dev libuchardet-dev libpoppler-glib-dev libxxhash-dev time"
TEST_PKGS="lua-busted python3 openssl clang libclang-rt-14-dev
postgresql-15 postgresql-client-15 mariadb-server mariadb-client redis-server poppler-utils
libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui"
case "${1:-}" in
--build) PKGS=$BUILD_PKGS ;;
"") PKGS="$BUILD_PKGS $TEST_PKGS" ;;
*) echo "usage: $0 [--build]" >&2; exit 2 ;;
esac

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done
# The database tests load Debian's package index (/var/lib/apt/lists) as
# real input: make sure apt has fetched it.
have_lists() { ls /var/lib/apt/lists/ 2>/dev/null | grep -q '_Packages'; }
if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    if ! have_lists; then
        [ "$(id -u)" -eq 0 ] && apt-get update -q || sudo apt-get update -q
    fi
    exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing$missing"
$SUDO apt-get update -q
# Database servers are started by the tests themselves, on loopback and a
# free port: keep apt from starting system-wide instances of them.
POLICY=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod +x "$POLICY"
    made_policy=1
fi
# luajit2 pins OpenResty's LuaJIT: the plain `luajit` package would replace it.
status=0
$SUDO apt-get install -y -q --no-install-recommends $missing || status=$?
[ "$made_policy" = 1 ] && $SUDO rm -f "$POLICY"
exit $status
