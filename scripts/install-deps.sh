#!/usr/bin/env bash
# The one list of Debian 12 packages keyhold needs to build, run and test.
# Installs only what is missing; prints nothing when everything is there.
set -euo pipefail

packages=(
  # build
  g++ cmake ninja-build pkg-config
  libp11-kit-dev libssl-dev libsqlite3-dev
  libboost-dev libboost-program-options-dev nlohmann-json3-dev libtomlplusplus-dev
  libgtest-dev libgmock-dev libbenchmark-dev libbotan-2-dev
  # run: the token (SoftHSM2 for development and tests) and p11-kit's module registry
  softhsm2 p11-kit p11-kit-modules
  # independent peers the tests check keyhold against
  opensc openssl gnutls-bin openssh-client openssh-server sqlite3 curl
  libengine-pkcs11-openssl  # bench/pki_bench: openssl x509 -req with the CA key in the token
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
