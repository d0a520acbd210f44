// keyhold init --dev: a self-contained development set-up in one directory.

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <vector>

#include "keyhold/app/application.hpp"
#include "keyhold/app/config.hpp"
#include "keyhold/audit/log.hpp"
#include "keyhold/authz/policy.hpp"
#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/crypto/openssl_provider.hpp"
#include "keyhold/hsm/module.hpp"
#include "keyhold/hsm/provision.hpp"

namespace keyhold::app {
namespace {

constexpr const char* kDevTokenLabel = "keyhold-dev";
constexpr const char* kDevCaSubject = "CN=keyhold development CA";
constexpr const char* kAdminName = "admin";  // the identity authz::dev_policy_toml() allows everything
// Every leaf certificate needs a subjectAltName (the linter refuses one
// without). The caller's identity is its first URI SAN, else its CN: an
// email address leaves the identity to the CN, "admin".
constexpr const char* kAdminEmail = "admin@localhost";
// The longest validity the development profiles allow: a dev set-up lasts a while.
constexpr int kDevCertificateDays = 397;

using BioPtr = CPtr<BIO, &BIO_free>;
using EvpPkeyPtr = CPtr<EVP_PKEY, &EVP_PKEY_free>;
using X509ReqPtr = CPtr<X509_REQ, &X509_REQ_free>;

SecretBytes random_pin() {
  static constexpr char kAlphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
  std::random_device rd;  // /dev/urandom on Linux
  SecretBytes pin(24);
  for (std::size_t i = 0; i < pin.size(); ++i) {
    pin.data()[i] = static_cast<std::uint8_t>(kAlphabet[rd() % (sizeof kAlphabet - 1)]);
  }
  return pin;
}

// Written with open(2) so the mode holds whatever the umask.
void write_private_file(const std::filesystem::path& path, std::string_view content, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) throw Error(ErrorCode::FailedPrecondition, "cannot create " + path.string() + ": " + std::strerror(errno));
  ::fchmod(fd, mode);
  bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ok = ::fsync(fd) == 0 && ok;
  ::close(fd);
  if (!ok) throw Error(ErrorCode::FailedPrecondition, "cannot write " + path.string());
}

// A TOML basic string.
std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

[[noreturn]] void openssl_failed(const std::string& what) {
  throw Error(ErrorCode::Internal, "OpenSSL could not " + what);
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : std::string();
}

// A certificate request for CN=common_name with public_key as its subject key, not signed yet.
X509ReqPtr new_request(const std::string& common_name, EVP_PKEY* public_key) {
  X509ReqPtr request(X509_REQ_new());
  if (!request || X509_REQ_set_version(request.get(), X509_REQ_VERSION_1) != 1 ||
      X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(request.get()), "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name.data()),
                                 static_cast<int>(common_name.size()), -1, 0) != 1 ||
      X509_REQ_set_pubkey(request.get(), public_key) != 1) {
    openssl_failed("make a certificate request for CN=" + common_name);
  }
  return request;
}

std::string request_pem(X509_REQ* request) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_REQ(bio.get(), request) != 1) openssl_failed("encode a certificate request");
  return bio_text(bio.get());
}

// A CSR signed in the token by signer: the CA checks the request's signature,
// so the key that signs is the key the certificate names.
std::string token_key_request(const std::string& common_name, std::shared_ptr<const crypto::Signer> signer) {
  X509ReqPtr request = new_request(common_name, signer->public_key().evp());
  std::optional<crypto::SignatureAlgorithm> algorithm = crypto::default_signature_algorithm(signer->key_type());
  if (!algorithm) throw Error(ErrorCode::Internal, "the server key cannot sign");
  auto key = crypto::make_token_pkey(std::move(signer));
  auto context = crypto::make_sign_context(key.get(), *algorithm);
  if (X509_REQ_sign_ctx(request.get(), context.get()) <= 0) openssl_failed("sign the server's request in the token");
  return request_pem(request.get());
}

// The admin client key: made by OpenSSL in this process, so that curl and
// openssl s_client can use it from a file. DEVELOPMENT ONLY: every key that
// matters is in the token.
struct SoftwareKey {
  EvpPkeyPtr key;
  std::string request_pem;
};

SoftwareKey software_key_request(const std::string& common_name) {
  SoftwareKey out;
  out.key.reset(EVP_EC_gen("P-256"));
  if (!out.key) openssl_failed("generate an EC P-256 key");
  X509ReqPtr request = new_request(common_name, out.key.get());
  if (X509_REQ_sign(request.get(), out.key.get(), EVP_sha256()) <= 0) {
    openssl_failed("sign the request for CN=" + common_name);
  }
  out.request_pem = request_pem(request.get());
  return out;
}

// PKCS#8 PEM, unencrypted (development only).
void write_private_key(const std::filesystem::path& path, EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    openssl_failed("encode the admin key");
  }
  std::string pem = bio_text(bio.get());
  // Wipe the BIO's copy now rather than rely on how BIO_free releases it.
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  if (size > 0) OPENSSL_cleanse(data, static_cast<std::size_t>(size));
  try {
    write_private_file(path, pem, 0600);
  } catch (...) {
    OPENSSL_cleanse(pem.data(), pem.size());
    throw;
  }
  OPENSSL_cleanse(pem.data(), pem.size());
}

