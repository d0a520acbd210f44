#pragma once
// PKCS#11 types (p11-kit's header) and the one table that maps a CK_RV to
// keyhold's error model. Only src/hsm, src/crypto and src/app (the wiring)
// include this file (tests/unit/dependency_rule.sh checks it).

#include <p11-kit/pkcs11.h>

#include <string>
#include <string_view>

#include "keyhold/core/error.hpp"

namespace keyhold::hsm {

// "CKR_PIN_INCORRECT"; "CKR_0x..." for values the table does not know.
std::string rv_name(CK_RV rv);
// "CKM_ECDSA"; "CKM_0x..." for values the table does not know.
std::string mechanism_name(CK_MECHANISM_TYPE mechanism);
// The canonical error code for a PKCS#11 failure (the one table).
ErrorCode error_code_for(CK_RV rv) noexcept;

// Throws keyhold::Error for rv, with a message "<what> failed: <plain words>".
[[noreturn]] void throw_rv(CK_RV rv, std::string_view what);
inline void check(CK_RV rv, std::string_view what) {
  if (rv != CKR_OK) throw_rv(rv, what);
}

// Return values after which a session (or the whole login) is gone: the
// pool is rebuilt, the application logs in again and retries once.
bool is_session_lost(CK_RV rv) noexcept;
// Return values that say a cached object handle is stale: re-find by CKA_ID.
bool is_handle_stale(CK_RV rv) noexcept;

}  // namespace keyhold::hsm
