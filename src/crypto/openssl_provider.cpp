// The "keyhold" OpenSSL 3 provider: key management and signatures for token
// keys, built into keyhold's own library context.
//
// How OpenSSL 3.0 finds this provider for a token key (crypto/evp/m_sigver.c
// do_sigver_init and crypto/evp/signature.c evp_pkey_signature_init, 3.0.x):
// the EVP_PKEY_CTX takes the key's own EVP_KEYMGMT (ours), asks it for the
// signature name (query_operation_name), then tries
//   1. EVP_SIGNATURE_fetch in the library context of the EVP_MD_CTX / SSL_CTX,
//      then exports the key to that signature provider's keymgmt
//      (evp_pkey_export_to_provider, with OSSL_KEYMGMT_SELECT_ALL);
//   2. the signature of that name from the key's own provider.
// Our signatures are named "KEYHOLD-RSA", "KEYHOLD-ECDSA", "KEYHOLD-ED25519",
// which no other provider offers, and export refuses any selection with the
// private key. So in any library context (the default one, keyhold's, or
// another) a token key ends at our signature, and never as a public-only copy
// at someone else's. The keymgmt names are the standard ones ("RSA", "EC",
// "ED25519" with their aliases and OIDs): libssl picks the certificate slot
// with EVP_PKEY_is_a(key, "rsaEncryption"/"id-ecPublicKey"/"ED25519") and
// EVP_PKEY_eq needs matching key types (keymgmt_lib.c match_type). A provided
// key has no ameth, so ASN1_item_sign_ctx (X.509, CRL, CSR, OCSP) writes the
// AlgorithmIdentifier from our "algorithm-id".
//
// Why keyhold's context holds no "default" provider: the method cache of
// OpenSSL 3.0 (crypto/property/property.c query_cmp) ignores the provider
// when the lookup has none, so once step 2 above (or any fetch from our
// provider) has cached our "EC" keymgmt for the empty property query, every
// later plain EVP_KEYMGMT_fetch(ctx, "EC", NULL) in that context returns ours,
// whatever the default properties say. With "default" beside us, ECDHE key
// generation of an SSL_CTX in keyhold's context, or decoding a key there,
// would then reach this provider. So keyhold's context has only "keyhold" and
// "base" (encoders and decoders, no keymgmt): any key made or parsed there
// that is not a token key fails instead of landing here. SSL_CTXs and all
// other OpenSSL work belong in the default context (or the application's),
// where token keys still sign through step 2.
//
// libssl 3.0 signs TLS 1.2/1.3 CertificateVerify with EVP_DigestSignInit_ex
// in the SSL_CTX's library context, then one-shot EVP_DigestSign (size query,
// then sign), after EVP_PKEY_CTX_set_rsa_padding(PSS) and saltlen "digest"
// for RSA (ssl/statem/statem_lib.c tls_construct_cert_verify). It checks
// usable digests with EVP_DigestSignInit_ex too (t1_lib.c check_cert_usable).
// It never calls EVP_PKEY_sign, so this provider offers no raw-digest sign:
// every signature goes through Signer::sign with the whole message.
//
// Contracts followed: provider-base(7) (init, errors, reason strings),
// provider-keymgmt(7), provider-signature(7), OSSL_PARAM(3).

#include "keyhold/crypto/openssl_provider.hpp"

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cstdarg>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <optional>
#include <source_location>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "openssl_util.hpp"

namespace keyhold::crypto {
namespace {

constexpr char kProviderName[] = "keyhold";
constexpr char kProviderProperties[] = "provider=keyhold";
// keymgmt import parameter: a single-use ticket that make_token_pkey issues
// for one signer. Nothing from outside keyhold is ever turned into a pointer.
constexpr char kTicketParam[] = "keyhold-signer-ticket";
// keymgmt gettable parameter: the keyhold key type ("ec-p256", ...).
constexpr char kKeyTypeParam[] = "keyhold-key-type";
// Certificates and CRLs of ~10 MB are expected; the cap keeps a runaway
// caller from growing the buffer without bound.
constexpr std::size_t kMaxMessage = std::size_t{64} << 20;

// ---------------------------------------------------------------------------
// Errors: raised through the core's error functions so that they carry the
// provider's own library name and reason strings (provider-base(7),
// "Core functions" and OSSL_FUNC_provider_get_reason_strings).

enum Reason : unsigned int {
  kReasonSignFailed = 1,
  kReasonUnsupported,
  kReasonPrivateKeyInToken,
  kReasonBadKey,
  kReasonBufferTooSmall,
  kReasonMessageTooLarge,
  kReasonInternal,
};

const OSSL_ITEM kReasonStrings[] = {
    {kReasonSignFailed, const_cast<char*>("the token could not sign")},
    {kReasonUnsupported, const_cast<char*>("not supported for keyhold token keys")},
    {kReasonPrivateKeyInToken, const_cast<char*>("the private key stays in the token")},
    {kReasonBadKey, const_cast<char*>("not a usable keyhold token key")},
    {kReasonBufferTooSmall, const_cast<char*>("signature buffer too small")},
    {kReasonMessageTooLarge, const_cast<char*>("message too large to sign")},
    {kReasonInternal, const_cast<char*>("internal error in the keyhold provider")},
    {0, nullptr},
};

struct Provider {
  const OSSL_CORE_HANDLE* handle = nullptr;
  OSSL_FUNC_core_new_error_fn* new_error = nullptr;
  OSSL_FUNC_core_set_error_debug_fn* set_error_debug = nullptr;
  OSSL_FUNC_core_vset_error_fn* vset_error = nullptr;
};

void set_error(const Provider* provider, unsigned int reason, const char* format, ...) {
  va_list args;
  va_start(args, format);
  provider->vset_error(provider->handle, reason, format, args);
  va_end(args);
}

// Never throws: it is called from the catch blocks at the C boundary.
void report(const Provider* provider, Reason reason, const char* what, const char* detail = nullptr,
           std::source_location where = std::source_location::current()) noexcept {
  if (provider == nullptr || provider->new_error == nullptr || provider->vset_error == nullptr) {
    ERR_raise_data(ERR_LIB_PROV, ERR_R_INTERNAL_ERROR, "keyhold provider: %s", what);
    return;
  }
  provider->new_error(provider->handle);
  if (provider->set_error_debug != nullptr) {
    provider->set_error_debug(provider->handle, where.file_name(), static_cast<int>(where.line()),
                              where.function_name());
  }
  if (detail != nullptr && *detail != '\0') {
    set_error(provider, reason, "%s: %s", what, detail);
  } else {
    set_error(provider, reason, "%s", what);
  }
}

// A failure inside a callback that is reported with its own reason.
struct Failure {
  Reason reason;
  std::string detail;
};

// Runs a callback body; no C++ exception crosses into OpenSSL's C frames.
template <class Result, class Body>
Result guarded(const Provider* provider, const char* what, Result failure, Body&& body) noexcept {
  try {
    return body();
  } catch (const Failure& f) {
    report(provider, f.reason, what, f.detail.c_str());
  } catch (const Error& e) {
    // keyhold::Error comes from Signer::sign: the token refused or failed.
    report(provider, kReasonSignFailed, what, e.what());
  } catch (const std::bad_alloc&) {
    report(provider, kReasonInternal, what, "out of memory");
  } catch (const std::exception& e) {
    report(provider, kReasonInternal, what, e.what());
  } catch (...) {
    report(provider, kReasonInternal, what, "unexpected exception");
  }
  return failure;
}

// ---------------------------------------------------------------------------
// Keys, digests and algorithms.

enum class KeyKind { Rsa, Ec, Ed25519 };

std::optional<KeyKind> kind_of(KeyType type) {
  switch (type) {
    case KeyType::Rsa2048:
    case KeyType::Rsa3072:
    case KeyType::Rsa4096: return KeyKind::Rsa;
    case KeyType::EcP256:
    case KeyType::EcP384: return KeyKind::Ec;
    case KeyType::Ed25519: return KeyKind::Ed25519;
    case KeyType::Aes256: return std::nullopt;
  }
  return std::nullopt;
}

const char* keymgmt_name(KeyKind kind) {
  switch (kind) {
    case KeyKind::Rsa: return "RSA";
    case KeyKind::Ec: return "EC";
    case KeyKind::Ed25519: return "ED25519";
  }
  return "";
}

// Names no other provider uses, so that signature fetches by these names
// find only this provider (see the top of the file).
const char* signature_name(KeyKind kind) {
  switch (kind) {
    case KeyKind::Rsa: return "KEYHOLD-RSA";
    case KeyKind::Ec: return "KEYHOLD-ECDSA";
    case KeyKind::Ed25519: return "KEYHOLD-ED25519";
  }
  return "";
}

enum class Digest { None, Sha256, Sha384, Sha512 };

std::size_t digest_size(Digest digest) {
  switch (digest) {
    case Digest::Sha256: return 32;
    case Digest::Sha384: return 48;
    case Digest::Sha512: return 64;
    case Digest::None: return 0;
  }
  return 0;
}

const char* digest_label(Digest digest) {
  switch (digest) {
    case Digest::Sha256: return "SHA256";
    case Digest::Sha384: return "SHA384";
    case Digest::Sha512: return "SHA512";
    case Digest::None: return "";
  }
  return "";
}

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    return lower(x) == lower(y);
  });
}