// The profiles init issues its own two certificates under, in place of the
// permissive development ones (which make every issuance warn): exactly what
// these certificates hold. They are named as the configured profiles, which
// are what a later renewal uses.
std::map<std::string, pki::Profile> init_profiles() {
  pki::Profile server;
  server.name = "server";
  server.key_types = {"ec-p256"};
  server.default_days = server.max_days = kDevCertificateDays;
  server.key_usage = {"digitalSignature"};
  server.extended_key_usage = {"serverAuth"};
  server.dns = {"localhost"};
  server.ip = {"127.0.0.1/32"};
  server.subject_fields = {"CN"};

  pki::Profile client;
  client.name = "client";
  client.key_types = {"ec-p256"};
  client.default_days = client.max_days = kDevCertificateDays;
  client.key_usage = {"digitalSignature"};
  client.extended_key_usage = {"clientAuth"};
  client.email = {"localhost"};
  client.subject_fields = {"CN"};

  pki::validate_profile(server);
  pki::validate_profile(client);
  return {{server.name, server}, {client.name, client}};
}

std::string joined(const std::string& certificate, const std::vector<std::string>& chain) {
  std::string out = certificate;
  for (const std::string& pem : chain) out += pem;
  return out;
}

// Removes what init_dev created unless it finished.
class Rollback {
 public:
  void created(std::filesystem::path p) { paths_.push_back(std::move(p)); }
  void done() { paths_.clear(); }
  ~Rollback() {
    std::error_code ec;
    for (auto it = paths_.rbegin(); it != paths_.rend(); ++it) std::filesystem::remove_all(*it, ec);
  }

 private:
  std::vector<std::filesystem::path> paths_;
};

// What `keyhold serve` needs, in the token of the set-up, made through the
// key service and the CA as `ca init-root` and `ca issue --csr` make theirs.
void make_service_material(DevSetup& setup, Rollback& rollback) {
  // The names and files are those of [server] (dev_server_toml): one source.
  Config config = load_config(setup.config_file);
  if (!config.server || !config.server->ca || config.server->client_ca_files.size() != 1) {
    throw Error(ErrorCode::Internal, "the development [server] section does not name a CA and its certificate");
  }
  const ServiceSettings server_settings = *config.server;
  const std::string ca_name = *server_settings.ca;
  setup.ca_name = ca_name;
  setup.ca_certificate = server_settings.client_ca_files.front();
  setup.server_certificate = server_settings.certificate_file;
  setup.server_key = server_settings.key;
  setup.admin_certificate = setup.directory / "admin.pem";
  setup.admin_key_file = setup.directory / "admin-key.pem";
  setup.policy_file = server_settings.policy_file;
  setup.audit_log = server_settings.audit_log;
  setup.audit_key = server_settings.audit_key;
  // DIR was empty: whatever is at these paths on failure is ours.
  for (const auto* path : {&setup.ca_certificate, &setup.server_certificate, &setup.admin_certificate,
                           &setup.admin_key_file, &setup.policy_file, &setup.audit_log}) {
    rollback.created(*path);
  }

  config.pki.profiles = init_profiles();
  Application app(std::move(config));
  service::KeyService& keys = app.keys();

  keys.create_key(setup.audit_key, crypto::KeyType::EcP256, "audit-log");

  pki::NewCa ca;
  ca.name = ca_name;
  ca.key_type = crypto::KeyType::EcP256;
  ca.subject = kDevCaSubject;
  app.authority().create_ca(ca);
  std::vector<std::string> ca_chain = app.authority().chain(ca_name);

  // The server key is made under its own name (not the generated name that
  // ca issue --generate-key gives) so that [server] key can name it.
  keys.create_key(setup.server_key, crypto::KeyType::EcP256, "certificate");
  pki::IssueRequest server;
  server.ca = ca_name;
  server.profile = "server";
  server.csr = token_key_request("localhost", keys.signer(setup.server_key));
  server.sans.dns = {"localhost"};
  server.sans.ip = {"127.0.0.1"};
  server.days = kDevCertificateDays;
  server.requester = "init --dev";
  pki::IssuedCertificate server_certificate = app.authority().issue(server);
  keys.set_used_by(setup.server_key, "certificate:" + server_certificate.record.serial);

  SoftwareKey admin_key = software_key_request(kAdminName);
  pki::IssueRequest admin;
  admin.ca = ca_name;
  admin.profile = "client";
  admin.csr = admin_key.request_pem;
  admin.sans.email = {kAdminEmail};
  admin.days = kDevCertificateDays;
  admin.requester = "init --dev";
  pki::IssuedCertificate admin_certificate = app.authority().issue(admin);

  std::string policy = authz::dev_policy_toml();
  authz::Policy::parse(policy, setup.policy_file.string());  // refuses to write a policy that would not load

  write_private_file(setup.ca_certificate, joined("", ca_chain), 0644);
  write_private_file(setup.server_certificate, joined(server_certificate.pem, server_certificate.chain_pem), 0644);
  write_private_file(setup.admin_certificate, joined(admin_certificate.pem, admin_certificate.chain_pem), 0644);
  write_private_key(setup.admin_key_file, admin_key.key.get());
  write_private_file(setup.policy_file, policy, 0644);
  {
    // Created empty (mode 0600) by the log itself; `keyhold serve` continues it.
    audit::LogSettings settings;
    settings.path = setup.audit_log;
    audit::Log log(std::move(settings), nullptr);
  }
  app.shutdown();
}

}  // namespace

