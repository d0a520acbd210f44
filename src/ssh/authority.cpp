#include "keyhold/ssh/authority.hpp"

#include <openssl/evp.h>

#include <algorithm>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/core/log.hpp"
#include "keyhold/core/names.hpp"
#include "keyhold/ssh/certificate.hpp"
#include "keyhold/ssh/krl.hpp"
#include "keyhold/ssh/public_key.hpp"
#include "keyhold/ssh/wire.hpp"

namespace keyhold::ssh {
namespace {

constexpr std::size_t kNonceBytes = 32;

std::string ca_key_name(const std::string& ca) { return "ssh-ca." + ca; }
std::string key_version_name(const std::string& name, int version) {
  return "ssh." + name + ".v" + std::to_string(version);
}
std::string key_version_use(const std::string& name, int version) {
  return "ssh-key:" + name + ":v" + std::to_string(version);
}

std::uint64_t to_uint64(const std::vector<std::uint8_t>& bytes) {
  std::uint64_t value = 0;
  for (std::uint8_t b : bytes) value = value << 8 | b;
  return value;
}

// The key type named at the start of a public key blob (RFC 4253 6.6).
std::string blob_type(const std::vector<std::uint8_t>& blob) {
  WireReader reader(blob);
  auto name = reader.string();
  return std::string(name.begin(), name.end());
}

std::string kind_name(CertificateKind kind) { return kind == CertificateKind::User ? "user" : "host"; }

}  // namespace

std::optional<crypto::KeyType> parse_ssh_key_type(std::string_view text) {
  if (text == "ed25519") return crypto::KeyType::Ed25519;
  if (text == "ecdsa-p256" || text == "ec-p256") return crypto::KeyType::EcP256;
  if (text == "ecdsa-p384" || text == "ec-p384") return crypto::KeyType::EcP384;
  if (text == "rsa-3072") return crypto::KeyType::Rsa3072;
  if (text == "rsa-4096") return crypto::KeyType::Rsa4096;
  return std::nullopt;
}

struct Authority::CaContext {
  store::SshCaRecord ca;
  std::shared_ptr<const crypto::Signer> signer;
};

Authority::Authority(crypto::KeyVault& keys, store::Store& store, AuthoritySettings settings)
    : keys_(keys), store_(store), settings_(std::move(settings)),
      profiles_(std::make_shared<const std::map<std::string, Profile>>(settings_.profiles)),
      commits_(store) {}

void Authority::set_profiles(std::map<std::string, Profile> profiles) {
  std::atomic_store(&profiles_, std::make_shared<const std::map<std::string, Profile>>(std::move(profiles)));
}

std::uint64_t Authority::now_seconds() const {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(settings_.now().time_since_epoch()).count());
}

std::shared_ptr<const crypto::Signer> Authority::signer_of(const store::SshCaRecord& ca) {
  {
    std::lock_guard lock(signers_mutex_);
    if (auto it = signers_.find(ca.id); it != signers_.end()) return it->second;
  }
  std::shared_ptr<const crypto::Signer> signer = keys_.signer_for(ca.key_object_id);
  std::lock_guard lock(signers_mutex_);
  return signers_.emplace(ca.id, std::move(signer)).first->second;
}

std::shared_ptr<const OpenSshPublicKey> Authority::ca_key_of(const store::SshCaRecord& ca) {
  {
    std::lock_guard lock(signers_mutex_);
    if (auto it = ca_keys_.find(ca.id); it != ca_keys_.end()) return it->second;
  }
  auto key = std::make_shared<const OpenSshPublicKey>(parse_public_key_blob(ca.public_key_blob));
  std::lock_guard lock(signers_mutex_);
  return ca_keys_.emplace(ca.id, std::move(key)).first->second;
}

Authority::CaContext Authority::load(const std::string& name) {
  validate_name("SSH CA", name);
  std::optional<store::SshCaRecord> ca = store_.ssh_cas().find(name);
  if (!ca) throw Error(ErrorCode::NotFound, "no SSH CA named '" + name + "' ('keyhold ssh list-cas' shows them)");
  return CaContext{*ca, nullptr};
}