// Digest names as callers spell them: libssl passes EVP_MD_get0_name
// ("SHA2-256"), applications "SHA256" or "sha-256" or the OID. OpenSSL
// algorithm names are case-insensitive.
std::optional<Digest> parse_digest(std::string_view name) {
  struct Alias {
    Digest digest;
    std::string_view names[4];
  };
  static constexpr Alias kAliases[] = {
      {Digest::Sha256, {"SHA256", "SHA2-256", "SHA-256", "2.16.840.1.101.3.4.2.1"}},
      {Digest::Sha384, {"SHA384", "SHA2-384", "SHA-384", "2.16.840.1.101.3.4.2.2"}},
      {Digest::Sha512, {"SHA512", "SHA2-512", "SHA-512", "2.16.840.1.101.3.4.2.3"}},
  };
  if (name.empty()) return Digest::None;
  for (const Alias& alias : kAliases) {
    for (std::string_view n : alias.names) {
      if (equal_ignoring_case(n, name)) return alias.digest;
    }
  }
  return std::nullopt;
}

Digest default_digest(KeyType type) {
  std::optional<SignatureAlgorithm> algorithm = default_signature_algorithm(type);
  return algorithm ? parse_digest(digest_name(*algorithm)).value_or(Digest::None) : Digest::None;
}

struct KeyData {
  const Provider* provider;
  KeyKind kind;
  std::shared_ptr<const Signer> signer;  // null until imported from a ticket

  EVP_PKEY* public_key() const { return signer->public_key().evp(); }
};

// Single-use tickets from make_token_pkey to the keymgmt import. A ticket
// lives only while make_token_pkey runs, and is gone once redeemed.
class SignerTickets {
 public:
  static SignerTickets& instance() {
    static SignerTickets tickets;
    return tickets;
  }

  std::uint64_t issue(std::shared_ptr<const Signer> signer) {
    std::lock_guard lock(mutex_);
    std::uint64_t ticket = next_++;
    pending_.emplace(ticket, std::move(signer));
    return ticket;
  }

  std::shared_ptr<const Signer> redeem(std::uint64_t ticket) {
    std::lock_guard lock(mutex_);
    auto it = pending_.find(ticket);
    if (it == pending_.end()) return nullptr;
    std::shared_ptr<const Signer> signer = std::move(it->second);
    pending_.erase(it);
    return signer;
  }

  void cancel(std::uint64_t ticket) noexcept {
    std::lock_guard lock(mutex_);
    pending_.erase(ticket);
  }

 private:
  std::mutex mutex_;
  std::uint64_t next_ = 1;
  std::unordered_map<std::uint64_t, std::shared_ptr<const Signer>> pending_;
};

// Type-checked dispatch entries: the explicit Fn makes the compiler check
// each callback against OpenSSL's declared function type.
template <class Fn>
OSSL_DISPATCH entry(int id, Fn* function) {
  return {id, reinterpret_cast<void (*)()>(function)};
}

// ---------------------------------------------------------------------------
// Key management (provider-keymgmt(7)).

template <KeyKind K>
void* keymgmt_new(void* provctx) {
  const auto* provider = static_cast<const Provider*>(provctx);
  return guarded<void*>(provider, "creating a token key object", nullptr,
                        [&]() -> void* { return new KeyData{provider, K, nullptr}; });
}

void keymgmt_free(void* keydata) { delete static_cast<KeyData*>(keydata); }

// A bound token key has everything: public key, parameters, and a private
// key, which is in the token (has() reports presence, not exportability).
int keymgmt_has(const void* keydata, int selection) {
  const auto* key = static_cast<const KeyData*>(keydata);
  if (key == nullptr) return 0;
  if ((selection & OSSL_KEYMGMT_SELECT_ALL) == 0) return 1;
  return key->signer != nullptr ? 1 : 0;
}

int keymgmt_match(const void* keydata1, const void* keydata2, int selection) {
  const auto* a = static_cast<const KeyData*>(keydata1);
  const auto* b = static_cast<const KeyData*>(keydata2);
  if (a == nullptr || b == nullptr) return 0;
  return guarded<int>(a->provider, "comparing token keys", 0, [&] {
    if (a->signer == nullptr || b->signer == nullptr || a->kind != b->kind) return 0;
    // Comparing a key pair is comparing public keys: the token's private key
    // is the one that belongs to the public key.
    ERR_set_mark();
    int equal = 1;
    if ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0) {
      equal = EVP_PKEY_eq(a->public_key(), b->public_key()) == 1 ? 1 : 0;
    } else if ((selection & OSSL_KEYMGMT_SELECT_ALL_PARAMETERS) != 0) {
      equal = EVP_PKEY_parameters_eq(a->public_key(), b->public_key()) == 1 ? 1 : 0;
    }
    ERR_pop_to_mark();
    return equal;
  });
}

