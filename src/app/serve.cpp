#include "keyhold/app/serve.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <thread>

#include "keyhold/app/maintenance.hpp"
#include "keyhold/audit/log.hpp"
#include "keyhold/authz/policy.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/core/file_lock.hpp"
#include "keyhold/core/log.hpp"
#include "keyhold/crypto/openssl_provider.hpp"
#include "keyhold/http/api.hpp"
#include "keyhold/http/metrics.hpp"
#include "keyhold/http/server.hpp"
#include "keyhold/service/operations.hpp"

namespace keyhold::app {
namespace {

// Certificates, CRLs and policies are small; more than this is not one.
constexpr std::uintmax_t kMaxPemFile = 4 * 1024 * 1024;

std::string read_pem_file(const std::filesystem::path& path, const char* what) {
  std::error_code ec;
  std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) throw Error(ErrorCode::InvalidArgument, std::string("cannot read the ") + what + " " + path.string() + ": " + ec.message());
  if (size > kMaxPemFile) throw Error(ErrorCode::InvalidArgument, std::string("the ") + what + " " + path.string() + " is too large");
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in && !in.eof()) throw Error(ErrorCode::InvalidArgument, std::string("cannot read the ") + what + " " + path.string());
  return text;
}

// The server's TLS material as [server] names it: the certificate chain from
// its file, the key from the token (it never leaves it), client CAs and CRLs.
http::TlsMaterial load_material(Application& app, const ServiceSettings& settings) {
  http::TlsMaterial material;
  material.key = crypto::make_token_pkey(app.keys().signer(settings.key));
  try {
    material.chain = http::parse_certificates(read_pem_file(settings.certificate_file, "server certificate"));
  } catch (const Error& e) {
    throw Error(ErrorCode::InvalidArgument, settings.certificate_file.string() + ": " + e.what());
  }
  for (const auto& file : settings.client_ca_files) {
    try {
      for (auto& ca : http::parse_certificates(read_pem_file(file, "client CA file"))) material.client_cas.push_back(std::move(ca));
    } catch (const Error& e) {
      throw Error(ErrorCode::InvalidArgument, file.string() + ": " + e.what());
    }
  }
  for (const auto& file : settings.crl_files) {
    try {
      for (auto& crl : http::parse_crls(read_pem_file(file, "CRL file"))) material.crls.push_back(std::move(crl));
    } catch (const Error& e) {
      throw Error(ErrorCode::InvalidArgument, file.string() + ": " + e.what());
    }
  }
  material.allow_tls12 = settings.tls12;
  return material;
}

std::string address_text(const std::string& host, std::uint16_t port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// Signs the audit log's tail when a checkpoint is due by time, so that an
// idle service's last records get signed too.
class CheckpointTimer {
 public:
  explicit CheckpointTimer(audit::Log& log) : log_(log), thread_([this] { run(); }) {}
  ~CheckpointTimer() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  CheckpointTimer(const CheckpointTimer&) = delete;
  CheckpointTimer& operator=(const CheckpointTimer&) = delete;

 private:
  void run() {
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; })) {
      lock.unlock();
      try {
        log_.checkpoint_if_due();
      } catch (const std::exception& e) {
        log::warn(std::string("audit checkpoint failed: ") + e.what());
      }
      lock.lock();
    }
  }

  audit::Log& log_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

// keyhold serve's own maintenance (docs/maintenance.md): the steps of
// keyhold maintain, once before the service listens (so that a service
// started after a long stop publishes fresh CRLs before anyone asks), then
// every [server] maintain_every on a thread of its own. Each change and each
// failure is an audit record of the identity kMaintenanceIdentity; changes
// are logged at info, failures at warn. A run is skipped while another
// (keyhold maintain from cron) holds the lock: the two never overlap.
class MaintenanceSchedule {
 public:
  static constexpr const char* kMaintenanceIdentity = "keyhold-serve:maintenance";

  MaintenanceSchedule(Application& app, audit::Log& log, const ServiceSettings& settings)
      : app_(app), log_(log), every_(settings.maintain_every) {
    options_.expiring_within = settings.maintain_expiring_within;
    options_.publish_dir = settings.maintain_publish_dir;
  }
  ~MaintenanceSchedule() { stop(); }
  MaintenanceSchedule(const MaintenanceSchedule&) = delete;
  MaintenanceSchedule& operator=(const MaintenanceSchedule&) = delete;