CaDetails Authority::show_ca(const std::string& name) {
  CaContext context = load(name);
  CaDetails details{context.ca, "", fingerprint_sha256(context.ca.public_key_blob)};
  std::string type = blob_type(context.ca.public_key_blob);
  details.public_key_line = type + " " + to_base64(context.ca.public_key_blob) + " keyhold-ssh-ca:" + name;
  return details;
}

std::vector<CaDetails> Authority::list_cas() {
  std::vector<CaDetails> out;
  for (const store::SshCaRecord& ca : store_.ssh_cas().list()) out.push_back(show_ca(ca.name));
  return out;
}

CaDetails Authority::create_ca(const std::string& name, crypto::KeyType type) {
  validate_name("SSH CA", name);
  if (store_.ssh_cas().find(name)) throw Error(ErrorCode::AlreadyExists, "an SSH CA named '" + name + "' exists already");
  if (type == crypto::KeyType::Aes256 || type == crypto::KeyType::Rsa2048) {
    throw Error(ErrorCode::InvalidArgument, "an SSH CA key is ed25519, ec-p256, ec-p384, rsa-3072 or rsa-4096");
  }
  crypto::TokenKey key = keys_.create_key(ca_key_name(name), type, "ssh-ca:" + name);
  try {
    std::shared_ptr<const crypto::Signer> signer = keys_.signer_for(key.id);
    store::SshCaRecord ca;
    ca.name = name;
    ca.key_object_id = key.id;
    ca.key_type = std::string(crypto::to_string(type));
    ca.public_key_blob = public_key_blob(signer->public_key());
    ca.created_at = format_utc(settings_.now());
    store_.ssh_cas().insert(ca);
  } catch (...) {
    keys_.discard_key(ca_key_name(name));
    throw;
  }
  return show_ca(name);
}