// The public parameters each kind forwards from the signer's public key.
template <KeyKind K>
bool is_forwarded_param(std::string_view name) {
  if (name == OSSL_PKEY_PARAM_BITS || name == OSSL_PKEY_PARAM_SECURITY_BITS || name == OSSL_PKEY_PARAM_MAX_SIZE) {
    return true;
  }
  if constexpr (K == KeyKind::Rsa) {
    return name == OSSL_PKEY_PARAM_RSA_N || name == OSSL_PKEY_PARAM_RSA_E;
  } else if constexpr (K == KeyKind::Ec) {
    return name == OSSL_PKEY_PARAM_GROUP_NAME || name == OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY ||
           name == OSSL_PKEY_PARAM_PUB_KEY;
  } else {
    return name == OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY || name == OSSL_PKEY_PARAM_PUB_KEY;
  }
}

template <KeyKind K>
int keymgmt_get_params(void* keydata, OSSL_PARAM params[]) {
  const auto* key = static_cast<const KeyData*>(keydata);
  if (key == nullptr) return 0;
  return guarded<int>(key->provider, "reading token key parameters", 0, [&] {
    if (key->signer == nullptr) throw Failure{kReasonBadKey, "the key object is not bound to a token signer"};
    std::vector<OSSL_PARAM*> forwarded;
    for (OSSL_PARAM* p = params; p != nullptr && p->key != nullptr; ++p) {
      std::string_view name = p->key;
      if (name == kKeyTypeParam) {
        std::string type(to_string(key->signer->key_type()));
        if (OSSL_PARAM_set_utf8_string(p, type.c_str()) != 1) throw Failure{kReasonInternal, "key type"};
      } else if (name == OSSL_PKEY_PARAM_DEFAULT_DIGEST && K != KeyKind::Ed25519) {
        // keyhold's pairing (P-384 with SHA-384), not OpenSSL's SHA-256 for every curve.
        if (OSSL_PARAM_set_utf8_string(p, digest_label(default_digest(key->signer->key_type()))) != 1) {
          throw Failure{kReasonInternal, "default digest"};
        }
      } else if (name == OSSL_PKEY_PARAM_MANDATORY_DIGEST && K == KeyKind::Ed25519) {
        // As OpenSSL's own Ed25519: an empty mandatory digest means "no digest".
        if (OSSL_PARAM_set_utf8_string(p, "") != 1) throw Failure{kReasonInternal, "mandatory digest"};
      } else if (is_forwarded_param<K>(name)) {
        forwarded.push_back(p);
      }
      // Anything else, the private key above all, stays unset: e.g.
      // EVP_PKEY_get_bn_param(key, "d") fails.
    }
    if (forwarded.empty()) return 1;
    std::vector<OSSL_PARAM> query;
    query.reserve(forwarded.size() + 1);
    for (OSSL_PARAM* p : forwarded) query.push_back(*p);
    query.push_back(OSSL_PARAM_construct_end());
    if (EVP_PKEY_get_params(key->public_key(), query.data()) != 1) {
      throw Failure{kReasonInternal, "the public key did not give its parameters"};
    }
    for (std::size_t i = 0; i < forwarded.size(); ++i) forwarded[i]->return_size = query[i].return_size;
    return 1;
  });
}

template <KeyKind K>
const OSSL_PARAM* keymgmt_gettable_params(void*) {
  if constexpr (K == KeyKind::Rsa) {
    static const OSSL_PARAM params[] = {
        OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, nullptr),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, nullptr),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, nullptr),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, nullptr, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, nullptr, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, nullptr, 0),
        OSSL_PARAM_utf8_string(kKeyTypeParam, nullptr, 0),
        OSSL_PARAM_END,
    };
    return params;
  } else if constexpr (K == KeyKind::Ec) {
    static const OSSL_PARAM params[] = {
        OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, nullptr),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, nullptr),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, nullptr),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, nullptr, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, nullptr, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, nullptr, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, nullptr, 0),
        OSSL_PARAM_utf8_string(kKeyTypeParam, nullptr, 0),
        OSSL_PARAM_END,
    };
    return params;
  } else {
    static const OSSL_PARAM params[] = {
        OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, nullptr),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, nullptr),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, nullptr),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_MANDATORY_DIGEST, nullptr, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, nullptr, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, nullptr, 0),
        OSSL_PARAM_utf8_string(kKeyTypeParam, nullptr, 0),
        OSSL_PARAM_END,
    };
    return params;
  }
}

// Only a ticket from make_token_pkey binds a key object to a signer. Key
// material from elsewhere (OpenSSL cross-exporting another provider's key
// here, e.g. in EVP_PKEY_eq) is refused without an error on the queue: this
// key management holds token keys only, and OpenSSL then uses the other
// provider's.
template <KeyKind K>
int keymgmt_import(void* keydata, int, const OSSL_PARAM params[]) {
  auto* key = static_cast<KeyData*>(keydata);
  if (key == nullptr) return 0;
  return guarded<int>(key->provider, "binding a token key", 0, [&] {
    const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, kTicketParam);
    if (p == nullptr) return 0;
    std::uint64_t ticket = 0;
    if (OSSL_PARAM_get_uint64(p, &ticket) != 1) throw Failure{kReasonBadKey, "malformed signer ticket"};
    if (key->signer != nullptr) throw Failure{kReasonBadKey, "the key object is already bound"};
    std::shared_ptr<const Signer> signer = SignerTickets::instance().redeem(ticket);
    if (signer == nullptr) throw Failure{kReasonBadKey, "unknown or already used signer ticket"};
    if (kind_of(signer->key_type()) != K) {
      throw Failure{kReasonBadKey, std::string("a ") + std::string(to_string(signer->key_type())) +
                                       " signer is not a " + keymgmt_name(K) + " key"};
    }
    key->signer = std::move(signer);
    return 1;
  });
}

const OSSL_PARAM* keymgmt_import_types(int) {
  static const OSSL_PARAM params[] = {OSSL_PARAM_uint64(kTicketParam, nullptr), OSSL_PARAM_END};
  return params;
}

