#!/usr/bin/env bash
# The dependency rule of docs/architecture.md, checked on the sources:
# PKCS#11 and keyhold::hsm only in hsm, crypto and app; store knows only core;
# hsm knows nothing above it. Prints every violation; exits 1 if any.
set -u
root="${1:?usage: dependency_rule.sh SOURCE_DIR}"
cd "$root" || exit 2
status=0

forbid() {  # forbid PATTERN DESCRIPTION DIRS...
  local pattern="$1" what="$2"
  shift 2
  local hits
  hits=$(grep -rnE "$pattern" "$@" 2>/dev/null)
  if [ -n "$hits" ]; then
    echo "dependency rule broken: $what"
    echo "$hits"
    status=1
  fi
}

pkcs11='#include [<"](p11-kit/|keyhold/hsm/)'
forbid "$pkcs11" "PKCS#11 types outside src/hsm, src/crypto and src/app" \
  src/core src/ssh src/store src/service src/cli \
  include/keyhold/core include/keyhold/ssh include/keyhold/store include/keyhold/service include/keyhold/app
forbid '#include "keyhold/(crypto|ssh|service|app|hsm)/' "store depends on core only" src/store include/keyhold/store
forbid '#include "keyhold/(crypto|ssh|store|service|app)/' "hsm knows nothing above it" src/hsm include/keyhold/hsm
forbid '#include "keyhold/(service|app)/' "crypto and ssh do not know the layers above them" \
  src/crypto src/ssh include/keyhold/crypto include/keyhold/ssh
forbid '#include "keyhold/app/' "service does not know app" src/service include/keyhold/service
forbid '#include [<"](p11-kit/|keyhold/(hsm|service|app)/)' "pki knows neither PKCS#11 nor the layers above it" src/pki include/keyhold/pki
forbid '#include "keyhold/pki/' "store, crypto and ssh are below pki" src/store src/crypto src/ssh include/keyhold/store include/keyhold/crypto include/keyhold/ssh
forbid '#include [<"](p11-kit/|keyhold/(hsm|service|app|pki|ssh)/)' "envelope knows neither PKCS#11 nor the layers beside and above it" \
  src/envelope include/keyhold/envelope
forbid '#include "keyhold/envelope/' "store, crypto, ssh and pki are below envelope" \
  src/store src/crypto src/ssh src/pki include/keyhold/store include/keyhold/crypto include/keyhold/ssh include/keyhold/pki
forbid '#include [<"](p11-kit/|keyhold/(hsm|store|pki|ssh|envelope|service|app|http|authz)/)' \
  "audit knows crypto and core only" src/audit include/keyhold/audit
forbid '#include "keyhold/(hsm|crypto|store|pki|ssh|envelope|service|app|http|audit)/' "authz knows core only" \
  src/authz include/keyhold/authz
# http: the transport (server.*) knows core only; the API over it (api, metrics, rate_limiter) knows service
# and what service exposes, never PKCS#11 or app.
forbid '#include [<"](p11-kit/|keyhold/(hsm|crypto|store|pki|ssh|envelope|service|app|audit|authz)/)' \
  "http's transport knows core only" src/http/server.cpp include/keyhold/http/server.hpp
forbid '#include [<"](p11-kit/|keyhold/(hsm|app)/)' "http knows service and below, not PKCS#11 or app" \
  src/http include/keyhold/http
# renew (keyhold renew's file, due logic, file set, HTTPS client) knows core and ssh's formats; the CA host's
# issuance reaches it through renew::LocalAuthority, implemented by the command line over app.
forbid '#include [<"](p11-kit/|keyhold/(hsm|store|pki|envelope|service|app|http|audit|authz)/)' \
  "renew knows core and ssh only" src/renew include/keyhold/renew
# Only crypto's public header for the concrete key ring may name hsm (by forward declaration).
forbid '#include "keyhold/hsm/' "public crypto headers do not include hsm" include/keyhold/crypto
[ $status -eq 0 ] && echo "dependency rule holds"
exit $status
