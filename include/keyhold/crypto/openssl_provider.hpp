#pragma once
// Token keys inside OpenSSL: an in-process OpenSSL 3 provider ("keyhold") that
// turns a crypto::Signer into an EVP_PKEY, so that plain OpenSSL calls
// (X509_sign_ctx, X509_CRL_sign_ctx, X509_REQ_sign_ctx, OCSP_basic_sign_ctx,
// SSL_CTX_use_PrivateKey and TLS handshakes) sign in the token. The private
// key is never in OpenSSL's memory: the provider buffers the message and
// hands it whole to Signer::sign at the end, which hashes and signs.

#include <openssl/evp.h>

#include <memory>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/crypto/signature_algorithm.hpp"
#include "keyhold/crypto/signer.hpp"

namespace keyhold::crypto {

// keyhold's own OpenSSL library context, created on first use and never
// freed (token EVP_PKEYs refer to it until they are freed, possibly at exit).
// It holds two providers and nothing else:
// - "keyhold" (built in with OSSL_PROVIDER_add_builtin): key management for
//   RSA, EC and ED25519 token keys and their signatures;
// - "base": encoders, so that i2d_PUBKEY of a token key works.
// Not "default": in OpenSSL 3.0 a cached fetch of our "EC" keymgmt would be
// returned for every plain "EC" fetch in the same context (see
// openssl_provider.cpp), routing other keys here. So do everything else,
// SSL_CTX_new included, in the default context (or your own): token keys sign
// from any context, and keys parsed or generated there never reach this
// provider. Keys parsed or generated in this context fail, by design.
// Thread-safe. Throws Internal when OpenSSL cannot set the context up (a
// later call tries again).
OSSL_LIB_CTX* openssl_context();

// An EVP_PKEY (owned by the caller) whose private operations go to signer; it
// keeps the signer alive. Its public parameters (bits, security bits, max
// size, default digest, EC group, encoded public key / n and e / raw Ed25519
// key) are readable and exportable, and EVP_PKEY_eq against the same public
// key from any other provider is 1. The private key is never exportable: any
// export or EVP_PKEY_todata that selects it fails. Signing works from any
// library context (see openssl_provider.cpp for how OpenSSL finds the
// provider). The key cannot verify: use signer->public_key() for that, and
// also as the subject key of certificates and requests (X509_set_pubkey with
// this EVP_PKEY would make the certificate's own public key a token key).
// Thread-safe; the EVP_PKEY may sign from many threads at once.
// InvalidArgument for a null signer or a key type that does not sign (AES);
// Internal when OpenSSL refuses the key.
CPtr<EVP_PKEY, &EVP_PKEY_free> make_token_pkey(std::shared_ptr<const Signer> signer);

// A fresh EVP_MD_CTX initialised for digest-signing with key (from
// make_token_pkey) with algorithm: RSA PKCS#1 v1.5, RSA-PSS (salt = digest
// length, MGF1 with the same digest), ECDSA or Ed25519. Ready for one call of
// X509_sign_ctx, X509_CRL_sign_ctx, X509_REQ_sign_ctx or OCSP_basic_sign_ctx,
// which then write exactly algorithm_identifier(algorithm). Single use: the
// context is finalised by its signature. Thread-safe.
// InvalidArgument when key is not a token key from make_token_pkey or the
// algorithm does not fit it; Internal when OpenSSL fails.
CPtr<EVP_MD_CTX, &EVP_MD_CTX_free> make_sign_context(EVP_PKEY* key, SignatureAlgorithm algorithm);

}  // namespace keyhold::crypto
