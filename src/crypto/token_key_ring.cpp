#include "keyhold/crypto/token_key_ring.hpp"

#include <openssl/core_names.h>

#include <algorithm>
#include <map>
#include <set>

#include "keyhold/core/encoding.hpp"
#include "keyhold/core/log.hpp"
#include "openssl_util.hpp"
#include "token_keys.hpp"

namespace keyhold::crypto {
namespace {

using hsm::AttributeTemplate;
using hsm::AttributeValues;
using hsm::ObjectRef;

constexpr std::size_t kIdBytes = 16;

constexpr CK_ATTRIBUTE_TYPE kDescribeAttributes[] = {
    CKA_CLASS,      CKA_ID,        CKA_LABEL,  CKA_KEY_TYPE,         CKA_MODULUS,          CKA_EC_PARAMS,
    CKA_VALUE_LEN,  CKA_PRIVATE,   CKA_SENSITIVE, CKA_EXTRACTABLE,   CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE,
    CKA_LOCAL,      CKA_MODIFIABLE, CKA_SIGN,  CKA_VERIFY,           CKA_ENCRYPT,          CKA_DECRYPT,
    CKA_WRAP,       CKA_UNWRAP,    CKA_DERIVE,
};

bool same_bytes(const std::optional<std::vector<std::uint8_t>>& value, std::span<const std::uint8_t> expected) {
  return value && std::equal(value->begin(), value->end(), expected.begin(), expected.end());
}

std::vector<std::uint8_t> bytes_of(std::span<const std::uint8_t> s) { return {s.begin(), s.end()}; }

// What the token holds, in keyhold's terms where it can be one of ours.
void classify(const AttributeValues& values, TokenKey& key) {
  CK_KEY_TYPE type = values.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
  auto params = values.bytes(CKA_EC_PARAMS);
  switch (type) {
    case CKK_RSA: {
      std::size_t bits = values.bytes(CKA_MODULUS).value_or(std::vector<std::uint8_t>{}).size() * 8;
      key.token_type = "rsa-" + std::to_string(bits);
      if (bits == 2048) key.type = KeyType::Rsa2048;
      if (bits == 3072) key.type = KeyType::Rsa3072;
      if (bits == 4096) key.type = KeyType::Rsa4096;
      break;
    }
    case CKK_EC:
      if (same_bytes(params, kOidP256)) {
        key.type = KeyType::EcP256;
        key.token_type = "ec-p256";
      } else if (same_bytes(params, kOidP384)) {
        key.type = KeyType::EcP384;
        key.token_type = "ec-p384";
      } else {
        key.token_type = "ec (other curve)";
      }
      break;
    case CKK_EC_EDWARDS:
      if (same_bytes(params, kOidEd25519) || same_bytes(params, kNameEd25519)) {
        key.type = KeyType::Ed25519;
        key.token_type = "ed25519";
      } else {
        key.token_type = "eddsa (other curve)";
      }
      break;
    case CKK_AES: {
      CK_ULONG length = values.ulong(CKA_VALUE_LEN).value_or(0);
      key.token_type = "aes-" + std::to_string(length * 8);
      if (length == 32) key.type = KeyType::Aes256;
      break;
    }
    case CKK_DSA: key.token_type = "dsa"; break;
    case CKK_DH: key.token_type = "dh"; break;
    case CKK_GENERIC_SECRET: key.token_type = "generic-secret"; break;
    case CKK_DES3: key.token_type = "des3"; break;
    default: key.token_type = "key type " + std::to_string(type); break;
  }
}

SecurityAttributes security_of(const AttributeValues& v) {
  SecurityAttributes a;
  a.private_object = v.boolean(CKA_PRIVATE).value_or(false);
  a.sensitive = v.boolean(CKA_SENSITIVE).value_or(false);
  a.extractable = v.boolean(CKA_EXTRACTABLE).value_or(false);
  a.always_sensitive = v.boolean(CKA_ALWAYS_SENSITIVE).value_or(false);
  a.never_extractable = v.boolean(CKA_NEVER_EXTRACTABLE).value_or(false);
  a.local = v.boolean(CKA_LOCAL).value_or(false);
  a.modifiable = v.boolean(CKA_MODIFIABLE).value_or(false);
  a.sign = v.boolean(CKA_SIGN).value_or(false);
  a.verify = v.boolean(CKA_VERIFY).value_or(false);
  a.encrypt = v.boolean(CKA_ENCRYPT).value_or(false);
  a.decrypt = v.boolean(CKA_DECRYPT).value_or(false);
  a.wrap = v.boolean(CKA_WRAP).value_or(false);
  a.unwrap = v.boolean(CKA_UNWRAP).value_or(false);
  a.derive = v.boolean(CKA_DERIVE).value_or(false);
  return a;
}

// CKA_EC_POINT is a DER OCTET STRING (PKCS#11 v2.40 section 2.3.3), but some
// tokens return the bare point; tell them apart by the expected raw size.
std::vector<std::uint8_t> unwrap_ec_point(const std::vector<std::uint8_t>& value, std::size_t raw_size) {
  if (value.size() == raw_size) return value;
  if (value.size() == raw_size + 2 && value[0] == 0x04 && value[1] == raw_size) {
    return {value.begin() + 2, value.end()};
  }
  throw Error(ErrorCode::FailedPrecondition, "the token returned a public point of unexpected size");
}

EVP_PKEY* build_from_params(const char* algorithm, OSSL_PARAM_BLD* builder) {
  ParamsPtr params(OSSL_PARAM_BLD_to_param(builder));
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, algorithm, nullptr));
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    throw_openssl(ErrorCode::FailedPrecondition, "the token's public key is not valid");
  }
  return key;
}