SignedCertificate Authority::sign(const SignInput& input) {
  CaContext ca = load(input.ca);
  std::string profile_name = input.profile.value_or(kind_name(input.kind));
  std::shared_ptr<const std::map<std::string, Profile>> profiles = std::atomic_load(&profiles_);
  auto profile = profiles->find(profile_name);
  if (profile == profiles->end()) {
    std::string known;
    for (const auto& [n, p] : *profiles) known += (known.empty() ? "" : ", ") + n;
    throw Error(ErrorCode::NotFound, "no SSH profile named '" + profile_name + "' (configured: " +
                                         (known.empty() ? "none" : known) + ")");
  }
  OpenSshPublicKey subject = parse_public_key_file(input.public_key);

  SignRequest request;
  request.kind = input.kind;
  request.subject_key_type = subject.type;
  if (subject.type == "ssh-rsa") request.subject_rsa_bits = EVP_PKEY_get_bits(subject.key.evp());
  request.key_id = input.key_id;
  request.principals = input.principals;
  request.validity = input.validity;
  request.valid_from = input.valid_from;
  request.valid_to = input.valid_to;
  request.options = input.options;
  request.extensions = input.extensions;
  request.no_default_extensions = input.no_default_extensions;
  SignDecision decision = check_sign_request(profile->second, request, now_seconds());
  std::vector<std::string> warnings = decision.warnings;
  // A certificate for a revoked key id or key would be valid until the next
  // KRL reaches every sshd: refuse it rather than re-admit what was revoked.
  if (auto at = store_.ssh_certificates().key_id_revoked_at(ca.ca.id, input.key_id)) {
    throw Error(ErrorCode::FailedPrecondition, "key id '" + input.key_id + "' was revoked by SSH CA '" + input.ca +
                                                   "' at " + *at + "; sign under another key id");
  }
  if (auto at = store_.ssh_certificates().key_revoked_at(ca.ca.id, subject.blob)) {
    throw Error(ErrorCode::FailedPrecondition, "public key " + fingerprint_sha256(subject.blob) + " was revoked by SSH CA '" +
                                                   input.ca + "' at " + *at + "; it cannot be certified again");
  }

  std::shared_ptr<const crypto::Signer> signer = signer_of(ca.ca);
  for (int attempt = 0;; ++attempt) {
    CertificateFields fields;
    fields.nonce = keys_.ring().random(kNonceBytes);
    fields.subject = subject;
    // 8 random bytes from the token; 0 is left out (OpenSSH treats it as "no serial").
    do {
      fields.serial = to_uint64(keys_.ring().random(8));
    } while (fields.serial == 0);
    fields.type = input.kind == CertificateKind::User ? CertificateType::User : CertificateType::Host;
    fields.key_id = input.key_id;
    fields.principals = input.principals;
    fields.valid_after = decision.valid_after;
    fields.valid_before = decision.valid_before;
    fields.critical_options = decision.options;
    fields.extensions = decision.extensions;
    std::vector<std::uint8_t> blob = sign_certificate(*signer, fields);
    // The token's signature is checked before anything is recorded or returned.
    if (!verify_certificate_signature(parse_certificate(blob), *ca_key_of(ca.ca))) {
      throw Error(ErrorCode::Internal, "the token's signature on the new SSH certificate does not verify");
    }

    store::SshCertificateRecord record;
    record.ca_id = ca.ca.id;
    record.serial = fields.serial;
    record.type = kind_name(input.kind);
    record.key_id = input.key_id;
    record.principals = input.principals;
    record.valid_after = fields.valid_after;
    record.valid_before = fields.valid_before;
    record.public_key_fingerprint = fingerprint_sha256(subject.blob);
    record.public_key_blob = subject.blob;
    record.profile = profile_name;
    record.requester = input.requester;
    record.certificate_blob = blob;
    record.created_at = format_utc(settings_.now());
    try {
      commits_.run([&] { store_.ssh_certificates().insert(record); });
    } catch (const Error& e) {
      if (e.code() == ErrorCode::AlreadyExists && attempt < 3) continue;  // a serial drawn twice: draw again
      throw;
    }
    for (const std::string& w : warnings) log::warn_once(w);
    return SignedCertificate{record, certificate_line(blob, input.key_id), warnings};
  }
}

std::vector<store::SshCertificateRecord> Authority::certificates(const std::string& ca, store::SshCertificateFilter filter) {
  filter.ca_id = load(ca).ca.id;
  if (!filter.now) filter.now = now_seconds();
  return store_.ssh_certificates().list(filter);
}

store::SshCertificateRecord Authority::revoke_serial(const std::string& ca_name, std::uint64_t serial) {
  CaContext ca = load(ca_name);
  store_.ssh_certificates().revoke_serial(ca.ca.id, serial, format_utc(settings_.now()));
  return *store_.ssh_certificates().find(ca.ca.id, serial);
}

std::size_t Authority::revoke_key_id(const std::string& ca_name, const std::string& key_id) {
  CaContext ca = load(ca_name);
  if (key_id.empty()) throw Error(ErrorCode::InvalidArgument, "the key id to revoke is empty");
  return store_.ssh_certificates().revoke_key_id(ca.ca.id, key_id, format_utc(settings_.now()));
}

std::size_t Authority::revoke_key(const std::string& ca_name, std::string_view public_key) {
  CaContext ca = load(ca_name);
  OpenSshPublicKey key = parse_public_key_file(public_key);
  return store_.ssh_certificates().revoke_key(ca.ca.id, key.blob, format_utc(settings_.now()));
}

