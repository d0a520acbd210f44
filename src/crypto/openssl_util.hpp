#pragma once
// RAII for OpenSSL handles and the OpenSSL error queue, inside src/crypto.

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <memory>
#include <string>
#include <string_view>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/error.hpp"

namespace keyhold::crypto {

using EvpPkeyPtr = CPtr<EVP_PKEY, &EVP_PKEY_free>;
using EvpPkeyCtxPtr = CPtr<EVP_PKEY_CTX, &EVP_PKEY_CTX_free>;
using EvpMdCtxPtr = CPtr<EVP_MD_CTX, &EVP_MD_CTX_free>;
using BioPtr = CPtr<BIO, &BIO_free_all>;
using BignumPtr = CPtr<BIGNUM, &BN_free>;
using ParamBuildPtr = CPtr<OSSL_PARAM_BLD, &OSSL_PARAM_BLD_free>;
using ParamsPtr = CPtr<OSSL_PARAM, &OSSL_PARAM_free>;

// The oldest OpenSSL error as text, clearing the queue.
inline std::string openssl_error() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return buf;
}

[[noreturn]] inline void throw_openssl(ErrorCode code, std::string_view what) {
  throw Error(code, std::string(what) + ": " + openssl_error());
}

}  // namespace keyhold::crypto
