// keyhold serve's own maintenance schedule end to end ([server]
// maintain_every, docs/maintenance.md): the real binary on the binary's
// DevSetup, spoken to by curl; the published CRL judged by openssl, the
// audit log read back and verified by keyhold audit verify.
//
// What is due is made due by count (a KEK with --max-encryptions 1) or by a
// revocation, never by waiting for a clock: the schedule runs every second
// and the tests poll for its effect with a deadline.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/dev_setup.hpp"
#include "support/process.hpp"
#include "support/serve_fixture.hpp"
#include "support/temp_dir.hpp"

namespace keyhold::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kMaintenanceIdentity = "keyhold-serve:maintenance";

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

const fs::path& work_dir() {
  static TempDir dir("keyhold-serve-maintenance-test");
  return dir.path();
}

// A copy of the DevSetup's keyhold.toml with a fresh audit log of its own and
// these [server] lines added ([server] is the file's last table).
fs::path config_with(const std::string& name, const std::string& server_lines) {
  fs::path log = work_dir() / (name + "-audit.log");
  fs::remove(log);
  std::string text = read_file(DevSetup::get().config.string());
  const std::string from = "audit_log = \"audit.log\"";
  std::size_t at = text.find(from);
  if (at == std::string::npos) throw std::runtime_error("keyhold.toml has no '" + from + "'");
  text.replace(at, from.size(), "audit_log = \"" + log.string() + "\"");
  if (!text.empty() && text.back() != '\n') text += "\n";
  text += server_lines;
  fs::path path = DevSetup::get().dir / (name + ".toml");
  write_file(path.string(), text);
  return path;
}

fs::path audit_log_of(const std::string& name) { return work_dir() / (name + "-audit.log"); }

HttpReply get(const ServeProcess& server, const std::string& path) {
  return reply_of(curl(admin_identity(), server.url() + path));
}

HttpReply post(const ServeProcess& server, const std::string& path, const Json& body) {
  static int counter = 0;
  fs::path file = work_dir() / ("body-" + std::to_string(++counter));
  write_file(file.string(), body.dump());
  return reply_of(curl(admin_identity(), server.url() + path,
                       {"-H", "Content-Type: application/json", "--data-binary", "@" + file.string()}));
}

int primary_version(const ServeProcess& server, const std::string& kek) {
  HttpReply r = get(server, "/v1/keks/" + kek);
  if (r.status != 200) return -1;
  Json j = Json::parse(r.body, nullptr, false);
  return j.is_object() && j.contains("primary_version") ? j["primary_version"].get<int>() : -1;
}

// A KEK that the next maintenance run rotates: at most one encryption, and one done.
void make_kek_due(const std::string& kek) {
  ProcessResult created = keyhold({"kek", "create", kek, "--max-encryptions", "1"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  fs::path plaintext = work_dir() / (kek + ".txt");
  write_file(plaintext.string(), "not a secret");
  ProcessResult encrypted = keyhold({"encrypt", "--kek", kek, "--in", plaintext.string()});
  ASSERT_EQ(encrypted.exit_code, 0) << encrypted.err;
}

// Waits until pred() holds, polling, for at most limit.
bool eventually(std::chrono::seconds limit, const std::function<bool()>& pred) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(200ms);
  }
  return true;
}

// The maintenance's audit records: operation and resource of each, in order.
std::vector<std::string> maintenance_records(const fs::path& log) {
  std::vector<std::string> out;
  for (const Json& e : audit_events(log)) {
    if (e.value("identity", "") != kMaintenanceIdentity) continue;
    out.push_back(e.value("operation", "") + " " + e.value("resource", "") + " " + e.value("outcome", ""));
  }
  return out;
}

bool has_record(const fs::path& log, const std::string& record) {
  std::vector<std::string> records = maintenance_records(log);
  return std::find(records.begin(), records.end(), record) != records.end();
}

// openssl's view of a DER CRL file, verified against the dev CA.
std::string openssl_crl_text(const fs::path& file) {
  ProcessResult r = run_process({"openssl", "crl", "-inform", "DER", "-in", file.string(), "-noout", "-text",
                                 "-CAfile", path_in_setup("ca.pem")});
  if (r.exit_code != 0 || !contains(r.err + r.out, "verify OK")) return "openssl crl failed: " + r.err + r.out;
  return r.out;
}

