#include "support/serve_fixture.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "support/dev_setup.hpp"
#include "support/temp_dir.hpp"

extern char** environ;

namespace keyhold::testing {
namespace {

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

std::unique_ptr<ServeProcess> ServeProcess::start(const std::filesystem::path& config, std::vector<std::string> extra) {
  std::unique_ptr<ServeProcess> p(new ServeProcess);
  std::filesystem::path dir = make_temp_directory("keyhold-serve");
  p->out_file_ = dir / "stdout";
  p->err_file_ = dir / "stderr";
  std::vector<std::string> argv = {keyhold_binary(), "--config", config.string(), "serve", "--listen", "127.0.0.1:0"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  // The environment without KEYHOLD_PIN / KEYHOLD_LOG from outside, as dev_setup's keyhold() does.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    if (entry.rfind("KEYHOLD_PIN=", 0) == 0 || entry.rfind("KEYHOLD_LOG=", 0) == 0 ||
        entry.rfind("KEYHOLD_CONFIG=", 0) == 0) {
      continue;
    }
    env_strings.push_back(entry);
  }
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  int out = ::open(p->out_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int err = ::open(p->err_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (out < 0 || err < 0 || null < 0) throw std::runtime_error("cannot create the server's output files");
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(null, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  ::close(out);
  ::close(err);
  ::close(null);
  p->pid_ = pid;

  const std::string marker = "listening on https://";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string text = p->out();
    std::size_t at = text.find(marker);
    std::size_t end = at == std::string::npos ? std::string::npos : text.find('\n', at);
    if (end != std::string::npos) {
      std::string line = text.substr(at + marker.size(), end - at - marker.size());
      std::string address = line.substr(0, line.find(' '));
      p->url_ = "https://" + address;
      p->port_ = std::stoi(address.substr(address.rfind(':') + 1));
      std::size_t plain = line.find("http://");
      if (plain != std::string::npos) p->plain_url_ = line.substr(plain, line.find(' ', plain) - plain);
      return p;
    }
    if (!p->running()) {
      throw std::runtime_error("keyhold serve exited (status " + std::to_string(p->status_) + "): " + p->err());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::string err_text = p->err();
  throw std::runtime_error("keyhold serve did not listen within 60 s: " + err_text);
}

ServeProcess::~ServeProcess() {
  if (pid_ > 0 && running()) {
    signal(SIGTERM);
    wait();
  }
  std::error_code ec;
  std::filesystem::remove_all(out_file_.parent_path(), ec);
}

void ServeProcess::signal(int sig) const {
  if (pid_ > 0) ::kill(pid_, sig);
}

bool ServeProcess::running() {
  if (exited_) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exited_ = true;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return false;
  }
  return true;
}

int ServeProcess::wait(std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      exited_ = true;
      status_ = -2;
      return status_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return status_;
}

std::string ServeProcess::out() const { return slurp(out_file_); }
std::string ServeProcess::err() const { return slurp(err_file_); }

ProcessResult curl(const CurlIdentity& who, const std::string& url, std::vector<std::string> extra) {
  std::vector<std::string> argv = {"curl", "--silent", "--show-error", "--max-time", "30", "--write-out", "\n%{http_code}"};
  if (!who.ca.empty()) {
    argv.push_back("--cacert");
    argv.push_back(who.ca);
  }
  if (!who.certificate.empty()) {
    argv.push_back("--cert");
    argv.push_back(who.certificate);
  }
  if (!who.key.empty()) {
    argv.push_back("--key");
    argv.push_back(who.key);
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(url);
  return run_process(argv);
}

CurlIdentity admin_identity() {
  const DevSetup& setup = DevSetup::get();
  return {(setup.dir / "admin.pem").string(), (setup.dir / "admin-key.pem").string(), (setup.dir / "ca.pem").string()};
}

HttpReply reply_of(const ProcessResult& r) {
  HttpReply reply;
  std::size_t newline = r.out.rfind('\n');
  if (newline == std::string::npos) return reply;
  reply.body = r.out.substr(0, newline);
  try {
    reply.status = std::stoi(r.out.substr(newline + 1));
  } catch (const std::exception&) {
    reply.status = 0;
  }
  return reply;
}

std::vector<nlohmann::json> audit_records(const std::filesystem::path& log) {
  std::vector<nlohmann::json> out;
  std::istringstream in(slurp(log));
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) {
      ADD_FAILURE() << "unparsable audit line in " << log << ": " << line;
      continue;
    }
    out.push_back(std::move(j));
  }
  return out;
}

std::vector<nlohmann::json> audit_events(const std::filesystem::path& log) {
  std::vector<nlohmann::json> out;
  for (nlohmann::json& r : audit_records(log)) {
    if (r.is_object() && r.value("type", "") == "event") out.push_back(std::move(r));
  }
  return out;
}

std::optional<double> metric(const std::string& text, const std::string& sample) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > sample.size() && line.compare(0, sample.size(), sample) == 0 && line[sample.size()] == ' ') {
      return std::stod(line.substr(sample.size() + 1));
    }
  }
  return std::nullopt;
}

}  // namespace keyhold::testing
