// The SSH CA and token-held SSH keys end to end through the keyhold command,
// against the real OpenSSH tools: ssh-keygen -L / -Q, and an sshd started by
// this test on 127.0.0.1 that trusts keyhold's CA, with ssh as the client.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <regex>
#include <thread>

#include "support/dev_setup.hpp"
#include "support/process.hpp"
#include "support/token_fixture.hpp"

namespace keyhold {
namespace {

namespace fs = std::filesystem;
using testing::expect_one_error_line;
using testing::keyhold;
using testing::keyhold_json;
using testing::path_in_setup;
using testing::ProcessResult;
using testing::read_file;
using testing::run_process;
using testing::write_file;

std::string login_user() {
  passwd* pw = ::getpwuid(::getuid());
  return pw != nullptr ? pw->pw_name : "root";
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

// A user key pair made by ssh-keygen, as a user would have it.
std::string user_key(const std::string& name, const std::string& type = "ed25519", int bits = 0) {
  std::string path = path_in_setup(name);
  if (!fs::exists(path)) {
    std::vector<std::string> argv = {"ssh-keygen", "-q", "-t", type, "-N", "", "-f", path, "-C", name};
    if (bits != 0) argv.insert(argv.end(), {"-b", std::to_string(bits)});
    EXPECT_EQ(run_process(argv).exit_code, 0);
  }
  return path;
}

ProcessResult sign(const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"ssh", "sign"};
  args.insert(args.end(), extra.begin(), extra.end());
  return keyhold(args);
}

// The test's sshd: its own host key and configuration, on a free port.
class Sshd {
 public:
  explicit Sshd(const std::string& name, const std::vector<std::string>& extra_config = {}) {
    dir_ = path_in_setup("sshd-" + name);
    fs::create_directories(dir_);
    if (!fs::exists(dir_ + "/host_key")) {
      EXPECT_EQ(run_process({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", dir_ + "/host_key"}).exit_code, 0);
    }
    // sshd's privilege separation needs this directory (it is there when the openssh-server package ran).
    fs::create_directories("/run/sshd");
    port_ = free_port();
    std::string config = "Port " + std::to_string(port_) + "\nListenAddress 127.0.0.1\nHostKey " + dir_ +
                         "/host_key\nPidFile " + dir_ + "/sshd.pid\nPasswordAuthentication no\n"
                         "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
                         "StrictModes no\nUsePAM no\nLogLevel VERBOSE\n";
    for (const std::string& line : extra_config) config += line + "\n";
    write_file(dir_ + "/sshd_config", config);
    pid_ = ::fork();
    if (pid_ == 0) {
      std::string log = dir_ + "/sshd.log";
      ::freopen(log.c_str(), "w", stderr);
      ::freopen("/dev/null", "w", stdout);
      std::string conf = dir_ + "/sshd_config";
      ::execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-e", "-f", conf.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Ready once it accepts connections.
    for (int i = 0; i < 100; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(static_cast<std::uint16_t>(port_));
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      bool up = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
      ::close(fd);
      if (up) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "sshd did not start: " << read_file(dir_ + "/sshd.log");
  }
  ~Sshd() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Sshd(const Sshd&) = delete;
  Sshd& operator=(const Sshd&) = delete;

  int port() const { return port_; }
  std::string dir() const { return dir_; }
  std::string host_public_key() const { return dir_ + "/host_key.pub"; }
  std::string log() const { return read_file(dir_ + "/sshd.log"); }

  // ssh to this sshd with the given identity options; true when the remote command ran.
  ProcessResult login(std::vector<std::string> options, testing::ProcessOptions process = {}) const {
    std::vector<std::string> argv = {"ssh", "-F", "/dev/null", "-o", "ConnectTimeout=10", "-o", "IdentitiesOnly=yes",
                                     "-p", std::to_string(port_)};
    // ssh keeps the first value it is given for an option, so the caller's choices must not follow defaults.
    bool host_checking = false, batch_mode = false;
    for (const std::string& o : options) {
      host_checking = host_checking || o.rfind("StrictHostKeyChecking", 0) == 0;
      batch_mode = batch_mode || o.rfind("BatchMode", 0) == 0;
    }
    if (!batch_mode) argv.insert(argv.end(), {"-o", "BatchMode=yes"});
    if (!host_checking) argv.insert(argv.end(), {"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"});
    argv.insert(argv.end(), options.begin(), options.end());
    argv.insert(argv.end(), {login_user() + "@127.0.0.1", "echo", "keyhold-login-ok"});
    return run_process(argv, process);
  }

 private:
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

std::string rfc3339(std::chrono::system_clock::time_point t) {
  std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

bool logged_in(const ProcessResult& r) { return r.exit_code == 0 && r.out.find("keyhold-login-ok") != std::string::npos; }

// One SSH CA for the tests below, its public key in a file sshd trusts.
struct Ca {
  std::string trusted;  // TrustedUserCAKeys file
  static Ca& get() {
    static Ca* ca = [] {
      auto* c = new Ca;
      EXPECT_EQ(keyhold({"ssh", "init-ca", "users", "--key-type", "ed25519"}).exit_code, 0);
      c->trusted = path_in_setup("users-ca.pub");
      ProcessResult key = keyhold({"ssh", "ca-key", "users"});
      EXPECT_EQ(key.exit_code, 0) << key.err;
      write_file(c->trusted, key.out);
      return c;
    }();
    return *ca;
  }
};

std::string signed_cert(const std::string& key, std::vector<std::string> extra, const std::string& ca = "users") {
  std::string cert = key + "-cert.pub";
  std::vector<std::string> args = {"--ca", ca, "--public-key", key + ".pub", "--out", cert};
  args.insert(args.end(), extra.begin(), extra.end());
  ProcessResult r = sign(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return cert;
}

TEST(SshCertificates, EveryTypeKeyholdMakesIsParsedAndCheckedBySshKeygen) {
  for (std::string ca_type : {"ed25519", "ec-p256", "ec-p384", "rsa-3072", "rsa-4096"}) {
    std::string ca = "fmt-" + ca_type;
    ASSERT_EQ(keyhold({"ssh", "init-ca", ca, "--key-type", ca_type}).exit_code, 0);
    struct Subject {
      std::string type;
      int bits;
    };
    for (Subject s : {Subject{"ed25519", 0}, Subject{"ecdsa", 256}, Subject{"ecdsa", 384}, Subject{"ecdsa", 521},
                      Subject{"rsa", 2048}}) {
      std::string key = user_key("fmt-" + s.type + std::to_string(s.bits), s.type, s.bits);
      for (std::string type : {"user", "host"}) {
        std::string cert = signed_cert(key, {"--type", type, "--key-id", "fmt " + type, "--principals",
                                             type == "user" ? "alice,bob" : "host.example.test"},
                                       ca);
        ProcessResult l = run_process({"ssh-keygen", "-L", "-f", cert});
        ASSERT_EQ(l.exit_code, 0) << ca_type << " " << s.type << ": " << l.err;
        EXPECT_NE(l.out.find("Type: " + std::string(s.type == "ed25519" ? "ssh-ed25519" : s.type == "rsa" ? "ssh-rsa" : "ecdsa-sha2-nistp" + std::to_string(s.bits)) + "-cert-v01@openssh.com " + type + " certificate"), std::string::npos) << l.out;
        EXPECT_NE(l.out.find("Key ID: \"fmt " + type + "\""), std::string::npos) << l.out;
        if (type == "user") {
          EXPECT_NE(l.out.find("permit-pty"), std::string::npos) << "user certificates get the default extensions";
        } else {
          EXPECT_EQ(l.out.find("permit-pty"), std::string::npos) << "host certificates get none";
        }
        if (ca_type.rfind("rsa-", 0) == 0) {
          EXPECT_NE(l.out.find("rsa-sha2-512"), std::string::npos) << l.out;
        }
      }
    }
  }
}

TEST(SshCertificates, OptionsAndExtensionsAreSignedAsAskedAndShownBySshKeygen) {
  Ca::get();
  std::string key = user_key("options");
  std::string cert = key + "-cert.pub";
  ProcessResult r = sign({"--ca", "users", "--public-key", key + ".pub", "--out", cert, "--type", "user", "--key-id", "opts",
                          "--principals", "alice", "--option", "force-command=/usr/bin/uptime", "--option",
                          "source-address=192.0.2.0/24", "--option", "verify-required", "--no-default-extensions",
                          "--extension", "permit-pty", "--validity", "2h"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("'verify-required' has no effect on an ssh-ed25519 key"), std::string::npos) << r.err;
  ProcessResult l = run_process({"ssh-keygen", "-L", "-f", cert});
  ASSERT_EQ(l.exit_code, 0) << l.err;
  EXPECT_NE(l.out.find("force-command /usr/bin/uptime"), std::string::npos) << l.out;
  EXPECT_NE(l.out.find("source-address 192.0.2.0/24"), std::string::npos) << l.out;
  EXPECT_NE(l.out.find("verify-required"), std::string::npos) << l.out;
  EXPECT_NE(l.out.find("permit-pty"), std::string::npos) << l.out;
  EXPECT_EQ(l.out.find("permit-agent-forwarding"), std::string::npos) << "--no-default-extensions: " << l.out;
  // --validity 2h: valid from a minute ago (clock skew between machines) until two hours from now.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(l.out, m, std::regex("Valid: from (\\S+) to (\\S+)"))) << l.out;
  auto parse = [](const std::string& t) {
    std::tm tm{};
    ::strptime(t.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
    return ::timegm(&tm);
  };
  EXPECT_EQ(parse(m[2]) - parse(m[1]), 2 * 3600 + 60) << l.out;

  // One side of the window alone: --valid-to starts now, --valid-from lasts the profile's default (8h).
  auto window = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = {"--ca", "users", "--public-key", key + ".pub", "--out", cert, "--type", "user",
                                  "--key-id", "window", "--principals", "alice"};
    a.insert(a.end(), extra.begin(), extra.end());
    ProcessResult s = sign(a);
    EXPECT_EQ(s.exit_code, 0) << s.err;
    std::string text = run_process({"ssh-keygen", "-L", "-f", cert}).out;
    std::smatch w;
    EXPECT_TRUE(std::regex_search(text, w, std::regex("Valid: from (\\S+) to (\\S+)"))) << text;
    return std::make_pair(parse(w[1]), parse(w[2]));
  };
  auto ends = std::chrono::system_clock::now() + std::chrono::hours(3);
  auto [from_now, until] = window({"--valid-to", rfc3339(ends)});
  EXPECT_EQ(until, std::chrono::system_clock::to_time_t(ends));
  EXPECT_LE(std::abs(static_cast<long>(until - from_now) - (3 * 3600 + 60)), 2L);
  auto starts = std::chrono::system_clock::now() + std::chrono::hours(48);
  auto [from, to] = window({"--valid-from", rfc3339(starts)});
  EXPECT_EQ(from, std::chrono::system_clock::to_time_t(starts));
  EXPECT_EQ(to - from, 8 * 3600);
}

TEST(SshLogin, AUserCertificateLogsInForItsPrincipalAndNothingElse) {
  Ca& ca = Ca::get();
  Sshd sshd("login", {"TrustedUserCAKeys " + ca.trusted, "AuthorizedKeysFile none"});
  std::string key = user_key("alice");
  std::string cert = signed_cert(key, {"--type", "user", "--key-id", "alice", "--principals", login_user()});
  EXPECT_TRUE(logged_in(sshd.login({"-i", key, "-o", "CertificateFile=" + cert}))) << sshd.log();

  std::string other = user_key("mallory");
  std::string wrong = signed_cert(other, {"--type", "user", "--key-id", "mallory", "--principals", "not-" + login_user()});
  EXPECT_FALSE(logged_in(sshd.login({"-i", other, "-o", "CertificateFile=" + wrong})));

  // Expired, and not yet valid. keyhold refuses to sign a certificate that has already ended, so this one ends
  // two seconds from now and the login is tried once it has.
  std::string old = user_key("old");
  auto ends = std::chrono::system_clock::now() + std::chrono::seconds(2);
  std::string expired = signed_cert(old, {"--type", "user", "--key-id", "old", "--principals", login_user(), "--valid-from",
                                          rfc3339(ends - std::chrono::hours(1)), "--valid-to", rfc3339(ends)});
  std::this_thread::sleep_until(ends + std::chrono::seconds(1));
  // keyhold lists it as expired (judged against the clock), and --status expired finds it.
  nlohmann::json expired_list = keyhold_json({"ssh", "certs", "--ca", "users", "--key-id", "old"});
  ASSERT_EQ(expired_list.size(), 1u);
  EXPECT_EQ(expired_list[0]["status"], "expired");
  EXPECT_EQ(keyhold_json({"ssh", "certs", "--ca", "users", "--status", "expired", "--key-id", "old"}).size(), 1u);
  EXPECT_FALSE(logged_in(sshd.login({"-i", old, "-o", "CertificateFile=" + expired})));
  std::string early = user_key("early");
  std::string future = signed_cert(early, {"--type", "user", "--key-id", "early", "--principals", login_user(), "--valid-from",
                                           "2099-01-01T00:00:00Z", "--valid-to", "2099-01-01T08:00:00Z"});
  EXPECT_FALSE(logged_in(sshd.login({"-i", early, "-o", "CertificateFile=" + future})));

  // A certificate from another CA.
  ASSERT_EQ(keyhold({"ssh", "init-ca", "strangers", "--key-type", "ec-p256"}).exit_code, 0);
  std::string stranger = user_key("stranger");
  std::string foreign = signed_cert(stranger, {"--type", "user", "--key-id", "s", "--principals", login_user()}, "strangers");
  EXPECT_FALSE(logged_in(sshd.login({"-i", stranger, "-o", "CertificateFile=" + foreign})));

  // source-address: 127.0.0.1 is outside 10.0.0.0/8 and inside 127.0.0.0/8.
  std::string fenced = user_key("fenced");
  std::string outside = signed_cert(fenced, {"--type", "user", "--key-id", "fenced", "--principals", login_user(), "--option",
                                             "source-address=10.0.0.0/8"});
  EXPECT_FALSE(logged_in(sshd.login({"-i", fenced, "-o", "CertificateFile=" + outside})));
  std::string inside = signed_cert(fenced, {"--type", "user", "--key-id", "fenced", "--principals", login_user(), "--option",
                                            "source-address=127.0.0.0/8,::1"});
  EXPECT_TRUE(logged_in(sshd.login({"-i", fenced, "-o", "CertificateFile=" + inside}))) << sshd.log();
}

TEST(SshRevocation, TheKrlRevokesBySerialKeyIdAndKeyForSshKeygenAndSshd) {
  Ca& ca = Ca::get();
  std::string by_serial = user_key("rev-serial"), by_id = user_key("rev-id"), by_key = user_key("rev-key"), kept = user_key("kept");
  auto cert = [&](const std::string& key, const std::string& id) {
    return signed_cert(key, {"--type", "user", "--key-id", id, "--principals", login_user()});
  };
  std::string serial_cert = cert(by_serial, "rev-serial"), id_cert = cert(by_id, "rev-id"), key_cert = cert(by_key, "rev-key"),
              kept_cert = cert(kept, "kept");
  std::string serial = std::regex_replace(run_process({"ssh-keygen", "-L", "-f", serial_cert}).out,
                                          std::regex("(?:.|\\n)*Serial: ([0-9]+)(?:.|\\n)*"), "$1");
  ASSERT_EQ(keyhold({"ssh", "revoke", "--ca", "users", "--serial", serial}).exit_code, 0);
  nlohmann::json by_id_json = keyhold_json({"ssh", "revoke", "--ca", "users", "--key-id", "rev-id"});
  EXPECT_EQ(by_id_json["kind"], "key_id");
  EXPECT_EQ(by_id_json["key_id"], "rev-id");
  EXPECT_EQ(by_id_json["certificates"], 1);
  ASSERT_EQ(keyhold({"ssh", "revoke", "--ca", "users", "--public-key", by_key + ".pub"}).exit_code, 0);
  ProcessResult again = keyhold({"ssh", "revoke", "--ca", "users", "--serial", serial});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("already revoked"), std::string::npos) << again.err;
  // What was revoked by key id or key is not certified again (it would be valid until the next KRL arrives).
  std::size_t before = keyhold_json({"ssh", "certs", "--ca", "users"}).size();
  ProcessResult same_id = sign({"--ca", "users", "--public-key", kept + ".pub", "--type", "user", "--key-id", "rev-id",
                                "--principals", login_user()});
  EXPECT_EQ(same_id.exit_code, 1);
  EXPECT_NE(same_id.err.find("key id 'rev-id' was revoked by SSH CA 'users'"), std::string::npos) << same_id.err;
  ProcessResult same_key = sign({"--ca", "users", "--public-key", by_key + ".pub", "--type", "user", "--key-id", "new-id",
                                 "--principals", login_user()});
  EXPECT_EQ(same_key.exit_code, 1);
  EXPECT_NE(same_key.err.find("was revoked by SSH CA 'users'"), std::string::npos) << same_key.err;
  EXPECT_EQ(keyhold_json({"ssh", "certs", "--ca", "users"}).size(), before);

  std::string krl = path_in_setup("users.krl");
  ProcessResult made = keyhold({"--json", "ssh", "krl", "--ca", "users", "--out", krl});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  int version = nlohmann::json::parse(made.out)["version"];
  for (const std::string& revoked : {serial_cert, id_cert, key_cert}) {
    ProcessResult q = run_process({"ssh-keygen", "-Q", "-f", krl, revoked});
    EXPECT_NE(q.exit_code, 0) << revoked;
    EXPECT_NE(q.out.find("REVOKED"), std::string::npos) << q.out;
  }
  ProcessResult ok = run_process({"ssh-keygen", "-Q", "-f", krl, kept_cert});
  EXPECT_EQ(ok.exit_code, 0) << ok.out;
  EXPECT_NE(ok.out.find(": ok"), std::string::npos) << ok.out;

  Sshd sshd("revoked", {"TrustedUserCAKeys " + ca.trusted, "AuthorizedKeysFile none", "RevokedKeys " + krl});
  EXPECT_FALSE(logged_in(sshd.login({"-i", by_serial, "-o", "CertificateFile=" + serial_cert})));
  EXPECT_FALSE(logged_in(sshd.login({"-i", by_id, "-o", "CertificateFile=" + id_cert})));
  EXPECT_FALSE(logged_in(sshd.login({"-i", by_key, "-o", "CertificateFile=" + key_cert})));
  EXPECT_TRUE(logged_in(sshd.login({"-i", kept, "-o", "CertificateFile=" + kept_cert}))) << sshd.log();

  // The next KRL has the next version.
  made = keyhold({"--json", "ssh", "krl", "--ca", "users", "--out", krl});
  EXPECT_EQ(nlohmann::json::parse(made.out)["version"], version + 1);
}

TEST(SshHost, AHostCertificateIsAcceptedWithOnlyACertAuthorityLine) {
  ASSERT_EQ(keyhold({"ssh", "init-ca", "hosts", "--key-type", "ec-p256"}).exit_code, 0);
  Ca& ca = Ca::get();
  // sshd's host key is certified first, then sshd starts with that certificate.
  Sshd probe("host");  // makes the host key
  std::string host_cert = probe.dir() + "/host_key-cert.pub";
  ProcessResult r = sign({"--ca", "hosts", "--public-key", probe.host_public_key(), "--type", "host", "--key-id",
                          "test sshd", "--principals", "127.0.0.1", "--out", host_cert});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Sshd sshd("host", {"HostCertificate " + host_cert, "TrustedUserCAKeys " + ca.trusted, "AuthorizedKeysFile none"});
  std::string key = user_key("host-check");
  std::string cert = signed_cert(key, {"--type", "user", "--key-id", "host-check", "--principals", login_user()});

  std::string known = path_in_setup("known_hosts");
  std::string line = keyhold({"ssh", "ca-key", "hosts", "--known-hosts", "[127.0.0.1]:" + std::to_string(sshd.port())}).out;
  write_file(known, line);
  nlohmann::json as_json = keyhold_json({"ssh", "ca-key", "hosts", "--known-hosts", "[127.0.0.1]:" + std::to_string(sshd.port())});
  EXPECT_EQ(as_json["known_hosts"].get<std::string>() + "\n", line);
  EXPECT_NE(read_file(known).rfind("@cert-authority [127.0.0.1]:", 0), std::string::npos);
  ProcessResult in = sshd.login({"-i", key, "-o", "CertificateFile=" + cert, "-o", "StrictHostKeyChecking=yes", "-o",
                                 "UserKnownHostsFile=" + known});
  EXPECT_TRUE(logged_in(in)) << in.err << sshd.log();
  // Another CA's line does not vouch for this host.
  std::string wrong = path_in_setup("known_hosts_wrong");
  write_file(wrong, keyhold({"ssh", "ca-key", "users", "--known-hosts", "[127.0.0.1]:" + std::to_string(sshd.port())}).out);
  EXPECT_FALSE(logged_in(sshd.login({"-i", key, "-o", "CertificateFile=" + cert, "-o", "StrictHostKeyChecking=yes", "-o",
                                     "UserKnownHostsFile=" + wrong})));
}

TEST(SshTokenKeys, SshWithThePkcs11ModuleLogsInWithAKeyholdKeyAndRotationRetiresTheOldOne) {
  ProcessResult made = keyhold({"ssh", "keygen", "deploy", "--type", "ecdsa-p256"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  std::string authorized = path_in_setup("authorized_keys");
  write_file(authorized, made.out);
  ASSERT_EQ(std::count(made.out.begin(), made.out.end(), '\n'), 1) << made.out;
  std::string public_v1 = path_in_setup("deploy-v1.pub");
  write_file(public_v1, made.out);
  // ssh checks the mode of an -i file as if it were a private key.
  ::chmod(public_v1.c_str(), 0600);

  Sshd sshd("token", {"AuthorizedKeysFile " + authorized});
  std::string askpass = path_in_setup("askpass.sh");
  write_file(askpass, "#!/bin/sh\ncat '" + path_in_setup("pin") + "'\n");
  ::chmod(askpass.c_str(), 0700);
  testing::ProcessOptions pin;
  pin.env["SOFTHSM2_CONF"] = path_in_setup("softhsm2.conf");
  pin.env["SSH_ASKPASS"] = askpass;
  pin.env["SSH_ASKPASS_REQUIRE"] = "force";
  pin.env["DISPLAY"] = ":0";
  auto login_with = [&](const std::string& public_key) {
    // -i names the public half; ssh finds the private half in the token (PKCS11Provider).
    return sshd.login({"-o", "BatchMode=no", "-o", "PKCS11Provider=" + testing::ThrowawayToken::module_path(), "-i", public_key},
                      pin);
  };
  ProcessResult in = login_with(public_v1);
  EXPECT_TRUE(logged_in(in)) << in.err << sshd.log();

  ProcessResult rotated = keyhold({"ssh", "rotate-key", "deploy", "--authorized-keys"});
  ASSERT_EQ(rotated.exit_code, 0) << rotated.err;
  ASSERT_EQ(std::count(rotated.out.begin(), rotated.out.end(), '\n'), 2) << "both versions during the overlap: " << rotated.out;
  write_file(authorized, rotated.out);
  std::string public_v2 = path_in_setup("deploy-v2.pub");
  write_file(public_v2, rotated.out.substr(rotated.out.find('\n') + 1));
  ::chmod(public_v2.c_str(), 0600);
  EXPECT_TRUE(logged_in(login_with(public_v2))) << sshd.log();

  // Retiring the newest is refused; retiring version 1 destroys it in the token.
  EXPECT_EQ(keyhold({"ssh", "retire-key", "deploy", "--version", "2"}).exit_code, 1);
  nlohmann::json keys = keyhold_json({"key", "list", "--all"});
  std::string v1_id;
  for (const auto& k : keys["keys"]) {
    if (k["name"] == "ssh.deploy.v1") v1_id = k["id"];
  }
  ASSERT_FALSE(v1_id.empty());
  ASSERT_EQ(keyhold({"ssh", "retire-key", "deploy", "--version", "1"}).exit_code, 0);
  ProcessResult objects = run_process(testing::pkcs11_tool({"--list-objects"}), testing::with_softhsm_conf());
  ASSERT_EQ(objects.exit_code, 0) << objects.err;
  EXPECT_EQ(objects.out.find("ssh.deploy.v1"), std::string::npos) << "the old key is gone from the token";
  EXPECT_NE(objects.out.find("ssh.deploy.v2"), std::string::npos);
  nlohmann::json history = keyhold_json({"ssh", "keys", "deploy"});
  ASSERT_EQ(history["versions"].size(), 2u);
  EXPECT_EQ(history["versions"][0]["state"], "retired");
  EXPECT_FALSE(logged_in(login_with(public_v1)));
  EXPECT_TRUE(logged_in(login_with(public_v2)));
}

TEST(SshKeygen, Ed25519IsMadeWithAWarningThatSsh92CannotUseItFromAToken) {
  nlohmann::json made = keyhold_json({"ssh", "keygen", "modern-json", "--type", "ed25519"});
  ASSERT_EQ(made["warnings"].size(), 1u);
  EXPECT_NE(made["warnings"][0].get<std::string>().find("cannot use an Ed25519 key"), std::string::npos);
  ProcessResult r = keyhold({"ssh", "keygen", "modern", "--type", "ed25519"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("cannot use an Ed25519 key in a PKCS#11 token"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.rfind("ssh-ed25519 ", 0), 0u) << r.out;
}

TEST(SshBadInput, GetsOneLineTheDocumentedStatusAndNothingIsSignedOrStored) {
  Ca::get();
  std::string good = user_key("bad-input-good");
  std::string rsa1024 = user_key("rsa1024", "rsa", 1024);
  std::string dsa = user_key("dsa", "dsa");
  std::string cert = signed_cert(good, {"--type", "user", "--key-id", "certified", "--principals", "alice"});
  std::string garbage = path_in_setup("garbage.pub");
  write_file(garbage, "ssh-ed25519 this-is-not-base64!!! x\n");
  std::string unknown = path_in_setup("unknown.pub");
  write_file(unknown, "ssh-foo AAAAB3NzaC1mb28= x\n");
  std::string huge = path_in_setup("huge.pub");
  write_file(huge, read_file(good + ".pub") + std::string(17 * 1024, '#'));
  int before = static_cast<int>(keyhold_json({"ssh", "certs", "--ca", "users"}).size());

  struct Case {
    std::vector<std::string> args;
    int status;
    std::string says;
  };
  auto args = [&](const std::string& key, std::vector<std::string> extra) {
    std::vector<std::string> a = {"ssh", "sign", "--ca", "users", "--public-key", key, "--type", "user", "--key-id", "bad"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  std::vector<Case> cases = {
      {args(garbage, {"--principals", "alice"}), 2, "base64"},
      {args(unknown, {"--principals", "alice"}), 2, "ssh-foo"},
      {args(rsa1024 + ".pub", {"--principals", "alice"}), 2, "1024"},
      {args(dsa + ".pub", {"--principals", "alice"}), 2, "DSA"},
      {args(cert, {"--principals", "alice"}), 2, "cert"},
      {args(huge, {"--principals", "alice"}), 2, "16 KiB"},
      {args(good, {"--principals", "alice"}), 2, "holds a private key"},
      {args(good + ".pub", {"--principals", "alice smith"}), 2, "space"},
      {args(good + ".pub", {"--principal", "alice,bob"}), 2, "comma"},
      {args(good + ".pub", {"--principal", std::string("ali\x01" "ce")}), 2, "control"},
      {args(good + ".pub", {}), 2, "empty principal list"},
      {args(good + ".pub", {"--principals", "alice", "--validity", "400d"}), 2, "maximum"},
      {args(good + ".pub", {"--principals", "alice", "--option", "permit-everything=yes"}), 2, "permit-everything"},
      {args(good + ".pub", {"--principals", "alice", "--extension", "permit-everything"}), 2, "permit-everything"},
      {{"ssh", "sign", "--ca", "nope", "--public-key", good + ".pub", "--type", "user", "--key-id", "x", "--principals", "a"}, 4,
       "no SSH CA named 'nope'"},
      {{"ssh", "revoke", "--ca", "users", "--serial", "12345"}, 4, "12345"},
      {{"ssh", "init-ca", "weak", "--key-type", "rsa-2048"}, 2, "rsa-2048"},
  };
  testing::ProcessOptions trace;
  trace.env["KEYHOLD_LOG"] = "trace";
  for (const Case& c : cases) {
    ProcessResult r = keyhold(c.args);
    EXPECT_EQ(r.exit_code, c.status) << c.says << ": " << r.err;
    expect_one_error_line(r);
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    ProcessResult traced = keyhold(c.args, trace);
    EXPECT_EQ(traced.err.find("pkcs11 C_Sign "), std::string::npos) << c.says << " reached the token";
  }
  EXPECT_EQ(static_cast<int>(keyhold_json({"ssh", "certs", "--ca", "users"}).size()), before);
}

}  // namespace
}  // namespace keyhold
