#pragma once
// For end-to-end tests of `keyhold serve`: starts the real keyhold binary as
// a server on 127.0.0.1 (a free port) against a configuration -- by default
// the binary's DevSetup (keyhold init --dev) -- and talks to it with curl
// using the set-up's client certificate. The server is stopped with SIGTERM
// when the object goes away.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/process.hpp"

namespace keyhold::testing {

class ServeProcess {
 public:
  // Starts `keyhold --config CONFIG serve --listen 127.0.0.1:0 EXTRA...` and
  // waits (up to 60 s) for its "listening on" line; throws std::runtime_error
  // with its stderr when it exits or does not listen in time.
  static std::unique_ptr<ServeProcess> start(const std::filesystem::path& config, std::vector<std::string> extra = {});
  ~ServeProcess();  // SIGTERM and wait, if still running
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;

  const std::string& url() const { return url_; }              // "https://127.0.0.1:PORT"
  const std::string& plain_url() const { return plain_url_; }  // "http://127.0.0.1:PORT" or empty
  int port() const { return port_; }
  pid_t pid() const { return pid_; }

  void signal(int sig) const;
  // Waits for the process to exit (up to timeout); returns its exit status
  // (-1 when killed by a signal, -2 on timeout: then it is killed).
  int wait(std::chrono::seconds timeout = std::chrono::seconds(60));
  bool running();
  std::string out() const;  // what it wrote to stdout so far
  std::string err() const;  // ... and to stderr

 private:
  ServeProcess() = default;
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
  std::filesystem::path out_file_, err_file_;
  std::string url_, plain_url_;
  int port_ = 0;
};

// curl with the client certificate and key given (empty: none), trusting the
// CA file; returns the result with "\n%{http_code}" appended to out. Extra
// arguments go before the URL.
struct CurlIdentity {
  std::string certificate;  // PEM file
  std::string key;          // PEM file
  std::string ca;           // trust anchor for the server
};
ProcessResult curl(const CurlIdentity& who, const std::string& url, std::vector<std::string> extra = {});
// The DevSetup's admin identity (admin.pem, admin-key.pem, ca.pem).
CurlIdentity admin_identity();
// Splits curl()'s out into the body and the HTTP status.
struct HttpReply {
  int status = 0;
  std::string body;
};
HttpReply reply_of(const ProcessResult& r);

// An audit log's records, parsed, in order (events and checkpoints); a line
// that does not parse is a test failure (and left out).
std::vector<nlohmann::json> audit_records(const std::filesystem::path& log);
// ... its event records only.
std::vector<nlohmann::json> audit_events(const std::filesystem::path& log);

// The value of one sample of a Prometheus text ("keyhold_reloads_total" or
// "keyhold_maintenance_runs_total{outcome=\"ok\"}"), or nullopt when absent.
std::optional<double> metric(const std::string& text, const std::string& sample);

}  // namespace keyhold::testing