DevSetup init_dev(const std::filesystem::path& directory, const std::string& module_name_or_path) {
  // A module path is written to keyhold.toml absolute: the configuration
  // resolves relative paths against its own directory, not this one.
  std::string softhsm_module = module_name_or_path.find('/') == std::string::npos
                                   ? module_name_or_path
                                   : std::filesystem::absolute(module_name_or_path).lexically_normal().string();
  DevSetup setup;
  setup.directory = std::filesystem::absolute(directory).lexically_normal();
  if (setup.directory.has_filename() == false) setup.directory = setup.directory.parent_path();
  setup.config_file = setup.directory / "keyhold.toml";
  setup.pin_file = setup.directory / "pin";
  setup.store_file = setup.directory / "keyhold.db";
  setup.softhsm_conf = setup.directory / "softhsm2.conf";
  setup.token_label = kDevTokenLabel;

  std::error_code ec;
  if (std::filesystem::exists(setup.config_file, ec)) {
    throw Error(ErrorCode::AlreadyExists, setup.directory.string() +
                                              " already holds a keyhold set-up (keyhold.toml); remove it or choose "
                                              "another --dir");
  }
  Rollback rollback;
  if (!std::filesystem::exists(setup.directory, ec)) {
    std::filesystem::create_directories(setup.directory, ec);
    if (ec) throw Error(ErrorCode::FailedPrecondition, "cannot create " + setup.directory.string() + ": " + ec.message());
    ::chmod(setup.directory.c_str(), 0700);
    rollback.created(setup.directory);
  } else if (!std::filesystem::is_empty(setup.directory, ec)) {
    throw Error(ErrorCode::AlreadyExists, setup.directory.string() + " is not empty; choose a new --dir");
  }

  std::filesystem::path tokens = setup.directory / "tokens";
  std::filesystem::create_directory(tokens, ec);
  if (ec) throw Error(ErrorCode::FailedPrecondition, "cannot create " + tokens.string() + ": " + ec.message());
  ::chmod(tokens.c_str(), 0700);
  rollback.created(tokens);

  write_private_file(setup.softhsm_conf,
                     "# SoftHSM2 configuration of a keyhold development token (made by keyhold init --dev).\n"
                     "directories.tokendir = " + tokens.string() + "\n"
                     "objectstore.backend = file\n"
                     "log.level = ERROR\n"
                     "slots.removable = false\n"
                     "slots.mechanisms = ALL\n"
                     "library.reset_on_fork = false\n",
                     0600);
  rollback.created(setup.softhsm_conf);

  SecretBytes pin = random_pin();
  SecretBytes so_pin = random_pin();
  write_private_file(setup.pin_file, std::string(pin.as_string()) + "\n", 0600);
  rollback.created(setup.pin_file);
  // The SO PIN is not kept: a development token is thrown away, not administered.

  ::setenv("SOFTHSM2_CONF", setup.softhsm_conf.c_str(), 1);
  {
    std::shared_ptr<hsm::Module> module = hsm::Module::load(softhsm_module);
    hsm::initialize_token(*module, setup.token_label, so_pin, pin);
    module->finalize();
  }
  // The label alone selects it: this token directory holds only this token.
  setup.token_uri = "pkcs11:token=" + setup.token_label;

  write_private_file(setup.config_file,
                     "# keyhold configuration for DEVELOPMENT ONLY (made by keyhold init --dev):\n"
                     "# a SoftHSM token in this directory, its PIN in a file next to it.\n\n"
                     "[token]\n"
                     "module = " + toml_string(softhsm_module) + "\n"
                     "uri = " + toml_string(setup.token_uri) + "\n"
                     "pin_file = \"pin\"\n\n"
                     "[token.env]\n"
                     "SOFTHSM2_CONF = " + toml_string(setup.softhsm_conf.string()) + "\n\n"
                     "[store]\n"
                     "path = \"keyhold.db\"\n\n" +
                         dev_profiles_toml() + dev_server_toml(),
                     0600);
  rollback.created(setup.config_file);

  store::open_sqlite_store(setup.store_file);  // creates the file and applies the migrations
  rollback.created(setup.store_file);
  // What SQLite and Application may make beside them (all of DIR goes when keyhold made DIR).
  for (const char* extra : {"keyhold.db-wal", "keyhold.db-shm", "keyhold.db-journal", ".keyhold-token.lock"}) {
    rollback.created(setup.directory / extra);
  }

  make_service_material(setup, rollback);
  rollback.done();
  return setup;
}

}  // namespace keyhold::app