namespace {

// SHA-256 of what a KRL lists, in the store's order: what a published KRL is compared by.
std::vector<std::uint8_t> revocations_digest(const std::vector<store::SshRevocation>& revocations) {
  CPtr<EVP_MD_CTX, &EVP_MD_CTX_free> md(EVP_MD_CTX_new());
  bool ok = md && EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) == 1;
  for (const store::SshRevocation& r : revocations) {
    std::string line = r.kind + "\t";
    if (r.serial) line += std::to_string(*r.serial);
    if (r.key_id) line += to_hex(std::span(reinterpret_cast<const std::uint8_t*>(r.key_id->data()), r.key_id->size()));
    if (r.public_key_blob) line += to_hex(*r.public_key_blob);
    line += "\n";
    ok = ok && EVP_DigestUpdate(md.get(), line.data(), line.size()) == 1;
  }
  std::vector<std::uint8_t> digest(EVP_MAX_MD_SIZE);
  unsigned int length = 0;
  ok = ok && EVP_DigestFinal_ex(md.get(), digest.data(), &length) == 1;
  if (!ok) throw Error(ErrorCode::Internal, "OpenSSL failed to hash the KRL's revocations");
  digest.resize(length);
  return digest;
}

// The counts of a KRL's sections, from its bytes (a published KRL read back).
KrlResult krl_result(const store::PublishedKrlRecord& record) {
  KrlContent content = parse_krl(record.krl);
  KrlResult result;
  result.krl = record.krl;
  result.version = record.krl_version;
  result.serials = content.serials.size();
  result.key_ids = content.key_ids.size();
  result.keys = content.revoked_keys.size();
  result.generated_at = record.generated_at;
  return result;
}

}  // namespace

KrlResult Authority::make_krl(const store::SshCaRecord& ca, const std::vector<store::SshRevocation>& revocations) {
  KrlResult result;
  KrlContent content;
  result.version = store_.ssh_cas().next_krl_version(ca.id);
  content.version = static_cast<std::uint64_t>(result.version);
  content.generated_date = now_seconds();
  content.comment = "keyhold KRL of SSH CA " + ca.name;
  content.ca_key_blob = ca.public_key_blob;
  for (const store::SshRevocation& r : revocations) {
    if (r.kind == "serial" && r.serial) content.serials.push_back(*r.serial);
    if (r.kind == "key_id" && r.key_id) content.key_ids.push_back(*r.key_id);
    if (r.kind == "key" && r.public_key_blob) content.revoked_keys.push_back(*r.public_key_blob);
  }
  result.krl = encode_krl(content);
  result.serials = content.serials.size();
  result.key_ids = content.key_ids.size();
  result.keys = content.revoked_keys.size();
  result.generated_at =
      format_utc(std::chrono::system_clock::time_point(std::chrono::seconds(static_cast<std::int64_t>(content.generated_date))));
  return result;
}

KrlResult Authority::krl(const std::string& ca_name) {
  CaContext ca = load(ca_name);
  store::Transaction tx(store_);
  KrlResult result = make_krl(ca.ca, store_.ssh_certificates().revocations(ca.ca.id));
  tx.commit();
  return result;
}

std::shared_ptr<const PublishedKrl> Authority::cached_krl(std::int64_t ca_id, std::int64_t version) {
  {
    std::lock_guard lock(published_mutex_);
    auto it = published_.find(ca_id);
    if (it != published_.end() && it->second->krl.version == version) return it->second;
  }
  std::optional<store::PublishedKrlRecord> record = store_.ssh_cas().published_krl(ca_id);
  if (!record) return nullptr;
  auto shared = std::make_shared<const PublishedKrl>(PublishedKrl{krl_result(*record), false, ""});
  std::lock_guard lock(published_mutex_);
  std::shared_ptr<const PublishedKrl>& slot = published_[ca_id];
  if (!slot || slot->krl.version < shared->krl.version) slot = shared;
  return shared->krl.version == version ? shared : nullptr;
}

PublishedKrl Authority::published_krl(const std::string& ca_name, bool compare_revocations) {
  CaContext ca = load(ca_name);
  if (!compare_revocations) {
    std::optional<store::PublishedKrlRecord> summary = store_.ssh_cas().published_krl_summary(ca.ca.id);
    if (summary && !summary->stale) {
      if (auto cached = cached_krl(ca.ca.id, summary->krl_version)) return *cached;
    }
  }
  return publish_if_needed(ca.ca, compare_revocations, false);
}

