#include "keyhold/service/key_service.hpp"

#include <map>

#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/core/log.hpp"
#include "keyhold/core/names.hpp"

namespace keyhold::service {

void validate_key_name(std::string_view name) { validate_name("key", name); }

store::KeyRecord KeyService::active_record(std::string_view name) {
  validate_key_name(name);
  std::optional<store::KeyRecord> record = store_.keys().find_active(name);
  if (!record) {
    throw Error(ErrorCode::NotFound, "no key named '" + std::string(name) + "' ('keyhold key list' shows the keys)");
  }
  return *record;
}

KeyDetails KeyService::create(std::string_view name, crypto::KeyType type,
                              std::optional<crypto::KeyPurpose> purpose) {
  // The names keyhold gives the keys of its CAs, SSH keys and KEKs: a key of
  // one's own under such a name would block that CA's, key's or KEK's next version.
  validate_key_name(name);
  for (std::string_view prefix : {"ca.", "ssh-ca.", "ssh.", "kek."}) {
    if (name.substr(0, prefix.size()) == prefix) {
      throw Error(ErrorCode::InvalidArgument, "key names starting with '" + std::string(prefix) +
                                                  "' are kept for the keys keyhold makes for CAs, SSH keys and KEKs; "
                                                  "choose another name");
    }
  }
  return create_with_use(name, type, purpose, std::nullopt);
}

KeyDetails KeyService::create_with_use(std::string_view name, crypto::KeyType type,
                                       std::optional<crypto::KeyPurpose> purpose,
                                       std::optional<std::string_view> used_by) {
  validate_key_name(name);
  crypto::KeyPurpose natural = crypto::purpose_of(type);
  if (purpose && *purpose != natural) {
    throw Error(ErrorCode::InvalidArgument,
                std::string(crypto::to_string(type)) + " keys are for " +
                    (natural == crypto::KeyPurpose::Sign ? "signing" : "encryption") + ", not for " +
                    (*purpose == crypto::KeyPurpose::Sign ? "signing" : "encryption") +
                    (*purpose == crypto::KeyPurpose::Encrypt ? " (use --type aes-256)"
                                                             : " (use an rsa, ec or ed25519 type)"));
  }
  if (store_.keys().find_active(name)) {
    throw Error(ErrorCode::AlreadyExists, "a key named '" + std::string(name) + "' exists already");
  }
  if (!ring_.find_by_label(name).empty()) {
    throw Error(ErrorCode::AlreadyExists, "the token already holds a key labelled '" + std::string(name) +
                                              "' that keyhold did not make; choose another name");
  }

  crypto::TokenKey key = ring_.create(name, type);
  store::KeyRecord record;
  record.name = std::string(name);
  record.token_object_id = key.id;
  record.key_type = std::string(crypto::to_string(type));
  record.purpose = std::string(crypto::to_string(natural));
  if (used_by) record.used_by = std::string(*used_by);
  try {
    store::Transaction tx(store_);
    store_.keys().insert(record);
    tx.commit();
  } catch (...) {
    // No store row, no key: the token key must not outlive a failed create.
    try {
      ring_.destroy(key.id);
    } catch (const Error& e) {
      log::error("key '" + std::string(name) + "' (CKA_ID " + to_hex(key.id) +
                 ") was made in the token but could not be recorded nor destroyed: " + e.what());
    }
    throw;
  }
  return KeyDetails{record, key};
}

KeyInventory KeyService::list(bool include_destroyed) {
  KeyInventory inventory;
  std::vector<crypto::TokenKey> token_keys = ring_.list();
  std::map<std::vector<std::uint8_t>, const crypto::TokenKey*> by_id;
  for (const crypto::TokenKey& k : token_keys) by_id.emplace(k.id, &k);

  std::map<std::vector<std::uint8_t>, bool> claimed;
  for (store::KeyRecord& record : store_.keys().list(include_destroyed)) {
    KeyDetails details{record, std::nullopt};
    if (record.state == "active") {
      if (auto it = by_id.find(record.token_object_id); it != by_id.end()) details.token = *it->second;
      claimed[record.token_object_id] = true;
    }
    inventory.keys.push_back(std::move(details));
  }
  for (const crypto::TokenKey& k : token_keys) {
    if (claimed.count(k.id) == 0) inventory.unmanaged.push_back(k);
  }
  return inventory;
}

KeyDetails KeyService::show(std::string_view name) {
  store::KeyRecord record = active_record(name);
  return KeyDetails{record, ring_.find(record.token_object_id)};
}

crypto::PublicKey KeyService::public_key(std::string_view name) {
  store::KeyRecord record = active_record(name);
  if (record.purpose != "sign") {
    throw Error(ErrorCode::InvalidArgument, "key '" + record.name + "' is a secret " + record.key_type +
                                                " key: it has no public half");
  }
  return ring_.public_key(record.token_object_id);
}

store::KeyRecord KeyService::destroy(std::string_view name) {
  store::KeyRecord record = active_record(name);
  if (record.used_by) {
    throw Error(ErrorCode::PermissionDenied, "key '" + record.name + "' is in use (" + *record.used_by +
                                                 ") and cannot be destroyed while it is");
  }
  destroy_record(record);
  return record;
}

void KeyService::destroy_record(store::KeyRecord& record) {
  try {
    ring_.destroy(record.token_object_id);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::NotFound || e.ck_rv()) throw;
    log::warn("key '" + record.name + "' was already gone from the token; marking it destroyed");
  }
  record.destroyed_at = now_utc();
  record.state = "destroyed";
  // One statement: it joins the caller's transaction when there is one.
  store_.keys().mark_destroyed(record.name, *record.destroyed_at);
}

