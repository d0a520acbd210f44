#include "keyhold/app/application.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "keyhold/core/log.hpp"
#include "keyhold/crypto/token_key_ring.hpp"
#include "keyhold/hsm/module.hpp"
#include "keyhold/hsm/pin.hpp"
#include "keyhold/hsm/token.hpp"

namespace keyhold::app {

Application::Application(Config config) : config_(std::move(config)) {}

Application::~Application() { shutdown(); }

store::Store& Application::store() {
  if (!store_) store_ = store::open_sqlite_store(config_.store.path);
  return *store_;
}

namespace {

// SoftHSM's file backend rewrites a token's files at login while other
// processes read them when they load the module, and a process that reads
// them half-written sees no token at all. keyhold processes sharing a
// configuration therefore load the module and log in one at a time: an
// exclusive flock on a file beside keyhold.toml, held for those two steps
// only (milliseconds). Where the file cannot be made, nothing is locked.
class TokenOpenLock {
 public:
  explicit TokenOpenLock(const std::filesystem::path& directory) {
    std::filesystem::path path = directory / ".keyhold-token.lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) {
      log::debug("not serialising token opening: cannot open " + path.string());
      return;
    }
    while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
  }
  ~TokenOpenLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
  }
  TokenOpenLock(const TokenOpenLock&) = delete;
  TokenOpenLock& operator=(const TokenOpenLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace

std::shared_ptr<hsm::Token> Application::open_token(bool login) {
  if (token_ && (token_logged_in_ || !login)) return token_;
  hsm::Uri uri = hsm::Uri::parse(config_.token.uri);
  TokenOpenLock lock(config_.directory);
  if (!module_) {
    // Module configuration (e.g. SOFTHSM2_CONF) must be in the environment
    // before the module is loaded.
    for (const auto& [name, value] : config_.token.environment) ::setenv(name.c_str(), value.c_str(), 1);
    std::string module = config_.token.module;
    if (auto path = uri.module_path()) {
      module = *path;
    } else if (auto name = uri.module_name()) {
      module = *name;
    }
    module_ = hsm::Module::load(module);
  }
  std::unique_ptr<hsm::PinSource> pin;
  if (login) {
    pin = hsm::choose_pin_source(uri.pin_source(), config_.token.pin_file, config_.directory,
                                 uri.token_label().value_or(config_.token.uri));
  }
  hsm::TokenOptions options;
  options.max_sessions = config_.token.max_sessions;
  token_.reset();  // a token opened without login is replaced by a logged-in one
  token_ = hsm::Token::open(module_, uri, std::move(pin), options);
  token_logged_in_ = login;
  return token_;
}

service::KeyService& Application::keys() {
  if (!keys_) {
    store::Store& s = store();
    ring_ = crypto::make_token_key_ring(open_token(true));
    keys_ = std::make_unique<service::KeyService>(*ring_, s);
  }
  return *keys_;
}

pki::Authority& Application::authority() {
  if (!authority_) {
    pki::AuthoritySettings settings;
    settings.profiles = config_.pki.profiles;
    settings.crl_next_update = config_.pki.crl_next_update;
    authority_ = std::make_unique<pki::Authority>(keys(), store(), std::move(settings));
  }
  return *authority_;
}

ssh::Authority& Application::ssh_authority() {
  if (!ssh_authority_) {
    ssh::AuthoritySettings settings;
    settings.profiles = config_.ssh.profiles;
    ssh_authority_ = std::make_unique<ssh::Authority>(keys(), store(), std::move(settings));
  }
  return *ssh_authority_;
}

envelope::Service& Application::envelope() {
  if (!envelope_) {
    envelope::ServiceSettings settings;
    settings.reservation_batch = envelope_reservation_batch_;
    envelope_ = std::make_unique<envelope::Service>(store(), keys(), std::move(settings));
  }
  return *envelope_;
}

crypto::TokenSummary Application::token_summary() {
  if (ring_) return ring_->describe();
  return crypto::make_token_key_ring(open_token(false))->describe();
}

void Application::check_store_writable() {
  store::Transaction probe(store());  // takes the write lock; rolled back, nothing written
}

TokenActivity Application::token_activity() {
  keys();
  return ring_->activity();
}

void Application::shutdown() noexcept {
  envelope_.reset();
  ssh_authority_.reset();
  authority_.reset();
  keys_.reset();
  ring_.reset();
  token_.reset();
  store_.reset();
  if (module_) module_->finalize();
  module_.reset();
}

}  // namespace keyhold::app
