#include "keyhold/envelope/service.hpp"

#include <algorithm>

#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/core/log.hpp"
#include "keyhold/core/names.hpp"
#include "keyhold/core/process.hpp"

namespace keyhold::envelope {
namespace {

// "kek." + name + ".v" + version must stay a valid key name (64 characters).
constexpr std::size_t kMaxKekNameLength = 48;

std::string kek_label(const store::KekRecord& kek) { return "KEK '" + kek.name + "'"; }

std::string version_label(const store::KekRecord& kek, std::uint32_t version) {
  return kek_label(kek) + " version " + std::to_string(version);
}

std::string duration_text(std::int64_t seconds) {
  if (seconds % 86400 == 0) return std::to_string(seconds / 86400) + "d";
  if (seconds % 3600 == 0) return std::to_string(seconds / 3600) + "h";
  if (seconds % 60 == 0) return std::to_string(seconds / 60) + "m";
  return std::to_string(seconds) + "s";
}

std::chrono::system_clock::time_point stored_time(const std::string& text) {
  std::optional<std::chrono::system_clock::time_point> t = parse_utc(text);
  if (!t) throw Error(ErrorCode::Internal, "malformed timestamp in the store: " + text);
  return *t;
}

std::int64_t seconds_of(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

SecretBytes Service::random_data_key(std::size_t bytes) {
  // From the token's RNG, 2 KiB at a time per thread: one C_GenerateRandom
  // per data key would cost a token round trip as large as the encryption.
  // Each key's bytes are wiped from the pool as they are handed out, and a
  // pool is never used across fork() (parent and child would hand out the
  // same keys).
  struct Pool {
    SecretBytes bytes;
    std::size_t used = 0;
    std::uint64_t generation = 0;
  };
  constexpr std::size_t kPoolBytes = 2048;
  thread_local Pool pool;
  if (pool.bytes.size() - pool.used < bytes || pool.generation != fork_generation()) {
    std::vector<std::uint8_t> drawn = keys_.ring().random(kPoolBytes);
    pool.bytes = SecretBytes(drawn.data(), drawn.size());
    secure_wipe(drawn.data(), drawn.size());
    pool.used = 0;
    pool.generation = fork_generation();
  }
  SecretBytes key(pool.bytes.data() + pool.used, bytes);
  secure_wipe(pool.bytes.data() + pool.used, bytes);
  pool.used += bytes;
  return key;
}

std::string kek_key_name(const std::string& kek, std::uint32_t version) {
  return "kek." + kek + ".v" + std::to_string(version);
}

Service::Service(store::Store& store, crypto::KeyVault& keys, ServiceSettings settings)
    : store_(store), keys_(keys), settings_(std::move(settings)) {
  if (settings_.reservation_batch == 0) settings_.reservation_batch = 1;
}

store::KekRecord Service::load(const std::string& name) {
  validate_name("KEK", name);
  std::optional<store::KekRecord> kek = store_.keks().find(name);
  if (!kek) throw Error(ErrorCode::NotFound, "no KEK named '" + name + "'");
  return *kek;
}

std::string Service::due_reason(const store::KekRecord& kek, const store::KekVersionRecord& primary) {
  if (primary.encryptions >= kek.max_encryptions) {
    return "version " + std::to_string(primary.version) + " has done " + std::to_string(primary.encryptions) +
           " encryptions (max-encryptions " + std::to_string(kek.max_encryptions) + ")";
  }
  if (kek.rotation_period_seconds > 0) {
    std::int64_t created = seconds_of(stored_time(primary.created_at));
    if (seconds_of(settings_.now()) - created >= kek.rotation_period_seconds) {
      return "version " + std::to_string(primary.version) + " is older than the rotation period (" +
             duration_text(kek.rotation_period_seconds) + ")";
    }
  }
  return "";
}

KekInfo Service::info(const store::KekRecord& kek) {
  KekInfo result;
  result.kek = kek;
  std::vector<store::KekVersionRecord> versions = store_.keks().versions(kek.id);
  if (versions.empty()) throw Error(ErrorCode::Internal, kek_label(kek) + " has no versions in the store");
  result.primary_version = versions.back().version;
  for (auto& v : versions) result.versions.push_back({v, v.version == result.primary_version});
  const store::KekVersionRecord& primary = versions.back();
  if (kek.rotation_period_seconds > 0) {
    std::int64_t due = seconds_of(stored_time(primary.created_at)) + kek.rotation_period_seconds;
    result.next_rotation_due = format_utc(std::chrono::system_clock::time_point(std::chrono::seconds(due)));
  }
  result.due_reason = due_reason(kek, primary);
  return result;
}

crypto::TokenKey Service::create_version_key(const std::string& kek, std::uint32_t version) {
  return keys_.create_key(kek_key_name(kek, version), crypto::KeyType::Aes256,
                          "kek:" + kek + ":v" + std::to_string(version));
}

store::KekVersionRecord Service::version_record(const store::KekRecord& kek, std::uint32_t version,
                                                const crypto::TokenKey& key) {
  store::KekVersionRecord record;
  record.kek_id = kek.id;
  record.version = version;
  record.key_object_id = key.id;
  record.state = std::string(store::kKekVersionEnabled);
  record.created_at = format_utc(settings_.now());
  return record;
}

store::KekVersionRecord Service::add_version(const store::KekRecord& kek, std::uint32_t version) {
  crypto::TokenKey key = create_version_key(kek.name, version);
  try {
    store::KekVersionRecord record = version_record(kek, version, key);
    store_.keks().insert_version(record);
    return record;
  } catch (...) {
    keys_.discard_key(kek_key_name(kek.name, version));
    throw;
  }
}

KekInfo Service::create_kek(const std::string& name, std::chrono::seconds rotation_period,
                            std::uint64_t max_encryptions) {
  if (name.size() > kMaxKekNameLength) {
    throw Error(ErrorCode::InvalidArgument,
                "a KEK name has at most " + std::to_string(kMaxKekNameLength) + " characters (its keys are named kek.NAME.vN)");
  }
  validate_name("KEK", name);
  if (rotation_period.count() < 0) throw Error(ErrorCode::InvalidArgument, "the rotation period cannot be negative");
  if (max_encryptions == 0 || max_encryptions > kEncryptionCeiling) {
    throw Error(ErrorCode::InvalidArgument, "max-encryptions must be between 1 and 2^32 (" +
                                                std::to_string(kEncryptionCeiling) + "), not " +
                                                std::to_string(max_encryptions));
  }
  if (store_.keks().find(name)) throw Error(ErrorCode::AlreadyExists, "a KEK named '" + name + "' exists already");

  store::KekRecord kek;
  kek.name = name;
  kek.kek_id = keys_.ring().random(kKekIdBytes);
  kek.rotation_period_seconds = rotation_period.count();
  kek.max_encryptions = max_encryptions;
  kek.created_at = format_utc(settings_.now());
  // The KEK row and its first version are one transaction: a failure leaves
  // neither, and the token key is discarded.
  crypto::TokenKey key = create_version_key(name, 1);
  try {
    store::Transaction transaction(store_);
    store_.keks().insert(kek);
    store::KekVersionRecord first = version_record(kek, 1, key);
    store_.keks().insert_version(first);
    transaction.commit();
  } catch (...) {
    keys_.discard_key(kek_key_name(name, 1));
    throw;
  }
  return info(kek);
}

KekInfo Service::rotate(const std::string& name) {
  store::KekRecord kek = load(name);
  std::vector<store::KekVersionRecord> versions = store_.keks().versions(kek.id);
  std::uint32_t next = versions.empty() ? 1 : versions.back().version + 1;
  add_version(kek, next);
  forget_snapshots();
  log::info("rotated " + kek_label(kek) + " to version " + std::to_string(next));
  return info(kek);
}

KekInfo Service::show(const std::string& name) { return info(load(name)); }

std::vector<KekInfo> Service::list() {
  std::vector<KekInfo> result;
  for (const store::KekRecord& kek : store_.keks().list()) result.push_back(info(kek));
  return result;
}

KekInfo Service::change_state(const std::string& name, std::uint32_t version, std::string_view state) {
  store::KekRecord kek = load(name);
  std::vector<store::KekVersionRecord> versions = store_.keks().versions(kek.id);
  auto it = std::find_if(versions.begin(), versions.end(), [&](const auto& v) { return v.version == version; });
  if (it == versions.end()) throw Error(ErrorCode::NotFound, kek_label(kek) + " has no version " + std::to_string(version));
  if (state != store::kKekVersionEnabled && it->version == versions.back().version) {
    throw Error(ErrorCode::FailedPrecondition, version_label(kek, version) + " is the primary version and cannot be " +
                                                   std::string(state == store::kKekVersionDisabled ? "disabled" : "destroyed") +
                                                   " (rotate first: keyhold kek rotate " + kek.name + ")");
  }
  std::string at = format_utc(settings_.now());
  if (state == store::kKekVersionDestroyed) {
    if (it->state == store::kKekVersionDestroyed) {
      throw Error(ErrorCode::FailedPrecondition,
                  version_label(kek, version) + " was destroyed at " + it->state_changed_at.value_or("an unknown time"));
    }
    // The token object first: a version the store calls destroyed must not
    // still be able to decrypt.
    store::Transaction transaction(store_);
    keys_.release_key(kek_key_name(kek.name, version));
    store_.keks().set_state(it->id, state, at);
    transaction.commit();
    {
      std::lock_guard lock(mutex_);
      keks_.erase(it->id);
    }
    log::info("destroyed " + version_label(kek, version));
  } else {
    store_.keks().set_state(it->id, state, at);
  }
  forget_snapshots();
  return info(kek);
}

KekInfo Service::disable_version(const std::string& name, std::uint32_t version) {
  return change_state(name, version, store::kKekVersionDisabled);
}
KekInfo Service::enable_version(const std::string& name, std::uint32_t version) {
  return change_state(name, version, store::kKekVersionEnabled);
}
KekInfo Service::destroy_version(const std::string& name, std::uint32_t version) {
  return change_state(name, version, store::kKekVersionDestroyed);
}

std::vector<RotationResult> Service::rotate_due() {
  std::vector<RotationResult> rotated;
  for (const store::KekRecord& kek : store_.keks().list()) {
    std::vector<store::KekVersionRecord> versions = store_.keks().versions(kek.id);
    if (versions.empty()) continue;
    std::string reason = due_reason(kek, versions.back());
    if (reason.empty()) continue;
    add_version(kek, versions.back().version + 1);
    forget_snapshots();
    log::info("rotated " + kek_label(kek) + " to version " + std::to_string(versions.back().version + 1) + ": " + reason);
    rotated.push_back({kek.name, versions.back().version + 1, reason});
  }
  return rotated;
}

std::shared_ptr<const crypto::Kek> Service::kek_of(const store::KekVersionRecord& version) {
  {
    std::lock_guard lock(mutex_);
    if (auto it = keks_.find(version.id); it != keks_.end()) return it->second;
  }
  std::shared_ptr<const crypto::Kek> kek = keys_.ring().kek(version.key_object_id);
  std::lock_guard lock(mutex_);
  return keks_.emplace(version.id, std::move(kek)).first->second;
}

void Service::count_encryption(const store::KekRecord& kek, const store::KekVersionRecord& version) {
  std::lock_guard lock(mutex_);
  Counter& counter = counters_[version.id];
  if (counter.next == counter.limit) {
    std::uint64_t batch = settings_.reservation_batch;
    std::uint64_t before = store_.keks().reserve_encryptions(version.id, batch);
    counter.next = before;
    counter.limit = before + batch;
  }
  if (counter.next >= kEncryptionCeiling) {
    throw Error(ErrorCode::FailedPrecondition, version_label(kek, version.version) +
                                                   " has done 2^32 encryptions, the limit for random IVs under one key: "
                                                   "rotate it (keyhold kek rotate " + kek.name + ")");
  }
  ++counter.next;
}

std::shared_ptr<const Service::KekSnapshot> Service::read_snapshot(const store::KekRecord& kek) {
  auto snapshot = std::make_shared<KekSnapshot>();
  snapshot->kek = kek;
  snapshot->versions = store_.keks().versions(kek.id);
  if (snapshot->versions.empty()) throw Error(ErrorCode::Internal, kek_label(kek) + " has no versions in the store");
  snapshot->read_at = std::chrono::steady_clock::now();
  std::lock_guard lock(cache_mutex_);
  snapshots_[kek.name] = snapshot;
  names_by_kek_id_[kek.kek_id] = kek.name;
  return snapshot;
}

std::shared_ptr<const Service::KekSnapshot> Service::snapshot(const std::string& name) {
  {
    std::lock_guard lock(cache_mutex_);
    auto it = snapshots_.find(name);
    if (it != snapshots_.end() && std::chrono::steady_clock::now() - it->second->read_at < settings_.versions_cache) {
      return it->second;
    }
  }
  return read_snapshot(load(name));
}

std::shared_ptr<const Service::KekSnapshot> Service::snapshot_by_kek_id(std::span<const std::uint8_t> kek_id) {
  {
    std::lock_guard lock(cache_mutex_);
    auto name = names_by_kek_id_.find(std::vector<std::uint8_t>(kek_id.begin(), kek_id.end()));
    if (name != names_by_kek_id_.end()) {
      auto it = snapshots_.find(name->second);
      if (it != snapshots_.end() && std::chrono::steady_clock::now() - it->second->read_at < settings_.versions_cache) {
        return it->second;
      }
    }
  }
  std::optional<store::KekRecord> kek = store_.keks().find_by_kek_id(kek_id);
  if (!kek) return nullptr;
  return read_snapshot(*kek);
}

void Service::forget_snapshots() {
  std::lock_guard lock(cache_mutex_);
  snapshots_.clear();
  names_by_kek_id_.clear();
}

Ciphertext Service::encrypt_under_primary(const KekSnapshot& snapshot, std::span<const std::uint8_t> plaintext,
                                          const Context& context) {
  const store::KekRecord& kek = snapshot.kek;
  if (plaintext.size() > kMaxPlaintextBytes) {
    throw Error(ErrorCode::InvalidArgument, "the plaintext is " + std::to_string(plaintext.size()) +
                                                " bytes; keyhold encrypt takes at most 4096 (seal a larger file "
                                                "with keyhold seal, or encrypt it locally under a data key)");
  }
  canonical_context(context);  // checked before the token is asked for anything
  const store::KekVersionRecord& primary = snapshot.versions.back();
  std::shared_ptr<const crypto::Kek> token_kek = kek_of(primary);
  count_encryption(kek, primary);

  Ciphertext result;
  std::copy_n(kek.kek_id.begin(), kKekIdBytes, result.kek_id.begin());
  result.kek_version = primary.version;
  // The associated data covers the header, IV included.
  crypto::SealedBytes sealed = token_kek->encrypt_with_iv_in_aad(plaintext, [&](const std::array<std::uint8_t, kIvBytes>& iv) {
    result.iv = iv;
    return associated_data(result, context);
  });
  result.sealed = std::move(sealed.ciphertext);
  return result;
}

DataKey Service::generate_data_key(const std::string& kek_name, const Context& context, std::size_t bytes) {
  if (bytes != 16 && bytes != 32) {
    throw Error(ErrorCode::InvalidArgument, "a data key is 16 or 32 bytes, not " + std::to_string(bytes));
  }
  std::shared_ptr<const KekSnapshot> kek = snapshot(kek_name);
  canonical_context(context);  // a bad context fails before the token is asked for anything
  DataKey key;
  key.plaintext = random_data_key(bytes);
  key.ciphertext = encrypt_under_primary(*kek, key.plaintext.view(), context);
  return key;
}

Ciphertext Service::encrypt(const std::string& kek_name, std::span<const std::uint8_t> plaintext, const Context& context) {
  if (plaintext.size() > kMaxPlaintextBytes) {
    throw Error(ErrorCode::InvalidArgument, "the plaintext is " + std::to_string(plaintext.size()) +
                                                " bytes; keyhold encrypt takes at most 4096 (seal a larger file "
                                                "with keyhold seal, or encrypt it locally under a data key)");
  }
  return encrypt_under_primary(*snapshot(kek_name), plaintext, context);
}

Decrypted Service::decrypt(const Ciphertext& ciphertext, const Context& context,
                           const std::optional<std::string>& expected_kek) {
  std::vector<std::uint8_t> aad = associated_data(ciphertext, context);
  std::shared_ptr<const KekSnapshot> found = snapshot_by_kek_id(ciphertext.kek_id);
  const store::KekRecord* kek = found ? &found->kek : nullptr;
  if (!found) {
    throw Error(ErrorCode::NotFound, "the ciphertext names KEK id " + to_hex(ciphertext.kek_id) +
                                         ", which no KEK of this keyhold has");
  }
  if (expected_kek && *expected_kek != kek->name) {
    // Not which KEK it names: a service caller allowed only on expected_kek must not learn other KEKs' names.
    throw Error(ErrorCode::InvalidArgument, "the ciphertext was not made under KEK '" + *expected_kek +
                                                "' (it names another KEK)");
  }
  const store::KekVersionRecord* version = nullptr;
  for (const auto& v : found->versions) {
    if (v.version == ciphertext.kek_version) version = &v;
  }
  if (version == nullptr) {
    throw Error(ErrorCode::NotFound, kek_label(*kek) + " has no version " + std::to_string(ciphertext.kek_version));
  }
  if (version->state == store::kKekVersionDisabled) {
    throw Error(ErrorCode::FailedPrecondition,
                version_label(*kek, version->version) + " is disabled" +
                    (version->state_changed_at ? " (since " + *version->state_changed_at + ")" : std::string()) +
                    ": enable it with keyhold kek enable-version " + kek->name + " " + std::to_string(version->version));
  }
  if (version->state == store::kKekVersionDestroyed) {
    throw Error(ErrorCode::FailedPrecondition,
                version_label(*kek, version->version) + " was destroyed at " +
                    version->state_changed_at.value_or("an unknown time") +
                    ": what it encrypted cannot be decrypted any more");
  }
  crypto::SealedBytes sealed;
  sealed.iv = ciphertext.iv;
  sealed.ciphertext = ciphertext.sealed;
  Decrypted result;
  result.plaintext = kek_of(*version)->decrypt(sealed, aad);
  result.kek_name = kek->name;
  result.kek_version = version->version;
  return result;
}

Ciphertext Service::rewrap(const Ciphertext& ciphertext, const Context& context, const std::optional<Context>& new_context,
                           const std::optional<std::string>& expected_kek) {
  const Context& target = new_context ? *new_context : context;
  canonical_context(target);  // checked before anything is decrypted
  Decrypted plain = decrypt(ciphertext, context, expected_kek);
  return encrypt_under_primary(*snapshot(plain.kek_name), plain.plaintext.view(), target);
}

}  // namespace keyhold::envelope