crypto::TokenKey KeyService::create_key(std::string_view name, crypto::KeyType type, std::string_view used_by) {
  KeyDetails details = create_with_use(name, type, std::nullopt, used_by);
  return *details.token;
}

void KeyService::adopt_key(std::string_view name, const crypto::TokenKey& key, std::string_view used_by) {
  validate_key_name(name);
  if (!key.type) throw Error(ErrorCode::InvalidArgument, "keyhold does not manage " + key.token_type + " keys");
  // A key keyhold made already has a record: it only becomes used.
  if (std::optional<store::KeyRecord> existing = store_.keys().find_by_object_id(key.id);
      existing && existing->state == "active") {
    if (existing->used_by) {
      throw Error(ErrorCode::AlreadyExists, "key '" + existing->name + "' is already used by " + *existing->used_by);
    }
    store_.keys().set_used_by(existing->id, used_by);
    return;
  }
  store::KeyRecord record;
  record.name = std::string(name);
  record.token_object_id = key.id;
  record.key_type = std::string(crypto::to_string(*key.type));
  record.purpose = std::string(crypto::to_string(crypto::purpose_of(*key.type)));
  record.used_by = std::string(used_by);
  // One statement: it joins the caller's transaction when there is one.
  store_.keys().insert(record);
}

void KeyService::discard_key(std::string_view name) noexcept {
  try {
    store::KeyRecord record = active_record(name);
    ring_.destroy(record.token_object_id);
    store_.keys().mark_destroyed(record.name, now_utc());
  } catch (const std::exception& e) {
    log::error("could not discard key '" + std::string(name) + "' after a failed operation: " + e.what());
  }
}

void KeyService::release_key(std::string_view name) {
  store::KeyRecord record = active_record(name);
  destroy_record(record);
}

void KeyService::set_used_by(std::string_view name, std::string_view used_by) {
  store::KeyRecord record = active_record(name);
  store_.keys().set_used_by(record.id, used_by);
}

std::shared_ptr<const crypto::Signer> KeyService::signer_for(std::span<const std::uint8_t> object_id) {
  return ring_.signer(object_id);
}

std::shared_ptr<const crypto::Signer> KeyService::signer(std::string_view name) {
  return ring_.signer(active_record(name).token_object_id);
}

std::shared_ptr<const crypto::Kek> KeyService::kek(std::string_view name) {
  return ring_.kek(active_record(name).token_object_id);
}

}  // namespace keyhold::service