  bool enabled() const { return every_.has_value(); }

  // The thread that runs every maintain_every until stop().
  void start() {
    if (every_) thread_ = std::thread([this] { loop(); });
  }
  // Stops the thread; a run in progress finishes first.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void run_once() {
    std::optional<FileLock> lock;
    try {
      lock = FileLock::try_acquire(maintenance_lock_file(app_.config()));
    } catch (const std::exception& e) {
      log::warn(std::string("maintenance: ") + e.what());
      finish(false, 0, 0);
      return;
    }
    if (!lock) {
      log::info("maintenance: skipped, another keyhold maintain holds " + maintenance_lock_file(app_.config()).string());
      std::lock_guard guard(stats_mutex_);
      ++activity_.runs_skipped;
      return;
    }
    MaintenanceOptions options = options_;
    options.now = std::chrono::system_clock::now();
    std::string request_id = "maintenance-" + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                                  options.now.time_since_epoch())
                                                                  .count()) +
                             "-" + std::to_string(++runs_);
    options.on_line = [&](const MaintenanceLine& line) { record(request_id, line); };
    MaintenanceResult result;
    try {
      result = run_maintenance(app_, options);
    } catch (const std::exception& e) {  // the steps catch their own failures; this is the unforeseen
      log::warn(std::string("maintenance failed: ") + e.what());
      finish(false, 0, 0);
      return;
    }
    finish(result.failures == 0, result.changed, result.notices);
  }

  MaintenanceActivity activity() const {
    std::lock_guard guard(stats_mutex_);
    return activity_;
  }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, *every_, [this] { return stopping_; })) {
      lock.unlock();
      run_once();
      lock.lock();
    }
  }

  void record(const std::string& request_id, const MaintenanceLine& line) {
    switch (line.kind) {
      case MaintenanceLine::Kind::Unchanged:
        log::debug("maintenance: " + line.text);
        return;
      case MaintenanceLine::Kind::Notice:
        log::info("maintenance: " + line.text);
        return;
      case MaintenanceLine::Kind::Changed:
        log::info("maintenance: " + line.text);
        break;
      case MaintenanceLine::Kind::Failed:
        log::warn("maintenance: " + line.text);
        break;
    }
    audit::Event event;
    event.request_id = request_id;
    event.identity = kMaintenanceIdentity;
    event.operation = "maintain." + line.operation;
    event.resource = line.resource;
    event.outcome = line.kind == MaintenanceLine::Kind::Changed ? "allowed" : "failed";
    event.error_code = line.error_code;
    try {
      log_.append(event);
    } catch (const std::exception& e) {
      // The change is made; a broken audit log already fails every request (503) and says why.
      log::warn(std::string("maintenance: cannot write the audit record of '") + line.item + "': " + e.what());
    }
  }

  void finish(bool ok, std::size_t changes, std::size_t notices) {
    std::int64_t end = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    std::lock_guard guard(stats_mutex_);
    (ok ? activity_.runs_ok : activity_.runs_failed) += 1;
    activity_.changes += changes;
    activity_.last_run_unix = end;
    if (ok) activity_.last_success_unix = end;
    activity_.notices = notices;
  }

  Application& app_;
  audit::Log& log_;
  const std::optional<std::chrono::seconds> every_;
  MaintenanceOptions options_;
  std::uint64_t runs_ = 0;  // the maintenance thread's, or serve's before it starts
  mutable std::mutex stats_mutex_;
  MaintenanceActivity activity_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace

