#pragma once
// The SSH certificate authority: CA keys in the token, user and host
// certificates under profiles, revocation and KRLs; and SSH keys held in the
// token (for ssh -I / ssh-add -s), versioned for rotation. Every signature is
// made in the token; every certificate is in the store before it is returned.
//
// Issuance and revocation may run concurrently; creating a CA or rotating a
// key of one name concurrently is not supported.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

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
  // The CA's KRL (OpenSSH PROTOCOL.krl) with a version one above the last.
  KrlResult krl(const std::string& ca);

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

  crypto::KeyVault& keys_;
  store::Store& store_;
  AuthoritySettings settings_;  // its profiles are only the initial ones: see profiles_
  std::shared_ptr<const std::map<std::string, Profile>> profiles_;  // swapped atomically
  store::GroupCommit commits_;
  std::mutex signers_mutex_;
  std::map<std::int64_t, std::shared_ptr<const crypto::Signer>> signers_;  // by CA id, checked once
  std::map<std::int64_t, std::shared_ptr<const OpenSshPublicKey>> ca_keys_;  // by CA id, decoded once
  std::shared_ptr<const OpenSshPublicKey> ca_key_of(const store::SshCaRecord& ca);
};

}  // namespace keyhold::ssh