PublishedKrl Authority::publish_krl(const std::string& ca_name) { return publish_if_needed(load(ca_name).ca, false, true); }

PublishedKrl Authority::publish_if_needed(const store::SshCaRecord& ca, bool compare_revocations, bool force) {
  // One maker per CA in this process; the write lock across processes: what
  // is read below stays true until the new KRL is recorded.
  std::unique_lock publishing = publishing_.lock(ca.id);
  store::Transaction tx(store_);
  std::optional<store::PublishedKrlRecord> existing = store_.ssh_cas().published_krl_summary(ca.id);
  std::vector<store::SshRevocation> revocations = store_.ssh_certificates().revocations(ca.id);
  std::vector<std::uint8_t> digest = revocations_digest(revocations);
  std::string reason;
  if (force) {
    reason = "forced";
  } else if (!existing) {
    reason = "none published yet";
  } else if (existing->stale) {
    reason = "revocations since KRL " + std::to_string(existing->krl_version);
  } else if (compare_revocations && (static_cast<std::int64_t>(revocations.size()) != existing->revocation_count ||
                                     digest != existing->revocations_digest)) {
    reason = "the revocations differ from KRL " + std::to_string(existing->krl_version) + "'s";
  }
  if (reason.empty()) {
    std::shared_ptr<const PublishedKrl> cached = cached_krl(ca.id, existing->krl_version);
    tx.rollback();
    if (!cached) throw Error(ErrorCode::Internal, "the published KRL of SSH CA '" + ca.name + "' changed while being read");
    return *cached;
  }

  KrlResult made = make_krl(ca, revocations);
  store::PublishedKrlRecord record;
  record.ssh_ca_id = ca.id;
  record.krl_version = made.version;
  record.generated_at = made.generated_at;
  record.revocation_count = static_cast<std::int64_t>(revocations.size());
  record.revocations_digest = std::move(digest);
  record.krl = made.krl;
  record.published_at = format_utc(settings_.now());
  store_.ssh_cas().publish_krl(record);  // the version is new (taken in this transaction): it replaces the old one
  tx.commit();
  log::info("published KRL " + std::to_string(made.version) + " of SSH CA '" + ca.name + "': " + reason);

  auto shared = std::make_shared<const PublishedKrl>(PublishedKrl{made, false, ""});
  {
    std::lock_guard guard(published_mutex_);
    std::shared_ptr<const PublishedKrl>& slot = published_[ca.id];
    if (!slot || slot->krl.version < shared->krl.version) slot = shared;
  }
  return PublishedKrl{std::move(made), true, reason};
}

SshKeyDetails Authority::key_details(const std::string& name) {
  SshKeyDetails details;
  details.name = name;
  details.versions = store_.ssh_keys().versions(name);
  for (const store::SshKeyVersionRecord& v : details.versions) {
    if (v.state != "active") continue;
    details.authorized_keys.push_back(blob_type(v.public_key_blob) + " " + to_base64(v.public_key_blob) +
                                      " " + name + "-v" + std::to_string(v.version));
  }
  return details;
}