// Public parts only (provider-keymgmt(7) "Key Object Import and Export"):
// enough for EVP_PKEY_eq, encoders and copies to other providers. Any
// selection with the private key fails; that also keeps OpenSSL from copying
// a token key to another provider before signing (m_sigver.c exports with
// OSSL_KEYMGMT_SELECT_ALL).
int keymgmt_export(void* keydata, int selection, OSSL_CALLBACK* callback, void* callback_arg) {
  const auto* key = static_cast<const KeyData*>(keydata);
  if (key == nullptr) return 0;
  return guarded<int>(key->provider, "exporting a token key", 0, [&] {
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
      throw Failure{kReasonPrivateKeyInToken, "only the public key and its parameters can be exported"};
    }
    if (key->signer == nullptr) throw Failure{kReasonBadKey, "the key object is not bound to a token signer"};
    int what = (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0 ? EVP_PKEY_PUBLIC_KEY : EVP_PKEY_KEY_PARAMETERS;
    OSSL_PARAM* exported = nullptr;
    if (EVP_PKEY_todata(key->public_key(), what, &exported) != 1) {
      throw Failure{kReasonInternal, "the public key could not be exported"};
    }
    ParamsPtr owned(exported);
    return callback(exported, callback_arg);
  });
}

template <KeyKind K>
const OSSL_PARAM* keymgmt_export_types(int selection) {
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
    static const OSSL_PARAM none[] = {OSSL_PARAM_END};
    return none;
  }
  if constexpr (K == KeyKind::Rsa) {
    static const OSSL_PARAM params[] = {
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, nullptr, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, nullptr, 0),
        OSSL_PARAM_END,
    };
    return params;
  } else if constexpr (K == KeyKind::Ec) {
    static const OSSL_PARAM params[] = {
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, nullptr, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, nullptr, 0),
        OSSL_PARAM_END,
    };
    return params;
  } else {
    static const OSSL_PARAM params[] = {
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, nullptr, 0),
        OSSL_PARAM_END,
    };
    return params;
  }
}

// EVP_PKEY_dup copies a token key whole (same signer); a copy of only some
// parts (EVP_PKEY_copy_parameters into an empty key) would still sign, so it
// is refused.
void* keymgmt_dup(const void* keydata, int selection) {
  const auto* key = static_cast<const KeyData*>(keydata);
  if (key == nullptr) return nullptr;
  return guarded<void*>(key->provider, "copying a token key", nullptr, [&]() -> void* {
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) == 0) {
      throw Failure{kReasonUnsupported, "a token key is copied whole or not at all"};
    }
    return new KeyData(*key);
  });
}

template <KeyKind K>
const char* keymgmt_query_operation_name(int operation_id) {
  return operation_id == OSSL_OP_SIGNATURE ? signature_name(K) : nullptr;
}

template <KeyKind K>
const OSSL_DISPATCH* keymgmt_dispatch() {
  static const OSSL_DISPATCH table[] = {
      entry<OSSL_FUNC_keymgmt_new_fn>(OSSL_FUNC_KEYMGMT_NEW, &keymgmt_new<K>),
      entry<OSSL_FUNC_keymgmt_free_fn>(OSSL_FUNC_KEYMGMT_FREE, &keymgmt_free),
      entry<OSSL_FUNC_keymgmt_has_fn>(OSSL_FUNC_KEYMGMT_HAS, &keymgmt_has),
      entry<OSSL_FUNC_keymgmt_match_fn>(OSSL_FUNC_KEYMGMT_MATCH, &keymgmt_match),
      entry<OSSL_FUNC_keymgmt_get_params_fn>(OSSL_FUNC_KEYMGMT_GET_PARAMS, &keymgmt_get_params<K>),
      entry<OSSL_FUNC_keymgmt_gettable_params_fn>(OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, &keymgmt_gettable_params<K>),
      entry<OSSL_FUNC_keymgmt_import_fn>(OSSL_FUNC_KEYMGMT_IMPORT, &keymgmt_import<K>),
      entry<OSSL_FUNC_keymgmt_import_types_fn>(OSSL_FUNC_KEYMGMT_IMPORT_TYPES, &keymgmt_import_types),
      entry<OSSL_FUNC_keymgmt_export_fn>(OSSL_FUNC_KEYMGMT_EXPORT, &keymgmt_export),
      entry<OSSL_FUNC_keymgmt_export_types_fn>(OSSL_FUNC_KEYMGMT_EXPORT_TYPES, &keymgmt_export_types<K>),
      entry<OSSL_FUNC_keymgmt_dup_fn>(OSSL_FUNC_KEYMGMT_DUP, &keymgmt_dup),
      entry<OSSL_FUNC_keymgmt_query_operation_name_fn>(OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME,
                                                        &keymgmt_query_operation_name<K>),
      {0, nullptr},
  };
  return table;
}

// ---------------------------------------------------------------------------
// Signatures (provider-signature(7)). The message is buffered, never hashed
// here: Signer::sign gets exactly the bytes OpenSSL asked to sign.

struct SignSettings {
  Digest digest = Digest::None;
  bool pss = false;
  std::optional<int> salt_length;  // nullopt: the digest length
  std::optional<Digest> mgf1;      // nullopt: the digest
};

struct SignContext {
  const Provider* provider;
  KeyKind kind;
  std::shared_ptr<const Signer> signer;  // set by digest_sign_init
  SignSettings settings;
  std::vector<std::uint8_t> message;
};

// The algorithm the settings name, or a Failure that says why there is none.
SignatureAlgorithm algorithm_of(KeyKind kind, const SignSettings& s) {
  std::optional<SignatureAlgorithm> algorithm;
  switch (kind) {
    case KeyKind::Rsa:
      if (s.digest == Digest::Sha256) {
        algorithm = s.pss ? SignatureAlgorithm::RsaPssSha256 : SignatureAlgorithm::RsaPkcs1Sha256;
      } else if (s.digest == Digest::Sha384) {
        algorithm = s.pss ? SignatureAlgorithm::RsaPssSha384 : SignatureAlgorithm::RsaPkcs1Sha384;
      } else if (s.digest == Digest::Sha512) {
        algorithm = s.pss ? SignatureAlgorithm::RsaPssSha512 : SignatureAlgorithm::RsaPkcs1Sha512;
      }
      break;
    case KeyKind::Ec:
      if (s.digest == Digest::Sha256) algorithm = SignatureAlgorithm::EcdsaSha256;
      if (s.digest == Digest::Sha384) algorithm = SignatureAlgorithm::EcdsaSha384;
      break;
    case KeyKind::Ed25519:
      if (s.digest == Digest::None) algorithm = SignatureAlgorithm::Ed25519;
      break;
  }
  if (!algorithm) {
    if (kind == KeyKind::Ed25519) throw Failure{kReasonUnsupported, "Ed25519 signs the message itself, with no digest"};
    if (s.digest == Digest::None) throw Failure{kReasonUnsupported, "a digest is required"};
    throw Failure{kReasonUnsupported, std::string(keymgmt_name(kind)) + " with " + digest_label(s.digest)};
  }
  if (kind == KeyKind::Rsa && s.pss) {
    // RFC 4055 / keyhold's AlgorithmIdentifiers: salt = digest length, MGF1 with the same digest.
    if (s.salt_length && *s.salt_length != static_cast<int>(digest_size(s.digest))) {
      throw Failure{kReasonUnsupported, "PSS salt length " + std::to_string(*s.salt_length) +
                                            " (keyhold uses the digest length, " +
                                            std::to_string(digest_size(s.digest)) + ")"};
    }
    if (s.mgf1 && *s.mgf1 != s.digest) {
      throw Failure{kReasonUnsupported, std::string("MGF1 with ") + digest_label(*s.mgf1) + " and the digest " +
                                            digest_label(s.digest) + " (keyhold uses the same digest)"};
    }
  }
  return *algorithm;
}

