#pragma once
// What the authorities (X.509, SSH) need from key management: keys created
// in the token and recorded in the store as used by a CA, a certificate or an
// SSH key version. Implemented by service::KeyService; pki and ssh do not
// know how.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "keyhold/crypto/key_ring.hpp"

namespace keyhold::crypto {

class KeyVault {
 public:
  virtual ~KeyVault() = default;
  // A new non-extractable key in the token, recorded under name as used by used_by.
  virtual TokenKey create_key(std::string_view name, KeyType type, std::string_view used_by) = 0;
  // Records an existing token key (already checked safe) under name as used
  // by used_by; a key keyhold already records keeps its name and is marked
  // used. AlreadyExists when something uses it already.
  virtual void adopt_key(std::string_view name, const TokenKey& key, std::string_view used_by) = 0;
  // Destroys a key made by create_key whose use then failed (best effort, logged).
  virtual void discard_key(std::string_view name) noexcept = 0;
  // Destroys a key its user no longer needs (an SSH key version retired):
  // token objects gone, store record marked destroyed and kept.
  virtual void release_key(std::string_view name) = 0;
  virtual void set_used_by(std::string_view name, std::string_view used_by) = 0;
  virtual std::shared_ptr<const Signer> signer_for(std::span<const std::uint8_t> object_id) = 0;
  virtual KeyRing& ring() = 0;
};

}  // namespace keyhold::crypto