SshKeyDetails Authority::create_key(const std::string& name, crypto::KeyType type) {
  validate_name("SSH key", name);
  if (!store_.ssh_keys().versions(name).empty()) {
    throw Error(ErrorCode::AlreadyExists, "an SSH key named '" + name + "' exists already (rotate it with keyhold ssh rotate-key)");
  }
  if (type != crypto::KeyType::Ed25519 && type != crypto::KeyType::EcP256 && type != crypto::KeyType::EcP384 &&
      type != crypto::KeyType::Rsa3072) {
    throw Error(ErrorCode::InvalidArgument, "an SSH key is ecdsa-p256, ecdsa-p384, rsa-3072 or ed25519");
  }
  std::string key_name = key_version_name(name, 1);
  crypto::TokenKey key = keys_.create_key(key_name, type, key_version_use(name, 1));
  try {
    store::SshKeyVersionRecord version;
    version.name = name;
    version.version = 1;
    version.key_object_id = key.id;
    version.key_type = std::string(crypto::to_string(type));
    version.public_key_blob = public_key_blob(keys_.ring().public_key(key.id));
    version.created_at = format_utc(settings_.now());
    store_.ssh_keys().insert_version(version);
  } catch (...) {
    keys_.discard_key(key_name);
    throw;
  }
  SshKeyDetails details = key_details(name);
  if (type == crypto::KeyType::Ed25519) {
    // OpenSSH 9.2 (Debian 12) loads RSA and ECDSA keys from a PKCS#11 token, not Ed25519 ones.
    details.warnings.push_back("OpenSSH 9.2 cannot use an Ed25519 key in a PKCS#11 token (ssh -I, ssh-add -s load RSA and "
                               "ECDSA keys only); use --type ecdsa-p256 for that");
    log::warn(details.warnings.back());
  }
  return details;
}

SshKeyDetails Authority::rotate_key(const std::string& name) {
  validate_name("SSH key", name);
  std::vector<store::SshKeyVersionRecord> versions = store_.ssh_keys().versions(name);
  if (versions.empty()) throw Error(ErrorCode::NotFound, "no SSH key named '" + name + "'");
  int next = versions.back().version + 1;
  crypto::KeyType type = *crypto::parse_key_type(versions.back().key_type);
  std::string key_name = key_version_name(name, next);
  crypto::TokenKey key = keys_.create_key(key_name, type, key_version_use(name, next));
  try {
    store::SshKeyVersionRecord version;
    version.name = name;
    version.version = next;
    version.key_object_id = key.id;
    version.key_type = versions.back().key_type;
    version.public_key_blob = public_key_blob(keys_.ring().public_key(key.id));
    version.created_at = format_utc(settings_.now());
    store_.ssh_keys().insert_version(version);
  } catch (...) {
    keys_.discard_key(key_name);
    throw;
  }
  return key_details(name);
}

SshKeyDetails Authority::retire_key(const std::string& name, int version) {
  validate_name("SSH key", name);
  std::vector<store::SshKeyVersionRecord> versions = store_.ssh_keys().versions(name);
  if (versions.empty()) throw Error(ErrorCode::NotFound, "no SSH key named '" + name + "'");
  auto it = std::find_if(versions.begin(), versions.end(), [&](const auto& v) { return v.version == version; });
  if (it == versions.end()) throw Error(ErrorCode::NotFound, "SSH key '" + name + "' has no version " + std::to_string(version));
  if (it->state != "active") {
    throw Error(ErrorCode::FailedPrecondition, "version " + std::to_string(version) + " of SSH key '" + name +
                                                   "' was retired at " + it->retired_at.value_or("?"));
  }
  int newest_active = 0;
  for (const auto& v : versions) {
    if (v.state == "active") newest_active = std::max(newest_active, v.version);
  }
  if (version == newest_active) {
    throw Error(ErrorCode::FailedPrecondition, "version " + std::to_string(version) + " is the newest of SSH key '" + name +
                                                   "': rotate first (keyhold ssh rotate-key " + name + ")");
  }
  store::Transaction tx(store_);
  keys_.release_key(key_version_name(name, version));
  store_.ssh_keys().set_retired(it->id, format_utc(settings_.now()));
  tx.commit();
  return key_details(name);
}

SshKeyDetails Authority::show_key(const std::string& name) {
  validate_name("SSH key", name);
  SshKeyDetails details = key_details(name);
  if (details.versions.empty()) throw Error(ErrorCode::NotFound, "no SSH key named '" + name + "'");
  return details;
}

std::vector<SshKeyDetails> Authority::list_keys() {
  std::vector<SshKeyDetails> out;
  std::string last;
  for (const store::SshKeyVersionRecord& v : store_.ssh_keys().list()) {
    if (v.name == last) continue;
    last = v.name;
    out.push_back(key_details(v.name));
  }
  return out;
}

}  // namespace keyhold::ssh