SignatureAlgorithm checked_algorithm(const SignContext& ctx) {
  if (ctx.signer == nullptr) throw Failure{kReasonBadKey, "the signature was not initialised with a token key"};
  SignatureAlgorithm algorithm = algorithm_of(ctx.kind, ctx.settings);
  if (!can_sign_with(ctx.signer->key_type(), algorithm)) {
    throw Failure{kReasonUnsupported, std::string(to_string(ctx.signer->key_type())) + " keys cannot make " +
                                          std::string(to_string(algorithm)) + " signatures"};
  }
  return algorithm;
}

std::string utf8_param(const OSSL_PARAM* p, const char* what) {
  const char* value = nullptr;
  if (OSSL_PARAM_get_utf8_string_ptr(p, &value) != 1 || value == nullptr) {
    throw Failure{kReasonUnsupported, std::string(what) + " must be a UTF-8 string"};
  }
  return value;
}

Digest digest_param(const OSSL_PARAM* p, const char* what) {
  std::string name = utf8_param(p, what);
  std::optional<Digest> digest = parse_digest(name);
  if (!digest) throw Failure{kReasonUnsupported, std::string(what) + " " + name};
  return *digest;
}

template <KeyKind K>
void apply_params(SignSettings& s, const OSSL_PARAM params[]) {
  if (params == nullptr) return;
  // Digest and MGF1 "properties" are accepted and ignored: the signer hashes.
  if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST)) {
    s.digest = digest_param(p, "digest");
  }
  if constexpr (K == KeyKind::Rsa) {
    if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) {
      // An integer from EVP_PKEY_CTX_set_rsa_padding, a name from OSSL_PARAMs.
      int mode = 0;
      if (p->data_type == OSSL_PARAM_UTF8_STRING) {
        std::string name = utf8_param(p, "padding mode");
        if (name == OSSL_PKEY_RSA_PAD_MODE_PKCSV15) {
          mode = RSA_PKCS1_PADDING;
        } else if (name == OSSL_PKEY_RSA_PAD_MODE_PSS) {
          mode = RSA_PKCS1_PSS_PADDING;
        } else {
          throw Failure{kReasonUnsupported, "padding mode " + name};
        }
      } else if (OSSL_PARAM_get_int(p, &mode) != 1) {
        throw Failure{kReasonUnsupported, "malformed padding mode"};
      }
      if (mode == RSA_PKCS1_PADDING) {
        s.pss = false;
      } else if (mode == RSA_PKCS1_PSS_PADDING) {
        s.pss = true;
      } else {
        throw Failure{kReasonUnsupported, "padding mode " + std::to_string(mode) + " (only PKCS#1 v1.5 and PSS)"};
      }
    }
    if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) {
      // -1 / "digest" is the digest length; an explicit length is checked
      // against the digest once both are known; "max" and "auto" are refused.
      int length = 0;
      if (p->data_type == OSSL_PARAM_UTF8_STRING) {
        std::string text = utf8_param(p, "PSS salt length");
        if (text == OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) {
          length = RSA_PSS_SALTLEN_DIGEST;
        } else if (!text.empty() && text.size() <= 4 &&
                   std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
          length = std::stoi(text);
        } else {
          throw Failure{kReasonUnsupported, "PSS salt length " + text + " (keyhold uses the digest length)"};
        }
      } else if (OSSL_PARAM_get_int(p, &length) != 1) {
        throw Failure{kReasonUnsupported, "malformed PSS salt length"};
      }
      if (length == RSA_PSS_SALTLEN_DIGEST) {
        s.salt_length.reset();
      } else if (length >= 0) {
        s.salt_length = length;
      } else {
        throw Failure{kReasonUnsupported,
                      "PSS salt length " + std::to_string(length) + " (keyhold uses the digest length)"};
      }
    }
    if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) {
      s.mgf1 = digest_param(p, "MGF1 digest");
    }
  }
}

template <KeyKind K>
void* signature_newctx(void* provctx, const char*) {
  const auto* provider = static_cast<const Provider*>(provctx);
  return guarded<void*>(provider, "creating a signature context", nullptr,
                        [&]() -> void* { return new SignContext{provider, K, nullptr, {}, {}}; });
}

void signature_freectx(void* vctx) { delete static_cast<SignContext*>(vctx); }

// EVP_DigestSignFinal duplicates the context before a final signature
// unless EVP_MD_CTX_FLAG_FINALISE is set (m_sigver.c).
void* signature_dupctx(void* vctx) {
  const auto* ctx = static_cast<const SignContext*>(vctx);
  return guarded<void*>(ctx->provider, "copying a signature context", nullptr,
                        [&]() -> void* { return new SignContext(*ctx); });
}

template <KeyKind K>
int signature_digest_sign_init(void* vctx, const char* mdname, void* provkey, const OSSL_PARAM params[]) {
  auto* ctx = static_cast<SignContext*>(vctx);
  return guarded<int>(ctx->provider, "starting a token signature", 0, [&] {
    const auto* key = static_cast<const KeyData*>(provkey);
    ctx->signer.reset();
    ctx->message.clear();
    if (key == nullptr || key->signer == nullptr || key->kind != K) {
      throw Failure{kReasonBadKey, "the key is not a keyhold token key of this type"};
    }
    SignSettings settings;
    if (mdname != nullptr && *mdname != '\0') {
      std::optional<Digest> digest = parse_digest(mdname);
      if (!digest) throw Failure{kReasonUnsupported, std::string("digest ") + mdname};
      settings.digest = *digest;
    } else {
      settings.digest = default_digest(key->signer->key_type());
    }
    apply_params<K>(settings, params);
    SignContext next{ctx->provider, K, key->signer, settings, {}};
    checked_algorithm(next);  // libssl probes digests with init alone (check_cert_usable)
    ctx->signer = std::move(next.signer);
    ctx->settings = settings;
    return 1;
  });
}

int signature_digest_sign_update(void* vctx, const unsigned char* data, std::size_t size) {
  auto* ctx = static_cast<SignContext*>(vctx);
  return guarded<int>(ctx->provider, "buffering the message to sign", 0, [&] {
    if (ctx->signer == nullptr) throw Failure{kReasonBadKey, "the signature was not initialised with a token key"};
    if (size > kMaxMessage - ctx->message.size()) {
      throw Failure{kReasonMessageTooLarge, "over " + std::to_string(kMaxMessage >> 20) + " MiB"};
    }
    if (size > 0) ctx->message.insert(ctx->message.end(), data, data + size);
    return 1;
  });
}

