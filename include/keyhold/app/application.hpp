#pragma once
// Wiring: the one place that knows the concrete classes. Builds the module,
// token, key ring, store and services from the configuration, lazily (a
// command that does not need the token does not open it), and tears them
// down explicitly before the process exits.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "keyhold/app/config.hpp"
#include "keyhold/crypto/key_ring.hpp"
#include "keyhold/envelope/service.hpp"
#include "keyhold/pki/authority.hpp"
#include "keyhold/ssh/authority.hpp"
#include "keyhold/service/key_service.hpp"
#include "keyhold/store/store.hpp"

namespace keyhold::hsm {
class Module;
class Token;
}  // namespace keyhold::hsm

namespace keyhold::app {

class Application {
 public:
  explicit Application(Config config);
  ~Application();
  Application(const Application&) = delete;
  Application& operator=(const Application&) = delete;

  const Config& config() const noexcept { return config_; }

  // Opens the store and the token (logged in) on first use.
  service::KeyService& keys();
  // The certificate authority (store, token and the configured profiles).
  pki::Authority& authority();
  // The SSH certificate authority and token-held SSH keys.
  ssh::Authority& ssh_authority();
  // Envelope encryption: KEKs, data keys, encrypt/decrypt/rewrap.
  envelope::Service& envelope();
  // Encryption counts reserved per store write by the envelope service (see
  // envelope::ServiceSettings); call before envelope() is first used.
  void set_envelope_reservation_batch(std::uint64_t batch) { envelope_reservation_batch_ = batch; }
  // Throws Unavailable when the store cannot start a write transaction.
  void check_store_writable();
  // What the token is; needs no login.
  crypto::TokenSummary token_summary();
  // The token's call counts, latencies and session pool (for metrics); opens the token like keys().
  TokenActivity token_activity();

  // Closes sessions, logs out and finalises the module now, while OpenSSL is
  // still intact (SoftHSMv2 #780). Called by the destructor too.
  void shutdown() noexcept;

 private:
  std::shared_ptr<hsm::Token> open_token(bool login);
  store::Store& store();

  Config config_;
  std::shared_ptr<hsm::Module> module_;
  std::shared_ptr<hsm::Token> token_;
  bool token_logged_in_ = false;
  std::unique_ptr<crypto::KeyRing> ring_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<service::KeyService> keys_;
  std::unique_ptr<pki::Authority> authority_;
  std::unique_ptr<ssh::Authority> ssh_authority_;
  std::unique_ptr<envelope::Service> envelope_;
  std::uint64_t envelope_reservation_batch_ = 1;
};

// What `keyhold init --dev` made.
struct DevSetup {
  std::filesystem::path directory;
  std::filesystem::path config_file;
  std::filesystem::path pin_file;
  std::filesystem::path store_file;
  std::filesystem::path softhsm_conf;
  std::string token_label;
  std::string token_uri;
  // For `keyhold serve` ([server] of keyhold.toml names all of these).
  std::string ca_name;                        // "dev": a root CA, its key in the token
  std::filesystem::path ca_certificate;       // ca.pem: the dev CA's certificate, to trust
  std::filesystem::path server_certificate;   // server.pem: localhost and 127.0.0.1, then the CA
  std::string server_key;                     // "server-tls": the server's key, in the token
  std::filesystem::path admin_certificate;    // admin.pem: client certificate CN=admin, then the CA
  std::filesystem::path admin_key_file;       // admin-key.pem (mode 0600): its key, in a file (development only)
  std::filesystem::path policy_file;          // policy.toml: authz::dev_policy_toml()
  std::filesystem::path audit_log;            // audit.log: empty, mode 0600
  std::string audit_key;                      // "audit": signs the audit log's checkpoints, in the token
};

// A throwaway SoftHSM token, keyhold.toml, store and PIN file (mode 0600) in
// directory, for trying keyhold, and what `keyhold serve` needs to work out
// of the box (see DevSetup). AlreadyExists when directory already holds a
// keyhold.toml; on any failure everything it created is removed again.
DevSetup init_dev(const std::filesystem::path& directory, const std::string& softhsm_module);

}  // namespace keyhold::app
