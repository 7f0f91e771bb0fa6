#!/bin/sh
# Installs every system package sluice needs to build and test, on Debian 12.
# Idempotent: packages already present are left alone. Needs root (or sudo).
set -eu

PKGS="build-essential cmake pkg-config git ca-certificates
libluajit2-5.1-dev luajit2 libcurl4-openssl-dev libuv1-dev libyaml-dev libssl-dev
libsqlite3-dev sqlite3 lua-cjson-dev libmagic-dev zlib1g-dev
lua-busted python3 time openssl"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing$missing"
$SUDO apt-get update -q
# luajit2 pins OpenResty's LuaJIT: the plain `luajit` package would replace it.
$SUDO apt-get install -y -q --no-install-recommends $missing