int max_signature_size(const SignContext& ctx) {
  int size = EVP_PKEY_get_size(ctx.signer->public_key().evp());
  if (size <= 0) throw Failure{kReasonInternal, "the public key has no signature size"};
  return size;
}

// Signs message into sig (provider-signature(7): a NULL sig asks for the
// maximum size only).
int sign_into(SignContext& ctx, unsigned char* sig, std::size_t* siglen, std::size_t sigsize,
              std::span<const std::uint8_t> message) {
  SignatureAlgorithm algorithm = checked_algorithm(ctx);
  if (sig == nullptr) {
    *siglen = static_cast<std::size_t>(max_signature_size(ctx));
    return 1;
  }
  std::vector<std::uint8_t> signature = ctx.signer->sign(algorithm, message);
  if (signature.size() > sigsize) {
    throw Failure{kReasonBufferTooSmall,
                  std::to_string(signature.size()) + " bytes needed, " + std::to_string(sigsize) + " given"};
  }
  std::copy(signature.begin(), signature.end(), sig);
  *siglen = signature.size();
  return 1;
}

int signature_digest_sign_final(void* vctx, unsigned char* sig, std::size_t* siglen, std::size_t sigsize) {
  auto* ctx = static_cast<SignContext*>(vctx);
  return guarded<int>(ctx->provider, "signing in the token", 0, [&] {
    int ok = sign_into(*ctx, sig, siglen, sigsize, ctx->message);
    if (sig != nullptr) ctx->message.clear();
    return ok;
  });
}

int signature_digest_sign(void* vctx, unsigned char* sig, std::size_t* siglen, std::size_t sigsize,
                          const unsigned char* tbs, std::size_t tbslen) {
  auto* ctx = static_cast<SignContext*>(vctx);
  return guarded<int>(ctx->provider, "signing in the token", 0, [&] {
    if (!ctx->message.empty()) {
      throw Failure{kReasonUnsupported, "a one-shot signature after EVP_DigestSignUpdate"};
    }
    return sign_into(*ctx, sig, siglen, sigsize, std::span<const std::uint8_t>(tbs, tbslen));
  });
}

template <KeyKind K>
int signature_get_ctx_params(void* vctx, OSSL_PARAM params[]) {
  auto* ctx = static_cast<SignContext*>(vctx);
  return guarded<int>(ctx->provider, "reading signature parameters", 0, [&] {
    const SignSettings& s = ctx->settings;
    if (OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID)) {
      // Exactly keyhold's DER, which X.509, CRL, CSR and OCSP signing copy
      // into the structure (a_sign.c ASN1_item_sign_ctx).
      std::span<const std::uint8_t> id = algorithm_identifier(checked_algorithm(*ctx));
      if (OSSL_PARAM_set_octet_string(p, id.data(), id.size()) != 1) throw Failure{kReasonInternal, "algorithm-id"};
    }
    if (OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST)) {
      if (OSSL_PARAM_set_utf8_string(p, digest_label(s.digest)) != 1) throw Failure{kReasonInternal, "digest"};
    }
    if constexpr (K == KeyKind::Rsa) {
      if (OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) {
        const char* name = s.pss ? OSSL_PKEY_RSA_PAD_MODE_PSS : OSSL_PKEY_RSA_PAD_MODE_PKCSV15;
        int ok = p->data_type == OSSL_PARAM_UTF8_STRING
                     ? OSSL_PARAM_set_utf8_string(p, name)
                     : OSSL_PARAM_set_int(p, s.pss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING);
        if (ok != 1) throw Failure{kReasonInternal, "pad-mode"};
      }
      if (OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) {
        int length = s.salt_length.value_or(static_cast<int>(digest_size(s.digest)));
        int ok = p->data_type == OSSL_PARAM_UTF8_STRING ? OSSL_PARAM_set_utf8_string(p, std::to_string(length).c_str())
                                                        : OSSL_PARAM_set_int(p, length);
        if (ok != 1) throw Failure{kReasonInternal, "saltlen"};
      }
      if (OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) {
        if (OSSL_PARAM_set_utf8_string(p, digest_label(s.mgf1.value_or(s.digest))) != 1) {
          throw Failure{kReasonInternal, "mgf1-digest"};
        }
      }
    }
    return 1;
  });
}

template <KeyKind K>
const OSSL_PARAM* signature_gettable_ctx_params(void*, void*) {
  if constexpr (K == KeyKind::Rsa) {
    static const OSSL_PARAM params[] = {
        OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, nullptr, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, nullptr, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, nullptr, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, nullptr, 0),
        OSSL_PARAM_END,
    };
    return params;
  } else {
    static const OSSL_PARAM params[] = {
        OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, nullptr, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
        OSSL_PARAM_END,
    };
    return params;
  }
}

template <KeyKind K>
int signature_set_ctx_params(void* vctx, const OSSL_PARAM params[]) {
  auto* ctx = static_cast<SignContext*>(vctx);
  return guarded<int>(ctx->provider, "setting signature parameters", 0, [&] {
    // All or nothing: a refused parameter leaves the context as it was.
    SignSettings settings = ctx->settings;
    apply_params<K>(settings, params);
    if (ctx->signer != nullptr) {
      SignContext next{ctx->provider, K, ctx->signer, settings, {}};
      checked_algorithm(next);
    }
    ctx->settings = settings;
    return 1;
  });
}

// EVP_PKEY_CTX_ctrl-style setters check names against this list before
// passing them on (pmeth_lib.c evp_pkey_ctx_set_params_strict).
template <KeyKind K>
const OSSL_PARAM* signature_settable_ctx_params(void*, void*) {
  if constexpr (K == KeyKind::Rsa) {
    static const OSSL_PARAM params[] = {
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, nullptr, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, nullptr, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, nullptr, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, nullptr, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_PROPERTIES, nullptr, 0),
        OSSL_PARAM_END,
    };
    return params;
  } else if constexpr (K == KeyKind::Ec) {
    static const OSSL_PARAM params[] = {
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, nullptr, 0),
        OSSL_PARAM_END,
    };
    return params;
  } else {
    static const OSSL_PARAM params[] = {OSSL_PARAM_END};
    return params;
  }
}