std::string upper(std::string text) {
  for (char& ch : text) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return text;
}

// The lock keyhold maintain takes (app::maintenance_lock_file: beside the store), held by this process.
class MaintainLock {
 public:
  MaintainLock() {
    fs::path path = DevSetup::get().dir / "keyhold.db.maintain.lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    held_ = fd_ >= 0 && ::flock(fd_, LOCK_EX | LOCK_NB) == 0;
  }
  ~MaintainLock() { release(); }
  MaintainLock(const MaintainLock&) = delete;
  MaintainLock& operator=(const MaintainLock&) = delete;
  bool held() const { return held_; }
  void release() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    held_ = false;
  }

 private:
  int fd_ = -1;
  bool held_ = false;
};

TEST(ServeMaintenance, RunsAtStartThenOnItsScheduleAuditedAndCounted) {
  make_kek_due("svc-count");
  Json issued = keyhold_json({"ca", "issue", "--ca", "dev", "--profile", "server", "--generate-key", "--key-type",
                              "ec-p256", "--cn", "revoked-later.example.test"});
  std::string serial = issued["serial"];
  fs::path published = work_dir() / "published";
  fs::create_directories(published);
  fs::path config = config_with("scheduled", "maintain_every = \"1s\"\nmaintain_publish_dir = \"" +
                                                 published.string() + "\"\n");
  fs::path log = audit_log_of("scheduled");

  std::unique_ptr<ServeProcess> server = ServeProcess::start(config);

  // The run at start is done before the service listens: the due KEK is
  // rotated and the CRL is in the publish directory, signed by the dev CA.
  EXPECT_EQ(primary_version(*server, "svc-count"), 2);
  fs::path crl = published / "dev.crl";
  ASSERT_TRUE(fs::exists(crl)) << server->err();
  std::string first = openssl_crl_text(crl);
  EXPECT_TRUE(contains(first, "Certificate Revocation List")) << first;
  EXPECT_FALSE(contains(first, upper(serial))) << first;
  EXPECT_TRUE(has_record(log, "maintain.kek.rotate kek:svc-count allowed")) << audit_events(log).size();

  // A revocation through the API: the next scheduled run publishes a CRL
  // listing it, without anyone asking for the CRL.
  HttpReply revoked = post(*server, "/v1/pki/dev/revoke", {{"serial", serial}});
  ASSERT_EQ(revoked.status, 200) << revoked.body;
  EXPECT_TRUE(eventually(30s, [&] { return contains(openssl_crl_text(crl), upper(serial)); }))
      << openssl_crl_text(crl) << server->err();
  EXPECT_TRUE(has_record(log, "maintain.crl.publish ca:dev allowed"));

  // An encryption under version 2 (max-encryptions 1) makes it due: the schedule rotates it.
  HttpReply encrypted = post(*server, "/v1/keks/svc-count/encrypt", {{"plaintext", "eA=="}});
  ASSERT_EQ(encrypted.status, 200) << encrypted.body;
  EXPECT_TRUE(eventually(30s, [&] { return primary_version(*server, "svc-count") == 3; }))
      << primary_version(*server, "svc-count");

  // Counted in the metrics.
  HttpReply metrics = get(*server, "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_GE(metric(metrics.body, "keyhold_maintenance_runs_total{outcome=\"ok\"}").value_or(-1), 3) << metrics.body;
  EXPECT_EQ(metric(metrics.body, "keyhold_maintenance_runs_total{outcome=\"failed\"}").value_or(-1), 0);
  EXPECT_EQ(metric(metrics.body, "keyhold_maintenance_runs_total{outcome=\"skipped\"}").value_or(-1), 0);
  EXPECT_GE(metric(metrics.body, "keyhold_maintenance_changes_total").value_or(-1), 3) << metrics.body;
  double last = metric(metrics.body, "keyhold_maintenance_last_success_timestamp_seconds").value_or(-1);
  double now = static_cast<double>(std::chrono::duration_cast<std::chrono::seconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
  EXPECT_GT(last, now - 120) << metrics.body;

  server->signal(SIGTERM);
  ASSERT_EQ(server->wait(60s), 0) << server->err();

  // Every change is one audit record of the maintenance identity, each a
  // request id of its own run; the log verifies.
  std::vector<std::string> records = maintenance_records(log);
  EXPECT_EQ(std::count(records.begin(), records.end(), "maintain.kek.rotate kek:svc-count allowed"), 2);
  for (const Json& e : audit_events(log)) {
    if (e.value("identity", "") != kMaintenanceIdentity) continue;
    EXPECT_EQ(e.value("request_id", "").rfind("maintenance-", 0), 0u) << e.dump();
    EXPECT_EQ(e.value("client_address", "?"), "") << e.dump();
  }
  ProcessResult verify = keyhold({"audit", "verify", "--log", log.string()});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
}

TEST(ServeMaintenance, SkipsItsRunsWhileKeyholdMaintainHoldsTheLockAndCatchesUpAfter) {
  make_kek_due("svc-locked");
  MaintainLock lock;
  ASSERT_TRUE(lock.held());
  fs::path config = config_with("locked", "maintain_every = \"1s\"\n");
  std::unique_ptr<ServeProcess> server = ServeProcess::start(config);

  // The run at start and the scheduled ones are skipped: nothing rotated.
  EXPECT_TRUE(eventually(30s, [&] {
    return metric(get(*server, "/metrics").body, "keyhold_maintenance_runs_total{outcome=\"skipped\"}").value_or(0) >= 3;
  })) << get(*server, "/metrics").body;
  EXPECT_EQ(primary_version(*server, "svc-locked"), 1);
  EXPECT_EQ(metric(get(*server, "/metrics").body, "keyhold_maintenance_runs_total{outcome=\"ok\"}").value_or(-1), 0);
  EXPECT_TRUE(maintenance_records(audit_log_of("locked")).empty());

  // Once keyhold maintain has let go, the next run does the work.
  lock.release();
  EXPECT_TRUE(eventually(30s, [&] { return primary_version(*server, "svc-locked") == 2; }))
      << primary_version(*server, "svc-locked");
  server->signal(SIGTERM);
  ASSERT_EQ(server->wait(60s), 0) << server->err();
  EXPECT_TRUE(has_record(audit_log_of("locked"), "maintain.kek.rotate kek:svc-locked allowed"));
}

TEST(ServeMaintenance, OffMeansNoRunAtStartNoScheduleAndNoMetrics) {
  make_kek_due("svc-off");
  fs::path config = config_with("off", "maintain_every = \"off\"\n");
  std::unique_ptr<ServeProcess> server = ServeProcess::start(config);
  // The run at start happens before listening; with "off" there is none.
  EXPECT_EQ(primary_version(*server, "svc-off"), 1);
  HttpReply metrics = get(*server, "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_FALSE(contains(metrics.body, "keyhold_maintenance")) << metrics.body;
  server->signal(SIGTERM);
  ASSERT_EQ(server->wait(60s), 0) << server->err();
  EXPECT_TRUE(maintenance_records(audit_log_of("off")).empty());
}

TEST(ServeMaintenance, APublishDirThatIsNotADirectoryStopsTheStartWithOneLine) {
  fs::path not_a_dir = work_dir() / "not-a-directory";
  write_file(not_a_dir.string(), "a file");
  fs::path config = config_with("bad-dir", "maintain_publish_dir = \"" + not_a_dir.string() + "\"\n");
  ProcessResult r = keyhold({"--config", config.string(), "serve", "--listen", "127.0.0.1:0"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  expect_one_error_line(r);
  EXPECT_TRUE(contains(r.err, "maintain_publish_dir " + not_a_dir.string() + " is not a directory")) << r.err;
  EXPECT_FALSE(fs::exists(audit_log_of("bad-dir")));  // nothing started, nothing written

  // A bad maintain_every is the configuration's error, with its line.
  fs::path bad_every = config_with("bad-every", "maintain_every = \"sometimes\"\n");
  ProcessResult every = keyhold({"--config", bad_every.string(), "serve", "--listen", "127.0.0.1:0"});
  EXPECT_EQ(every.exit_code, 2) << every.err;
  expect_one_error_line(every);
  EXPECT_TRUE(contains(every.err, "'server.maintain_every' must be a duration such as '15m', '1h' or '1d', or 'off', "
                                  "not 'sometimes'"))
      << every.err;
}

}  // namespace
}  // namespace keyhold::testing
