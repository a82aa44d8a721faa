#!/usr/bin/env bash
# Installs the Debian 12 packages Shareline needs, only those that are missing. Needs root (or sudo).
set -euo pipefail
pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev
      libh2o-dev libuv1-dev libssl-dev zlib1g-dev libhiredis-dev libmsgpack-dev libmariadb-dev
      libjansson-dev libcmocka-dev libmd4c-dev libmd4c-html0-dev libhyperscan-dev libpcre2-dev
      redis-server redis-tools mariadb-server mariadb-client
      libcurl4-openssl-dev curl jq nghttp2-client wrk h2o gnuplot-nox
      chromium fonts-dejavu-core python3 clang-format openssl protobuf-compiler libprotobuf-dev)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Node.js and npm (the Connect conformance test, tests/connect/): Debian's, unless a node and npm
# are already there (from whatever source: another npm package would conflict with it)
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
# The packaged services must not start on install (we run our own under var/); policy-rc.d says so.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
fi
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