template <KeyKind K>
const OSSL_DISPATCH* signature_dispatch() {
  // Ed25519 is one-shot only, as OpenSSL's own (PureEdDSA over the message).
  static const OSSL_DISPATCH one_shot_only[] = {
      entry<OSSL_FUNC_signature_newctx_fn>(OSSL_FUNC_SIGNATURE_NEWCTX, &signature_newctx<K>),
      entry<OSSL_FUNC_signature_freectx_fn>(OSSL_FUNC_SIGNATURE_FREECTX, &signature_freectx),
      entry<OSSL_FUNC_signature_dupctx_fn>(OSSL_FUNC_SIGNATURE_DUPCTX, &signature_dupctx),
      entry<OSSL_FUNC_signature_digest_sign_init_fn>(OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT,
                                                     &signature_digest_sign_init<K>),
      entry<OSSL_FUNC_signature_digest_sign_fn>(OSSL_FUNC_SIGNATURE_DIGEST_SIGN, &signature_digest_sign),
      entry<OSSL_FUNC_signature_get_ctx_params_fn>(OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, &signature_get_ctx_params<K>),
      entry<OSSL_FUNC_signature_gettable_ctx_params_fn>(OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
                                                        &signature_gettable_ctx_params<K>),
      entry<OSSL_FUNC_signature_set_ctx_params_fn>(OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, &signature_set_ctx_params<K>),
      entry<OSSL_FUNC_signature_settable_ctx_params_fn>(OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS,
                                                        &signature_settable_ctx_params<K>),
      {0, nullptr},
  };
  static const OSSL_DISPATCH streaming[] = {
      entry<OSSL_FUNC_signature_newctx_fn>(OSSL_FUNC_SIGNATURE_NEWCTX, &signature_newctx<K>),
      entry<OSSL_FUNC_signature_freectx_fn>(OSSL_FUNC_SIGNATURE_FREECTX, &signature_freectx),
      entry<OSSL_FUNC_signature_dupctx_fn>(OSSL_FUNC_SIGNATURE_DUPCTX, &signature_dupctx),
      entry<OSSL_FUNC_signature_digest_sign_init_fn>(OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT,
                                                     &signature_digest_sign_init<K>),
      entry<OSSL_FUNC_signature_digest_sign_update_fn>(OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE,
                                                       &signature_digest_sign_update),
      entry<OSSL_FUNC_signature_digest_sign_final_fn>(OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL,
                                                      &signature_digest_sign_final),
      entry<OSSL_FUNC_signature_digest_sign_fn>(OSSL_FUNC_SIGNATURE_DIGEST_SIGN, &signature_digest_sign),
      entry<OSSL_FUNC_signature_get_ctx_params_fn>(OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, &signature_get_ctx_params<K>),
      entry<OSSL_FUNC_signature_gettable_ctx_params_fn>(OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
                                                        &signature_gettable_ctx_params<K>),
      entry<OSSL_FUNC_signature_set_ctx_params_fn>(OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, &signature_set_ctx_params<K>),
      entry<OSSL_FUNC_signature_settable_ctx_params_fn>(OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS,
                                                        &signature_settable_ctx_params<K>),
      {0, nullptr},
  };
  if constexpr (K == KeyKind::Ed25519) {
    return one_shot_only;
  } else {
    return streaming;
  }
}

// ---------------------------------------------------------------------------
// The provider itself (provider-base(7)).

const OSSL_ALGORITHM* keymgmt_algorithms() {
  static const OSSL_ALGORITHM algorithms[] = {
      {"RSA:rsaEncryption:1.2.840.113549.1.1.1", kProviderProperties, keymgmt_dispatch<KeyKind::Rsa>(),
       "keyhold token RSA key"},
      {"EC:id-ecPublicKey:1.2.840.10045.2.1", kProviderProperties, keymgmt_dispatch<KeyKind::Ec>(),
       "keyhold token EC key"},
      {"ED25519:1.3.101.112", kProviderProperties, keymgmt_dispatch<KeyKind::Ed25519>(),
       "keyhold token Ed25519 key"},
      {nullptr, nullptr, nullptr, nullptr},
  };
  return algorithms;
}

const OSSL_ALGORITHM* signature_algorithms() {
  static const OSSL_ALGORITHM algorithms[] = {
      {signature_name(KeyKind::Rsa), kProviderProperties, signature_dispatch<KeyKind::Rsa>(),
       "RSA PKCS#1 v1.5 and PSS in a PKCS#11 token"},
      {signature_name(KeyKind::Ec), kProviderProperties, signature_dispatch<KeyKind::Ec>(),
       "ECDSA in a PKCS#11 token"},
      {signature_name(KeyKind::Ed25519), kProviderProperties, signature_dispatch<KeyKind::Ed25519>(),
       "Ed25519 in a PKCS#11 token"},
      {nullptr, nullptr, nullptr, nullptr},
  };
  return algorithms;
}

const OSSL_ALGORITHM* provider_query_operation(void*, int operation_id, int* no_store) {
  *no_store = 0;
  switch (operation_id) {
    case OSSL_OP_KEYMGMT: return keymgmt_algorithms();
    case OSSL_OP_SIGNATURE: return signature_algorithms();
    default: return nullptr;
  }
}

const OSSL_ITEM* provider_reason_strings(void*) { return kReasonStrings; }

const OSSL_PARAM* provider_gettable_params(void*) {
  static const OSSL_PARAM params[] = {
      OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_NAME, nullptr, 0),
      OSSL_PARAM_int(OSSL_PROV_PARAM_STATUS, nullptr),
      OSSL_PARAM_END,
  };
  return params;
}

int provider_get_params(void*, OSSL_PARAM params[]) {
  if (OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) {
    if (OSSL_PARAM_set_utf8_ptr(p, "keyhold PKCS#11 token keys") != 1) return 0;
  }
  if (OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) {
    if (OSSL_PARAM_set_int(p, 1) != 1) return 0;
  }
  return 1;
}

void provider_teardown(void* provctx) { delete static_cast<Provider*>(provctx); }

const OSSL_DISPATCH* provider_dispatch() {
  static const OSSL_DISPATCH table[] = {
      entry<OSSL_FUNC_provider_query_operation_fn>(OSSL_FUNC_PROVIDER_QUERY_OPERATION, &provider_query_operation),
      entry<OSSL_FUNC_provider_get_reason_strings_fn>(OSSL_FUNC_PROVIDER_GET_REASON_STRINGS,
                                                      &provider_reason_strings),
      entry<OSSL_FUNC_provider_gettable_params_fn>(OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, &provider_gettable_params),
      entry<OSSL_FUNC_provider_get_params_fn>(OSSL_FUNC_PROVIDER_GET_PARAMS, &provider_get_params),
      entry<OSSL_FUNC_provider_teardown_fn>(OSSL_FUNC_PROVIDER_TEARDOWN, &provider_teardown),
      {0, nullptr},
  };
  return table;
}

