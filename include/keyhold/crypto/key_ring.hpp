#pragma once
// The keys held in one token, as the layers above see them: no PKCS#11
// types cross this interface.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "keyhold/core/activity.hpp"
#include "keyhold/crypto/kek.hpp"
#include "keyhold/crypto/key_type.hpp"
#include "keyhold/crypto/public_key.hpp"
#include "keyhold/crypto/signer.hpp"

namespace keyhold::crypto {

// Security attributes as the token reports them (PKCS#11 CKA_* of the same
// names). An attribute the token did not report reads as false.
struct SecurityAttributes {
  bool private_object = false;
  bool sensitive = false;
  bool extractable = false;
  bool always_sensitive = false;
  bool never_extractable = false;
  bool local = false;
  bool modifiable = false;
  bool sign = false;
  bool verify = false;
  bool encrypt = false;
  bool decrypt = false;
  bool wrap = false;
  bool unwrap = false;
  bool derive = false;

  // Why the key could have left the token (e.g. "CKA_EXTRACTABLE is TRUE");
  // empty when it could not. keyhold uses only keys for which this is empty.
  std::vector<std::string> exposure_reasons() const;
  // The usages the key permits: "sign", "decrypt", ...
  std::vector<std::string> usages() const;
};

struct TokenKey {
  enum class Kind { PrivateKey, SecretKey };

  std::vector<std::uint8_t> id;  // CKA_ID
  std::string label;             // CKA_LABEL
  Kind kind = Kind::PrivateKey;
  std::optional<KeyType> type;   // nullopt: a key keyhold does not manage (DSA, P-521, AES-128, ...)
  std::string token_type;        // what the token holds, for display: "rsa-2048", "ec secp521r1", "dsa", "aes-128"
  SecurityAttributes attributes;
  bool has_public_object = false;  // a CKO_PUBLIC_KEY with the same CKA_ID exists
  std::string uri;                 // RFC 7512 URI of the private or secret key object
};

struct TokenSummary {
  std::string uri;
  std::string label;
  std::string manufacturer;
  std::string model;
  std::string serial;
  unsigned long slot_id = 0;
  std::string slot_description;
  std::string hardware_version;
  std::string firmware_version;
  std::vector<std::string> flags;
  std::optional<unsigned long> max_sessions;
  unsigned long session_count = 0;
  std::optional<unsigned long> free_private_memory;
  std::optional<unsigned long> total_private_memory;
  std::vector<std::string> mechanisms;         // every mechanism the token offers
  std::vector<std::string> missing_for;        // keyhold key types the token cannot make (missing mechanisms)
  std::string module_path;
  std::string module_name;
  std::string module_description;
  std::string module_manufacturer;
  std::string module_version;
  std::string cryptoki_version;
};

class KeyRing {
 public:
  virtual ~KeyRing() = default;

  // Generates a key of type in the token: a token object that is private,
  // sensitive, non-extractable, unmodifiable where the token allows, with
  // only the usage of its purpose, CKA_LABEL label and a fresh random 16-byte
  // CKA_ID; key pairs get a public object with the same CKA_ID. Reads the
  // attributes back and destroys the key again if the token did not honour
  // them. Throws on token failure. Serialised per process.
  virtual TokenKey create(std::string_view label, KeyType type) = 0;

  // Every private and secret key on the token, managed by keyhold or not.
  // Objects of other classes (certificates, data) are ignored.
  virtual std::vector<TokenKey> list() = 0;
  // nullopt when no private or secret key has that CKA_ID.
  virtual std::optional<TokenKey> find(std::span<const std::uint8_t> id) = 0;
  // The private or secret key an RFC 7512 URI names (by id=, object= and
  // type=; the token attributes of the URI must match this token).
  // InvalidArgument for a malformed URI or one that names several keys.
  virtual std::optional<TokenKey> find_by_uri(std::string_view uri) = 0;
  // Private and secret keys whose CKA_LABEL is label (one search, no cache).
  virtual std::vector<TokenKey> find_by_label(std::string_view label) = 0;
  // The public half: InvalidArgument for a secret key, NotFound when absent.
  virtual PublicKey public_key(std::span<const std::uint8_t> id) = 0;

  // A signer for the key. PermissionDenied, with the reasons, when the key's
  // attributes show it could have left the token or do not allow signing;
  // NotFound when absent.
  virtual std::shared_ptr<const Signer> signer(std::span<const std::uint8_t> id) = 0;
  // A KEK for an AES key, under the same rules.
  virtual std::shared_ptr<const Kek> kek(std::span<const std::uint8_t> id) = 0;

  // Destroys the private or secret key and its public object.
  virtual void destroy(std::span<const std::uint8_t> id) = 0;

  virtual TokenSummary describe() = 0;
  // What the token has been doing (metrics); cheap, never touches the token.
  virtual TokenActivity activity() const = 0;
  virtual std::vector<std::uint8_t> random(std::size_t size) = 0;
};

}  // namespace keyhold::crypto
