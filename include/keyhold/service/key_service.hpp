#pragma once
// Key lifecycle: the rules around creating, listing, showing, exporting and
// destroying keys, over a token (crypto::KeyRing) and the store. The token
// holds the keys; the store holds their names and history.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "keyhold/crypto/key_ring.hpp"
#include "keyhold/crypto/key_vault.hpp"
#include "keyhold/store/store.hpp"

namespace keyhold::service {

struct KeyDetails {
  store::KeyRecord record;
  std::optional<crypto::TokenKey> token;  // nullopt: the token object is gone (drift)
};

struct KeyInventory {
  std::vector<KeyDetails> keys;               // keys the store knows (destroyed ones when asked for)
  std::vector<crypto::TokenKey> unmanaged;    // token keys no active store entry names (made by another tool)
};

// Names: 1 to 64 of [A-Za-z0-9._-], starting with a letter or digit (they
// become CKA_LABELs, file names and URL path segments later).
void validate_key_name(std::string_view name);

// Not thread-safe for concurrent creates of one name (the store's unique
// index catches that race: the loser's token key is destroyed again).
// It is also the key vault of the certificate authority (crypto::KeyVault).
class KeyService final : public crypto::KeyVault {
 public:
  KeyService(crypto::KeyRing& ring, store::Store& store) : ring_(ring), store_(store) {}

  // InvalidArgument for a bad name or a purpose the type does not serve;
  // AlreadyExists when the store or the token already has a key of that name.
  // The store row is written only after the token made the key; if writing
  // it fails, the token key is destroyed again.
  KeyDetails create(std::string_view name, crypto::KeyType type, std::optional<crypto::KeyPurpose> purpose);
  KeyInventory list(bool include_destroyed);
  // NotFound when no active key has that name.
  KeyDetails show(std::string_view name);
  // InvalidArgument for a secret key.
  crypto::PublicKey public_key(std::string_view name);
  // Destroys the token objects and marks the store row destroyed (kept for
  // audit). PermissionDenied while a CA or certificate uses the key.
  store::KeyRecord destroy(std::string_view name);

  std::shared_ptr<const crypto::Signer> signer(std::string_view name);
  std::shared_ptr<const crypto::Kek> kek(std::string_view name);

  // crypto::KeyVault
  crypto::TokenKey create_key(std::string_view name, crypto::KeyType type, std::string_view used_by) override;
  void adopt_key(std::string_view name, const crypto::TokenKey& key, std::string_view used_by) override;
  void discard_key(std::string_view name) noexcept override;
  void release_key(std::string_view name) override;
  void set_used_by(std::string_view name, std::string_view used_by) override;
  std::shared_ptr<const crypto::Signer> signer_for(std::span<const std::uint8_t> object_id) override;
  crypto::KeyRing& ring() override { return ring_; }

 private:
  store::KeyRecord active_record(std::string_view name);
  // Token objects destroyed, store record marked destroyed (kept).
  void destroy_record(store::KeyRecord& record);
  KeyDetails create_with_use(std::string_view name, crypto::KeyType type, std::optional<crypto::KeyPurpose> purpose,
                             std::optional<std::string_view> used_by);

  crypto::KeyRing& ring_;
  store::Store& store_;
};

}  // namespace keyhold::service