int provider_init(const OSSL_CORE_HANDLE* handle, const OSSL_DISPATCH* in, const OSSL_DISPATCH** out,
                  void** provctx) {
  auto* provider = new (std::nothrow) Provider{handle};
  if (provider == nullptr) return 0;
  for (; in != nullptr && in->function_id != 0; ++in) {
    switch (in->function_id) {
      case OSSL_FUNC_CORE_NEW_ERROR: provider->new_error = OSSL_FUNC_core_new_error(in); break;
      case OSSL_FUNC_CORE_SET_ERROR_DEBUG: provider->set_error_debug = OSSL_FUNC_core_set_error_debug(in); break;
      case OSSL_FUNC_CORE_VSET_ERROR: provider->vset_error = OSSL_FUNC_core_vset_error(in); break;
      default: break;
    }
  }
  *out = provider_dispatch();
  *provctx = provider;
  return 1;
}

// ---------------------------------------------------------------------------
// keyhold's library context.

struct Context {
  OSSL_LIB_CTX* libctx;
  OSSL_PROVIDER* keyhold;
};

Context create_context() {
  OSSL_LIB_CTX* libctx = OSSL_LIB_CTX_new();
  if (libctx == nullptr) throw_openssl(ErrorCode::Internal, "creating keyhold's OpenSSL library context");
  auto fail = [&](const char* what) {
    std::string message = std::string(what) + ": " + openssl_error();
    OSSL_LIB_CTX_free(libctx);  // unloads what was loaded; a later call starts afresh
    throw Error(ErrorCode::Internal, message);
  };
  if (OSSL_PROVIDER_add_builtin(libctx, kProviderName, &provider_init) != 1) fail("adding the keyhold provider");
  // "base" brings the encoders (i2d_PUBKEY of a token key) and no keymgmt
  // that could compete with ours (see the top of the file).
  if (OSSL_PROVIDER_load(libctx, "base") == nullptr) fail("loading OpenSSL's base provider");
  OSSL_PROVIDER* keyhold = OSSL_PROVIDER_load(libctx, kProviderName);
  if (keyhold == nullptr) fail("loading the keyhold provider");
  return {libctx, keyhold};
}

// Never freed: token EVP_PKEYs and SSL_CTXs refer to it until they are freed,
// possibly during static destruction.
const Context& context() {
  static const Context context = create_context();
  return context;
}

std::optional<KeyType> token_key_type(EVP_PKEY* key) {
  char text[32] = {};
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(kKeyTypeParam, text, sizeof text),
                         OSSL_PARAM_construct_end()};
  if (EVP_PKEY_get_params(key, params) != 1 || OSSL_PARAM_modified(params) == 0) {
    ERR_clear_error();
    return std::nullopt;
  }
  return parse_key_type(text);
}

}  // namespace

OSSL_LIB_CTX* openssl_context() { return context().libctx; }

CPtr<EVP_PKEY, &EVP_PKEY_free> make_token_pkey(std::shared_ptr<const Signer> signer) {
  if (signer == nullptr) throw Error(ErrorCode::InvalidArgument, "no signer to wrap in an EVP_PKEY");
  KeyType type = signer->key_type();
  std::optional<KeyKind> kind = kind_of(type);
  if (!kind) throw Error(ErrorCode::InvalidArgument, std::string(to_string(type)) + " keys do not sign");
  if (signer->public_key().type() != type) {
    throw Error(ErrorCode::InvalidArgument,
                "the signer's public key is not a " + std::string(to_string(type)) + " key");
  }
  const Context& ctx = context();

  SignerTickets& tickets = SignerTickets::instance();
  std::uint64_t ticket = tickets.issue(std::move(signer));
  EvpPkeyCtxPtr pctx(EVP_PKEY_CTX_new_from_name(ctx.libctx, keymgmt_name(*kind), kProviderProperties));
  OSSL_PARAM params[] = {OSSL_PARAM_construct_uint64(kTicketParam, &ticket), OSSL_PARAM_construct_end()};
  EVP_PKEY* key = nullptr;
  bool ok = pctx && EVP_PKEY_fromdata_init(pctx.get()) == 1 &&
            EVP_PKEY_fromdata(pctx.get(), &key, EVP_PKEY_KEYPAIR, params) == 1;
  tickets.cancel(ticket);  // already redeemed on success
  CPtr<EVP_PKEY, &EVP_PKEY_free> owned(key);
  if (!ok || !owned) throw_openssl(ErrorCode::Internal, "wrapping a token key in an EVP_PKEY");
  if (EVP_PKEY_get0_provider(owned.get()) != ctx.keyhold) {
    throw Error(ErrorCode::Internal, "OpenSSL wrapped the token key with another provider");
  }
  return owned;
}

CPtr<EVP_MD_CTX, &EVP_MD_CTX_free> make_sign_context(EVP_PKEY* key, SignatureAlgorithm algorithm) {
  const Context& ctx = context();
  if (key == nullptr || EVP_PKEY_get0_provider(key) != ctx.keyhold) {
    throw Error(ErrorCode::InvalidArgument, "not a token key from make_token_pkey");
  }
  std::optional<KeyType> type = token_key_type(key);
  if (!type) throw Error(ErrorCode::InvalidArgument, "the token key has no keyhold key type");
  if (!can_sign_with(*type, algorithm)) {
    throw Error(ErrorCode::InvalidArgument, std::string(to_string(*type)) + " keys cannot make " +
                                                std::string(to_string(algorithm)) + " signatures");
  }

  std::string digest(digest_name(algorithm));
  bool pss = algorithm == SignatureAlgorithm::RsaPssSha256 || algorithm == SignatureAlgorithm::RsaPssSha384 ||
             algorithm == SignatureAlgorithm::RsaPssSha512;
  std::string pad_mode = OSSL_PKEY_RSA_PAD_MODE_PSS;
  std::string salt_length = OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST;
  std::vector<OSSL_PARAM> params;
  if (pss) {
    params.push_back(OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, pad_mode.data(), 0));
    params.push_back(OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, salt_length.data(), 0));
    params.push_back(OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, digest.data(), 0));
  }
  params.push_back(OSSL_PARAM_construct_end());

  CPtr<EVP_MD_CTX, &EVP_MD_CTX_free> md(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (!md || EVP_DigestSignInit_ex(md.get(), &pctx, digest.empty() ? nullptr : digest.c_str(), ctx.libctx, nullptr,
                                   key, params.data()) != 1) {
    throw_openssl(ErrorCode::Internal, "starting a token signature");
  }
  // What X.509 signing will copy into the structure; checked once here.
  unsigned char id[128];
  OSSL_PARAM query[] = {OSSL_PARAM_construct_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, id, sizeof id),
                        OSSL_PARAM_construct_end()};
  std::span<const std::uint8_t> expected = algorithm_identifier(algorithm);
  if (EVP_PKEY_CTX_get_params(pctx, query) != 1 ||
      !std::equal(expected.begin(), expected.end(), id, id + query[0].return_size)) {
    throw_openssl(ErrorCode::Internal, "the token signature's AlgorithmIdentifier");
  }
  // Single use: the final signature needs no copy of the buffered message.
  EVP_MD_CTX_set_flags(md.get(), EVP_MD_CTX_FLAG_FINALISE);
  return md;
}

}  // namespace keyhold::crypto