PublicKey rsa_public_key(const std::vector<std::uint8_t>& modulus, const std::vector<std::uint8_t>& exponent) {
  BignumPtr n(BN_bin2bn(modulus.data(), static_cast<int>(modulus.size()), nullptr));
  BignumPtr e(BN_bin2bn(exponent.data(), static_cast<int>(exponent.size()), nullptr));
  ParamBuildPtr builder(OSSL_PARAM_BLD_new());
  if (!n || !e || !builder || OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1) {
    throw_openssl(ErrorCode::Internal, "building an RSA public key");
  }
  return PublicKey(build_from_params("RSA", builder.get()));
}

PublicKey ec_public_key(const char* group, const std::vector<std::uint8_t>& point) {
  ParamBuildPtr builder(OSSL_PARAM_BLD_new());
  if (!builder || OSSL_PARAM_BLD_push_utf8_string(builder.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(builder.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1) {
    throw_openssl(ErrorCode::Internal, "building an EC public key");
  }
  return PublicKey(build_from_params("EC", builder.get()));
}

struct MechanismNeed {
  KeyType type;
  std::vector<CK_MECHANISM_TYPE> mechanisms;
};

const std::vector<MechanismNeed>& mechanism_needs() {
  static const std::vector<MechanismNeed> needs = {
      {KeyType::Rsa2048, {CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_RSA_PKCS, CKM_RSA_PKCS_PSS}},
      {KeyType::Rsa3072, {CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_RSA_PKCS, CKM_RSA_PKCS_PSS}},
      {KeyType::Rsa4096, {CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_RSA_PKCS, CKM_RSA_PKCS_PSS}},
      {KeyType::EcP256, {CKM_EC_KEY_PAIR_GEN, CKM_ECDSA}},
      {KeyType::EcP384, {CKM_EC_KEY_PAIR_GEN, CKM_ECDSA}},
      {KeyType::Ed25519, {CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA}},
      {KeyType::Aes256, {CKM_AES_KEY_GEN, CKM_AES_GCM}},
  };
  return needs;
}

bool template_refused(const Error& e) {
  auto rv = e.ck_rv();
  return rv && (*rv == CKR_ATTRIBUTE_TYPE_INVALID || *rv == CKR_ATTRIBUTE_VALUE_INVALID ||
                *rv == CKR_TEMPLATE_INCONSISTENT || *rv == CKR_ATTRIBUTE_READ_ONLY);
}

class TokenKeyRing final : public KeyRing {
 public:
  explicit TokenKeyRing(std::shared_ptr<hsm::Token> token) : token_(std::move(token)) {}

  TokenKey create(std::string_view label, KeyType type) override {
    std::vector<std::uint8_t> id = token_->random(kIdBytes);
    // CKA_MODIFIABLE = FALSE "where the token allows": some tokens refuse the
    // attribute in a generation template; then the key is made without it.
    for (bool unmodifiable : {true, false}) {
      try {
        return generate(label, type, id, unmodifiable);
      } catch (const Error& e) {
        if (!unmodifiable || !template_refused(e)) throw;
        log::info("the token refused CKA_MODIFIABLE=FALSE in a key template; creating the key without it");
      }
    }
    throw Error(ErrorCode::Internal, "unreachable");
  }

  std::vector<TokenKey> list() override {
    std::set<std::vector<std::uint8_t>> public_ids;
    {
      AttributeTemplate match;
      match.set_ulong(CKA_CLASS, CKO_PUBLIC_KEY);
      for (CK_OBJECT_HANDLE h : token_->find(match)) {
        constexpr CK_ATTRIBUTE_TYPE kId[] = {CKA_ID};
        if (auto id = token_->read(h, kId).bytes(CKA_ID)) public_ids.insert(*id);
      }
    }
    std::vector<TokenKey> keys;
    for (CK_OBJECT_CLASS object_class : {CKO_PRIVATE_KEY, CKO_SECRET_KEY}) {
      AttributeTemplate match;
      match.set_ulong(CKA_CLASS, object_class);
      for (CK_OBJECT_HANDLE h : token_->find(match)) {
        TokenKey key = describe_key(token_->read(h, kDescribeAttributes), object_class);
        key.has_public_object = object_class == CKO_PRIVATE_KEY && public_ids.count(key.id) != 0;
        keys.push_back(std::move(key));
      }
    }
    std::sort(keys.begin(), keys.end(), [](const TokenKey& a, const TokenKey& b) {
      return std::tie(a.label, a.id) < std::tie(b.label, b.id);
    });
    return keys;
  }

  std::optional<TokenKey> find(std::span<const std::uint8_t> id) override {
    for (CK_OBJECT_CLASS object_class : {CKO_PRIVATE_KEY, CKO_SECRET_KEY}) {
      ObjectRef ref{bytes_of(id), object_class};
      std::optional<AttributeValues> values = read_if_present(ref, kDescribeAttributes);
      if (!values) continue;
      TokenKey key = describe_key(*values, object_class);
      if (object_class == CKO_PRIVATE_KEY) {
        constexpr CK_ATTRIBUTE_TYPE kClass[] = {CKA_CLASS};
        key.has_public_object = read_if_present(ObjectRef{bytes_of(id), CKO_PUBLIC_KEY}, kClass).has_value();
      }
      return key;
    }
    return std::nullopt;
  }

  std::optional<TokenKey> find_by_uri(std::string_view text) override {
    hsm::Uri uri = hsm::Uri::parse(text);
    if (!uri.matches_token(token_->token_info())) {
      throw Error(ErrorCode::NotFound, "the URI names another token than '" + token_->label() + "'");
    }
    std::optional<std::vector<std::uint8_t>> id = uri.object_id();
    std::optional<std::string> label = uri.object_label();
    if (!id && !label) throw Error(ErrorCode::InvalidArgument, "the key URI names no object (add id= or object=)");
    std::vector<TokenKey> candidates;
    if (id) {
      if (auto key = find(*id)) candidates.push_back(*key);
    } else {
      candidates = find_by_label(*label);
    }
    std::erase_if(candidates, [&](const TokenKey& k) { return (label && k.label != *label) || (id && k.id != *id); });
    if (candidates.size() > 1) {
      throw Error(ErrorCode::InvalidArgument, "the key URI names " + std::to_string(candidates.size()) +
                                                  " keys; add id= to choose one");
    }
    if (candidates.empty()) return std::nullopt;
    return candidates.front();
  }

  std::vector<TokenKey> find_by_label(std::string_view label) override {
    std::vector<TokenKey> keys;
    for (CK_OBJECT_CLASS object_class : {CKO_PRIVATE_KEY, CKO_SECRET_KEY}) {
      AttributeTemplate match;
      match.set_ulong(CKA_CLASS, object_class).set_string(CKA_LABEL, label);
      for (CK_OBJECT_HANDLE h : token_->find(match)) {
        keys.push_back(describe_key(token_->read(h, kDescribeAttributes), object_class));
      }
    }
    return keys;
  }

  PublicKey public_key(std::span<const std::uint8_t> id) override {
    constexpr CK_ATTRIBUTE_TYPE kPublic[] = {CKA_KEY_TYPE, CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS,
                                             CKA_EC_POINT};
    std::optional<AttributeValues> values = read_if_present(ObjectRef{bytes_of(id), CKO_PUBLIC_KEY}, kPublic);
    if (!values) {
      // No public object: an RSA private key still carries n and e.
      values = read_if_present(ObjectRef{bytes_of(id), CKO_PRIVATE_KEY}, kPublic);
    }
    if (!values) {
      constexpr CK_ATTRIBUTE_TYPE kClass[] = {CKA_CLASS};
      if (read_if_present(ObjectRef{bytes_of(id), CKO_SECRET_KEY}, kClass)) {
        throw Error(ErrorCode::InvalidArgument, "a secret (symmetric) key has no public half");
      }
      throw Error(ErrorCode::NotFound, "the token has no key pair with CKA_ID " + to_hex(id));
    }
    CK_KEY_TYPE type = values->ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
    auto params = values->bytes(CKA_EC_PARAMS);
    auto point = values->bytes(CKA_EC_POINT);
    if (type == CKK_RSA && values->has(CKA_MODULUS) && values->has(CKA_PUBLIC_EXPONENT)) {
      return rsa_public_key(*values->bytes(CKA_MODULUS), *values->bytes(CKA_PUBLIC_EXPONENT));
    }
    if (type == CKK_EC && point && same_bytes(params, kOidP256)) {
      return ec_public_key("P-256", unwrap_ec_point(*point, 65));
    }
    if (type == CKK_EC && point && same_bytes(params, kOidP384)) {
      return ec_public_key("P-384", unwrap_ec_point(*point, 97));
    }
    if (type == CKK_EC_EDWARDS && point && (same_bytes(params, kOidEd25519) || same_bytes(params, kNameEd25519))) {
      std::vector<std::uint8_t> raw = unwrap_ec_point(*point, 32);
      EVP_PKEY* key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw.data(), raw.size());
      if (key == nullptr) throw_openssl(ErrorCode::FailedPrecondition, "the token's Ed25519 key is not valid");
      return PublicKey(key);
    }
    throw Error(ErrorCode::FailedPrecondition,
                "the public key with CKA_ID " + to_hex(id) + " is of a kind keyhold cannot read");
  }

  std::shared_ptr<const Signer> signer(std::span<const std::uint8_t> id) override {
    TokenKey key = usable_key(id);
    if (key.kind != TokenKey::Kind::PrivateKey || !key.type || !is_key_pair(*key.type)) {
      throw Error(ErrorCode::PermissionDenied, describe_for_error(key) + " is not a signing key keyhold can use");
    }
    if (!key.attributes.sign) {
      throw Error(ErrorCode::PermissionDenied, describe_for_error(key) + " does not permit signing (CKA_SIGN is FALSE)");
    }
    return std::make_shared<TokenSigner>(token_, key.id, *key.type, public_key(id));
  }

  std::shared_ptr<const Kek> kek(std::span<const std::uint8_t> id) override {
    TokenKey key = usable_key(id);
    if (key.kind != TokenKey::Kind::SecretKey || key.type != KeyType::Aes256) {
      throw Error(ErrorCode::PermissionDenied, describe_for_error(key) + " is not an AES-256 key");
    }
    if (!key.attributes.encrypt || !key.attributes.decrypt) {
      throw Error(ErrorCode::PermissionDenied,
                  describe_for_error(key) + " does not permit encryption and decryption");
    }
    return std::make_shared<TokenKek>(token_, key.id);
  }

  void destroy(std::span<const std::uint8_t> id) override {
    bool destroyed = false;
    for (CK_OBJECT_CLASS object_class : {CKO_PRIVATE_KEY, CKO_SECRET_KEY, CKO_PUBLIC_KEY}) {
      ObjectRef ref{bytes_of(id), object_class};
      try {
        token_->destroy(ref);
        destroyed = true;
      } catch (const Error& e) {
        if (e.code() != ErrorCode::NotFound || e.ck_rv()) throw;
      }
    }
    if (!destroyed) throw Error(ErrorCode::NotFound, "the token has no key with CKA_ID " + to_hex(id));
  }

  TokenActivity activity() const override { return token_->activity(); }

  TokenSummary describe() override {
    hsm::TokenDescription d = token_->describe();
    TokenSummary s;
    s.uri = d.uri;
    s.label = d.label;
    s.manufacturer = d.manufacturer;
    s.model = d.model;
    s.serial = d.serial;
    s.slot_id = d.slot_id;
    s.slot_description = d.slot_description;
    s.hardware_version = d.hardware_version;
    s.firmware_version = d.firmware_version;
    s.flags = d.flags;
    s.max_sessions = d.max_sessions;
    s.session_count = d.session_count;
    s.free_private_memory = d.free_private_memory;
    s.total_private_memory = d.total_private_memory;
    for (CK_MECHANISM_TYPE m : d.mechanisms) s.mechanisms.push_back(hsm::mechanism_name(m));
    std::set<CK_MECHANISM_TYPE> offered(d.mechanisms.begin(), d.mechanisms.end());
    for (const MechanismNeed& need : mechanism_needs()) {
      bool all = std::all_of(need.mechanisms.begin(), need.mechanisms.end(),
                             [&](CK_MECHANISM_TYPE m) { return offered.count(m) != 0; });
      if (!all) s.missing_for.emplace_back(to_string(need.type));
    }
    s.module_path = d.module.path;
    s.module_name = d.module.name;
    s.module_description = d.module.library_description;
    s.module_manufacturer = d.module.manufacturer;
    s.module_version = d.module.library_version;
    s.cryptoki_version = d.module.cryptoki_version;
    return s;
  }

  std::vector<std::uint8_t> random(std::size_t size) override { return token_->random(size); }

 private:
  TokenKey generate(std::string_view label, KeyType type, const std::vector<std::uint8_t>& id, bool unmodifiable) {
    auto common = [&](AttributeTemplate& t, bool private_object) {
      t.set_bool(CKA_TOKEN, true).set_bool(CKA_PRIVATE, private_object).set_string(CKA_LABEL, label).set_bytes(CKA_ID, id);
      if (unmodifiable) t.set_bool(CKA_MODIFIABLE, false);
    };
    if (type == KeyType::Aes256) {
      // Every usage attribute set explicitly: SoftHSM's defaults would allow
      // sign/verify/wrap on a secret key.
      AttributeTemplate secret;
      common(secret, true);
      secret.set_ulong(CKA_CLASS, CKO_SECRET_KEY)
          .set_ulong(CKA_KEY_TYPE, CKK_AES)
          .set_ulong(CKA_VALUE_LEN, 32)
          .set_bool(CKA_SENSITIVE, true)
          .set_bool(CKA_EXTRACTABLE, false)
          .set_bool(CKA_ENCRYPT, true)
          .set_bool(CKA_DECRYPT, true)
          .set_bool(CKA_SIGN, false)
          .set_bool(CKA_VERIFY, false)
          .set_bool(CKA_WRAP, false)
          .set_bool(CKA_UNWRAP, false)
          .set_bool(CKA_DERIVE, false);
      CK_MECHANISM mechanism{CKM_AES_KEY_GEN, nullptr, 0};
      CK_OBJECT_HANDLE handle = token_->generate_key(mechanism, secret);
      return verify_created(handle, CKO_SECRET_KEY, type, {});
    }

    AttributeTemplate pub;
    AttributeTemplate priv;
    common(pub, false);
    common(priv, true);
    pub.set_bool(CKA_VERIFY, true)
        .set_bool(CKA_ENCRYPT, false)
        .set_bool(CKA_WRAP, false)
        .set_bool(CKA_VERIFY_RECOVER, false)
        .set_bool(CKA_DERIVE, false);
    // A private key may sign and nothing else: SoftHSM's defaults would also
    // allow decrypt, unwrap and derive.
    priv.set_bool(CKA_SENSITIVE, true)
        .set_bool(CKA_EXTRACTABLE, false)
        .set_bool(CKA_SIGN, true)
        .set_bool(CKA_SIGN_RECOVER, false)
        .set_bool(CKA_DECRYPT, false)
        .set_bool(CKA_UNWRAP, false)
        .set_bool(CKA_DERIVE, false);
    CK_MECHANISM mechanism{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    switch (type) {
      case KeyType::Rsa2048:
      case KeyType::Rsa3072:
      case KeyType::Rsa4096: {
        static constexpr std::uint8_t kExponent[] = {0x01, 0x00, 0x01};
        CK_ULONG bits = type == KeyType::Rsa2048 ? 2048 : type == KeyType::Rsa3072 ? 3072 : 4096;
        pub.set_ulong(CKA_MODULUS_BITS, bits).set_bytes(CKA_PUBLIC_EXPONENT, kExponent);
        mechanism.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
        break;
      }
      case KeyType::EcP256: pub.set_bytes(CKA_EC_PARAMS, kOidP256); break;
      case KeyType::EcP384: pub.set_bytes(CKA_EC_PARAMS, kOidP384); break;
      case KeyType::Ed25519:
        pub.set_bytes(CKA_EC_PARAMS, kOidEd25519);
        mechanism.mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
        break;
      case KeyType::Aes256: break;
    }
    hsm::KeyPairHandles handles = token_->generate_key_pair(mechanism, pub, priv);
    return verify_created(handles.private_key, CKO_PRIVATE_KEY, type, {handles.public_key});
  }

  // Reads the new key back and keeps it only if the token honoured the template.
  TokenKey verify_created(CK_OBJECT_HANDLE handle, CK_OBJECT_CLASS object_class, KeyType type,
                          std::optional<CK_OBJECT_HANDLE> public_handle) {
    TokenKey key = describe_key(token_->read(handle, kDescribeAttributes), object_class);
    key.has_public_object = public_handle.has_value();
    std::vector<std::string> problems = key.attributes.exposure_reasons();
    if (key.type != type) problems.push_back("the token made a " + key.token_type + " key");
    bool sign_purpose = purpose_of(type) == KeyPurpose::Sign;
    if (sign_purpose && (!key.attributes.sign || key.attributes.decrypt || key.attributes.unwrap ||
                         key.attributes.derive)) {
      problems.push_back("its usage is " + join(key.attributes.usages()) + ", not sign only");
    }
    if (!sign_purpose && (!key.attributes.encrypt || !key.attributes.decrypt || key.attributes.sign ||
                          key.attributes.wrap || key.attributes.unwrap || key.attributes.derive)) {
      problems.push_back("its usage is " + join(key.attributes.usages()) + ", not encrypt and decrypt only");
    }
    if (!problems.empty()) {
      try {
        destroy(key.id);
      } catch (const Error& e) {
        log::error(std::string("could not destroy a key the token made wrongly: ") + e.what());
      }
      throw Error(ErrorCode::FailedPrecondition,
                  "the token did not create the key as asked (" + join(problems) + "); it was destroyed again");
    }
    return key;
  }

  TokenKey describe_key(const AttributeValues& values, CK_OBJECT_CLASS object_class) const {
    TokenKey key;
    key.id = values.bytes(CKA_ID).value_or(std::vector<std::uint8_t>{});
    key.label = values.string(CKA_LABEL).value_or("");
    key.kind = object_class == CKO_SECRET_KEY ? TokenKey::Kind::SecretKey : TokenKey::Kind::PrivateKey;
    classify(values, key);
    key.attributes = security_of(values);
    key.uri = hsm::Uri::for_object(token_->token_info(), key.label, key.id, object_class);
    return key;
  }

  // Reads through the handle cache; nullopt when there is no such object.
  std::optional<AttributeValues> read_if_present(const ObjectRef& ref, std::span<const CK_ATTRIBUTE_TYPE> types) {
    try {
      return token_->read(ref, types);
    } catch (const Error& e) {
      if (e.code() == ErrorCode::NotFound && !e.ck_rv()) return std::nullopt;
      throw;
    }
  }

  TokenKey usable_key(std::span<const std::uint8_t> id) {
    std::optional<TokenKey> key = find(id);
    if (!key) throw Error(ErrorCode::NotFound, "the token has no key with CKA_ID " + to_hex(id));
    std::vector<std::string> reasons = key->attributes.exposure_reasons();
    if (!reasons.empty()) {
      throw Error(ErrorCode::PermissionDenied,
                  describe_for_error(*key) + " could have left the token (" + join(reasons) +
                      "); keyhold uses only keys that were generated in the token and never extractable");
    }
    return *key;
  }

  static std::string describe_for_error(const TokenKey& key) {
    return "key '" + key.label + "' (CKA_ID " + to_hex(key.id) + ")";
  }

  static std::string join(const std::vector<std::string>& items) {
    std::string out;
    for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
    return out.empty() ? "none" : out;
  }

  std::shared_ptr<hsm::Token> token_;
};

}  // namespace

std::vector<std::string> SecurityAttributes::exposure_reasons() const {
  std::vector<std::string> reasons;
  if (!sensitive) reasons.emplace_back("CKA_SENSITIVE is FALSE");
  if (extractable) reasons.emplace_back("CKA_EXTRACTABLE is TRUE");
  if (!always_sensitive) reasons.emplace_back("CKA_ALWAYS_SENSITIVE is FALSE");
  if (!never_extractable) reasons.emplace_back("CKA_NEVER_EXTRACTABLE is FALSE");
  return reasons;
}

std::vector<std::string> SecurityAttributes::usages() const {
  std::vector<std::string> out;
  const std::pair<bool, const char*> flags[] = {{sign, "sign"},       {verify, "verify"}, {encrypt, "encrypt"},
                                                {decrypt, "decrypt"}, {wrap, "wrap"},     {unwrap, "unwrap"},
                                                {derive, "derive"}};
  for (const auto& [set, name] : flags) {
    if (set) out.emplace_back(name);
  }
  return out;
}

std::unique_ptr<KeyRing> make_token_key_ring(std::shared_ptr<hsm::Token> token) {
  return std::make_unique<TokenKeyRing>(std::move(token));
}

}  // namespace keyhold::crypto
