#pragma once
// Envelope encryption: versioned key-encryption keys (KEKs) in the token,
// data keys, encrypt/decrypt/rewrap with an encryption context, rotation.
//
// A KEK has versions 1..n, each an AES-256 token object usable only to
// encrypt and decrypt. The newest version is primary: it encrypts; older
// enabled versions only decrypt. Every KEK operation runs in the token
// (AES-256-GCM, 96-bit IV from the token's RNG, 128-bit tag); callers see
// data keys and ciphertexts, never a KEK. The encryption context is
// authenticated, never stored.
//
// Thread-safe: encryption and decryption may run concurrently. Rotating,
// disabling or destroying versions of one KEK concurrently from several
// processes is not supported.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "keyhold/core/secret.hpp"
#include "keyhold/crypto/key_vault.hpp"
#include "keyhold/envelope/ciphertext.hpp"
#include "keyhold/store/store.hpp"

namespace keyhold::envelope {

inline constexpr std::chrono::seconds kDefaultRotationPeriod{90LL * 24 * 3600};
// Well under the 2^32 random-IV limit of AES-GCM under one key (NIST SP 800-38D 8.3).
inline constexpr std::uint64_t kDefaultMaxEncryptions = std::uint64_t{1} << 30;
// The hard ceiling: a version that has done this many encryptions refuses more.
inline constexpr std::uint64_t kEncryptionCeiling = std::uint64_t{1} << 32;

struct ServiceSettings {
  std::function<std::chrono::system_clock::time_point()> now = [] { return std::chrono::system_clock::now(); };
  // Encryptions reserved in the store per write. The store's count is
  // advanced before the encryptions it covers, so it is never lower than the
  // real count, even after a crash; a larger batch costs fewer writes and
  // over-counts by at most the batch per process. The command line uses 1.
  std::uint64_t reservation_batch = 1;
  // How long encrypt/decrypt may reuse a KEK's versions as read from the
  // store, so that each operation does not query it: a rotation or a state
  // change made by another process is seen within this time (this
  // process's own changes at once).
  std::chrono::milliseconds versions_cache{1000};
};

struct KekVersionInfo {
  store::KekVersionRecord record;
  bool primary = false;
};

struct KekInfo {
  store::KekRecord kek;
  std::vector<KekVersionInfo> versions;  // ascending
  std::uint32_t primary_version = 0;
  // When the primary version becomes due by age (nullopt: no rotation period).
  std::optional<std::string> next_rotation_due;
  // Why the primary version is due now ("older than the rotation period
  // (90d)", "has done 1073741824 encryptions (max 1073741824)"); empty when not.
  std::string due_reason;
};

struct DataKey {
  Ciphertext ciphertext;   // the data key under the primary version
  SecretBytes plaintext;   // the data key itself (16 or 32 bytes)
};

struct Decrypted {
  SecretBytes plaintext;
  std::string kek_name;
  std::uint32_t kek_version = 0;
};

struct RotationResult {
  std::string kek;
  std::uint32_t new_version = 0;
  std::string reason;
};

class Service {
 public:
  Service(store::Store& store, crypto::KeyVault& keys, ServiceSettings settings = {});

  // A new KEK with version 1. rotation_period 0 turns rotation by age off;
  // max_encryptions is 1..kEncryptionCeiling.
  KekInfo create_kek(const std::string& name, std::chrono::seconds rotation_period = kDefaultRotationPeriod,
                     std::uint64_t max_encryptions = kDefaultMaxEncryptions);
  // A new primary version; the old ones keep decrypting.
  KekInfo rotate(const std::string& name);
  KekInfo show(const std::string& name);
  std::vector<KekInfo> list();
  // Not the primary version. Disabled versions refuse to decrypt until enabled again.
  KekInfo disable_version(const std::string& name, std::uint32_t version);
  KekInfo enable_version(const std::string& name, std::uint32_t version);
  // Not the primary version. The token object is destroyed; the store row stays,
  // and decrypting under it says when it was destroyed.
  KekInfo destroy_version(const std::string& name, std::uint32_t version);
  // Rotates every KEK whose primary version is due (by age or count).
  std::vector<RotationResult> rotate_due();

  // bytes: 16 or 32. The data key comes from the token's RNG.
  DataKey generate_data_key(const std::string& kek, const Context& context, std::size_t bytes = 32);
  // At most kMaxPlaintextBytes.
  Ciphertext encrypt(const std::string& kek, std::span<const std::uint8_t> plaintext, const Context& context);
  // expected_kek: refuse a ciphertext made under another KEK (the service
  // checks policy on the KEK named in the request before decrypting).
  Decrypted decrypt(const Ciphertext& ciphertext, const Context& context,
                    const std::optional<std::string>& expected_kek = std::nullopt);
  // Decrypts under whatever version made the ciphertext and encrypts under
  // the primary version, with new_context (or the same context).
  Ciphertext rewrap(const Ciphertext& ciphertext, const Context& context, const std::optional<Context>& new_context,
                    const std::optional<std::string>& expected_kek = std::nullopt);

 private:
  struct KekSnapshot {
    store::KekRecord kek;
    std::vector<store::KekVersionRecord> versions;  // ascending; not empty
    std::chrono::steady_clock::time_point read_at;
  };
  // The KEK and its versions, from the cache when fresh. NotFound for an
  // unknown name; nullptr for an unknown kek_id.
  std::shared_ptr<const KekSnapshot> snapshot(const std::string& name);
  std::shared_ptr<const KekSnapshot> snapshot_by_kek_id(std::span<const std::uint8_t> kek_id);
  std::shared_ptr<const KekSnapshot> read_snapshot(const store::KekRecord& kek);
  void forget_snapshots();
  SecretBytes random_data_key(std::size_t bytes);
  struct Counter {
    std::uint64_t next = 0;   // the next encryption's number
    std::uint64_t limit = 0;  // reserved up to here (exclusive)
  };
  store::KekRecord load(const std::string& name);
  KekInfo info(const store::KekRecord& kek);
  store::KekVersionRecord add_version(const store::KekRecord& kek, std::uint32_t version);
  crypto::TokenKey create_version_key(const std::string& kek, std::uint32_t version);
  store::KekVersionRecord version_record(const store::KekRecord& kek, std::uint32_t version, const crypto::TokenKey& key);
  std::shared_ptr<const crypto::Kek> kek_of(const store::KekVersionRecord& version);
  // Counts one encryption by the version (reserving in the store as needed).
  void count_encryption(const store::KekRecord& kek, const store::KekVersionRecord& version);
  Ciphertext encrypt_under_primary(const KekSnapshot& kek, std::span<const std::uint8_t> plaintext,
                                   const Context& context);
  std::string due_reason(const store::KekRecord& kek, const store::KekVersionRecord& primary);
  KekInfo change_state(const std::string& name, std::uint32_t version, std::string_view state);

  store::Store& store_;
  crypto::KeyVault& keys_;
  ServiceSettings settings_;
  std::mutex mutex_;
  std::map<std::int64_t, std::shared_ptr<const crypto::Kek>> keks_;  // by version row id
  std::map<std::int64_t, Counter> counters_;                         // by version row id
  std::mutex cache_mutex_;
  std::map<std::string, std::shared_ptr<const KekSnapshot>> snapshots_;  // by KEK name
  std::map<std::vector<std::uint8_t>, std::string> names_by_kek_id_;
};

// The token object name of a KEK version: "kek.NAME.vN".
std::string kek_key_name(const std::string& kek, std::uint32_t version);

}  // namespace keyhold::envelope
