#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit, hsm, integration).
# Exits non-zero on any failure. Tests that need SoftHSM fail, never skip, when it is missing.
#   scripts/test.sh            the default preset (RelWithDebInfo, warnings as errors)
#   scripts/test.sh asan       the same tests under AddressSanitizer + UBSan
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-default}"
scripts/install-deps.sh
scripts/build.sh "$preset"
ctest --preset "$preset"