int serve(Application& app, const ServeOptions& options) {
  if (!app.config().server) {
    throw Error(ErrorCode::InvalidArgument, app.config().file.string() +
                                                " has no [server] section (docs/operations.md; keyhold init --dev makes one)");
  }
  const ServiceSettings settings = *app.config().server;
  http::ServerSettings server_settings;
  server_settings.listen = options.listen.value_or(settings.listen);
  parse_listen_address(server_settings.listen);  // a clear message for a bad --listen
  if (settings.maintain_every && settings.maintain_publish_dir) {
    std::error_code ec;
    if (!std::filesystem::is_directory(*settings.maintain_publish_dir, ec)) {
      throw Error(ErrorCode::InvalidArgument, app.config().file.string() + ": [server] maintain_publish_dir " +
                                                  settings.maintain_publish_dir->string() + " is not a directory");
    }
  }
  server_settings.plain_listen = settings.plain_listen;
  if (settings.threads > 0) server_settings.threads = settings.threads;
  // Handlers wait on the token and on the audit log's group commit: many of
  // them waiting together is what lets one fdatasync cover many requests.
  server_settings.handler_threads = std::max<std::size_t>(32, 8 * server_settings.threads);
  server_settings.body_limit = settings.body_limit;
  server_settings.header_timeout = settings.header_timeout;
  server_settings.idle_timeout = settings.idle_timeout;
  server_settings.max_connections = settings.max_connections;

  // Encryption counts reserved in the store many at a time (one write per
  // batch, not per request); a crash over-counts by at most the batch.
  app.set_envelope_reservation_batch(256);
  authz::Policy policy = authz::Policy::load(settings.policy_file);

  audit::LogSettings log_settings;
  log_settings.path = settings.audit_log;
  log_settings.checkpoint_every_records = settings.audit_checkpoint_records;
  log_settings.checkpoint_every = settings.audit_checkpoint_seconds;
  audit::Log audit_log(log_settings, app.keys().signer(settings.audit_key));

  service::Operations operations(app.keys(), app.authority(), app.ssh_authority(), app.envelope(), audit_log,
                                 std::move(policy));
  http::Metrics metrics;
  http::ApiSettings api_settings;
  api_settings.rate_limit_per_second = settings.rate_limit_per_second;
  api_settings.rate_limit_burst = settings.rate_limit_burst;
  api_settings.health_probes.emplace_back("token", [&app]() -> std::string {
    app.token_summary();  // C_GetTokenInfo: the token answers
    return "";
  });
  api_settings.health_probes.emplace_back("store", [&app]() -> std::string {
    app.check_store_writable();
    return "";
  });
  http::Api api(operations, metrics, std::move(api_settings));

  http::Handler plain;
  if (settings.plain_listen) plain = [&api](const http::Request& request) { return api.handle_public(request); };
  http::Server server(
      server_settings, load_material(app, settings),
      [&api](const http::Request& request) { return api.handle(request); }, plain);
  MaintenanceSchedule maintenance(app, audit_log, settings);
  http::Metrics::Sources sources{[&server] { return server.stats(); }, [&audit_log] { return audit_log.stats(); },
                                 [&app] { return app.token_activity(); }, nullptr};
  if (maintenance.enabled()) sources.maintenance = [&maintenance] { return maintenance.activity(); };
  metrics.set_sources(std::move(sources));

  // SIGHUP: everything is loaded first and applied only when all of it loaded.
  std::mutex reload_mutex;
  auto reload = [&]() -> http::TlsMaterial {
    std::lock_guard lock(reload_mutex);
    Config fresh = load_config(app.config().file);
    if (!fresh.server) throw Error(ErrorCode::InvalidArgument, "the reloaded configuration has no [server] section");
    authz::Policy new_policy = authz::Policy::load(fresh.server->policy_file);
    http::TlsMaterial material = load_material(app, *fresh.server);
    app.authority().set_profiles(fresh.pki.profiles);
    app.ssh_authority().set_profiles(fresh.ssh.profiles);
    operations.set_policy(std::move(new_policy));
    log::info("reloaded the profiles, the policy and the TLS material");
    return material;
  };
  http::ServerSignals signals(server, reload);
  if (maintenance.enabled()) maintenance.run_once();  // before anyone can ask for a CRL
  server.start();
  {
    ListenAddress tls = parse_listen_address(server_settings.listen);
    std::string plain_address;
    if (settings.plain_listen) {
      plain_address = address_text(parse_listen_address(*settings.plain_listen).host, *server.plain_port());
    }
    if (options.on_listening) options.on_listening(address_text(tls.host, server.port()), plain_address);
  }
  maintenance.start();
  {
    CheckpointTimer timer(audit_log);
    signals.wait();  // returns once the server has stopped: nothing is in flight any more
  }
  maintenance.stop();
  audit_log.checkpoint();  // the last records signed before exit
  return 0;
}

}  // namespace keyhold::app
