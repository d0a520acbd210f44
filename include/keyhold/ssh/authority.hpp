#pragma once
// The SSH certificate authority: CA keys in the token, user and host
// certificates under profiles, revocation and KRLs; and SSH keys held in the
// token (for ssh -I / ssh-add -s), versioned for rotation. Every signature is
// made in the token; every certificate is in the store before it is returned.
//
// Issuance, revocation and the published KRLs may run concurrently; creating
// a CA or rotating a key of one name concurrently is not supported.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "keyhold/core/keyed_mutex.hpp"
#include "keyhold/crypto/key_type.hpp"
#include "keyhold/crypto/key_vault.hpp"
#include "keyhold/ssh/profile.hpp"
#include "keyhold/ssh/public_key.hpp"
#include "keyhold/store/group_commit.hpp"
#include "keyhold/store/store.hpp"

namespace keyhold::ssh {

struct AuthoritySettings {
  std::map<std::string, Profile> profiles;
  std::function<std::chrono::system_clock::time_point()> now = [] { return std::chrono::system_clock::now(); };
};

struct CaDetails {
  store::SshCaRecord ca;
  std::string public_key_line;  // "ssh-ed25519 AAAA... keyhold-ssh-ca:NAME"
  std::string fingerprint;      // "SHA256:..."
};

struct SignInput {
  std::string ca;
  std::optional<std::string> profile;  // default: "user" or "host", after the certificate kind
  std::string public_key;              // the subject key file's content
  CertificateKind kind = CertificateKind::User;
  std::string key_id;
  std::vector<std::string> principals;
  std::optional<std::chrono::seconds> validity;
  std::optional<std::uint64_t> valid_from, valid_to;
  std::vector<std::pair<std::string, std::string>> options;
  std::vector<std::string> extensions;
  bool no_default_extensions = false;
  std::string requester = "cli";
};

struct SignedCertificate {
  store::SshCertificateRecord record;
  std::string certificate_line;  // "ssh-ed25519-cert-v01@openssh.com AAAA... KEY_ID"
  std::vector<std::string> warnings;
};

struct KrlResult {
  std::vector<std::uint8_t> krl;
  std::int64_t version = 0;
  std::size_t serials = 0, key_ids = 0, keys = 0;
  std::string generated_at;  // RFC 3339 UTC: its generated_date
};

// An SSH CA's KRL as published (see Authority::published_krl).
struct PublishedKrl {
  KrlResult krl;
  bool published = false;  // this call made and published it
  // Why it was published: "none published yet", "revocations since KRL N",
  // "the revocations differ from KRL N's", "forced"; empty when it was not.
  std::string reason;
};

struct SshKeyDetails {
  std::string name;
  std::vector<store::SshKeyVersionRecord> versions;  // ascending
  std::vector<std::string> authorized_keys;          // one line per active version, newest last
  std::vector<std::string> warnings;
};

// The SSH key types keyhold makes: ecdsa-p256, ecdsa-p384, rsa-3072, ed25519 (and for CAs also rsa-4096).
std::optional<crypto::KeyType> parse_ssh_key_type(std::string_view text);

class Authority {
 public:
  Authority(crypto::KeyVault& keys, store::Store& store, AuthoritySettings settings);

  // Replaces the SSH profiles (keyhold serve on SIGHUP); signings already
  // under way keep the profiles they started with. Thread-safe.
  void set_profiles(std::map<std::string, Profile> profiles);

  CaDetails create_ca(const std::string& name, crypto::KeyType type);
  CaDetails show_ca(const std::string& name);
  std::vector<CaDetails> list_cas();

  SignedCertificate sign(const SignInput& input);
  std::vector<store::SshCertificateRecord> certificates(const std::string& ca, store::SshCertificateFilter filter);

  // Revocations; each is listed in the CA's next KRL.
  store::SshCertificateRecord revoke_serial(const std::string& ca, std::uint64_t serial);
  std::size_t revoke_key_id(const std::string& ca, const std::string& key_id);
  std::size_t revoke_key(const std::string& ca, std::string_view public_key);
  // The CA's KRL (OpenSSH PROTOCOL.krl) with a version one above the last
  // (keyhold ssh krl). It is not recorded as the published KRL.
  KrlResult krl(const std::string& ca);
  // The CA's KRL as published: the KRL recorded as published, unless there
  // is none or a revocation was recorded since (every revoke_* leaves it
  // stale); then a new one (a new version) is made, recorded and returned. A
  // KRL has no nextUpdate: one that lists every revocation never falls due.
  // compare_revocations: also compare the revocations in the store with the
  // ones it lists (keyhold maintain; for writers that bypassed keyhold).
  // For keyhold serve (GET /v1/ssh/{ca}/krl) and keyhold maintain.
  // Thread-safe; when nothing changed, one store read of the published
  // KRL's summary and its bytes from memory. KRLs are not signed: no token.
  // NotFound for an unknown CA.
  PublishedKrl published_krl(const std::string& ca, bool compare_revocations = false);
  // A new KRL, recorded as published whatever the state of the one before.
  PublishedKrl publish_krl(const std::string& ca);

  // SSH keys in the token, for OpenSSH's own PKCS#11 support.
  SshKeyDetails create_key(const std::string& name, crypto::KeyType type);
  SshKeyDetails rotate_key(const std::string& name);
  SshKeyDetails retire_key(const std::string& name, int version);
  SshKeyDetails show_key(const std::string& name);
  std::vector<SshKeyDetails> list_keys();

 private:
  struct CaContext;
  CaContext load(const std::string& name);
  std::shared_ptr<const crypto::Signer> signer_of(const store::SshCaRecord& ca);
  SshKeyDetails key_details(const std::string& name);
  std::uint64_t now_seconds() const;
  // Makes the CA's next KRL from revocations; inside a store::Transaction.
  KrlResult make_krl(const store::SshCaRecord& ca, const std::vector<store::SshRevocation>& revocations);
  PublishedKrl publish_if_needed(const store::SshCaRecord& ca, bool compare_revocations, bool force);
  std::shared_ptr<const PublishedKrl> cached_krl(std::int64_t ca_id, std::int64_t version);

  crypto::KeyVault& keys_;
  store::Store& store_;
  AuthoritySettings settings_;  // its profiles are only the initial ones: see profiles_
  std::shared_ptr<const std::map<std::string, Profile>> profiles_;  // swapped atomically
  store::GroupCommit commits_;
  std::mutex signers_mutex_;
  std::map<std::int64_t, std::shared_ptr<const crypto::Signer>> signers_;  // by CA id, checked once
  std::map<std::int64_t, std::shared_ptr<const OpenSshPublicKey>> ca_keys_;  // by CA id, decoded once
  std::shared_ptr<const OpenSshPublicKey> ca_key_of(const store::SshCaRecord& ca);
  std::mutex published_mutex_;
  std::map<std::int64_t, std::shared_ptr<const PublishedKrl>> published_;  // by CA id: last seen
  KeyedMutex publishing_;  // by CA id: one maker at a time
};

}  // namespace keyhold::ssh
