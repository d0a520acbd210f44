#include "keyhold/renew/renewal.hpp"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "keyhold/core/edit_distance.hpp"
#include "keyhold/core/duration.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/core/names.hpp"
#include "keyhold/core/text.hpp"
#include "keyhold/renew/https_client.hpp"

namespace keyhold::renew {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kMaxRenewalFileBytes = 1024 * 1024;
constexpr int kMaxDays = 3650;

// The renewal file being read: names it in messages, anchors relative paths.
class Source {
 public:
  explicit Source(const fs::path& file) {
    std::error_code ec;
    fs::path absolute = fs::absolute(file, ec);
    file_ = (ec ? file : absolute).lexically_normal();
  }
  const fs::path& file() const noexcept { return file_; }
  [[noreturn]] void fail(std::size_t line, const std::string& message) const {
    std::string where = file_.string() + (line != 0 ? ":" + std::to_string(line) : std::string()) + ": ";
    std::string text;
    for (char c : where + message) text += (c == '\n' || c == '\r') ? ' ' : c;
    throw Error(ErrorCode::InvalidArgument, text);
  }
  fs::path resolve(const fs::path& path) const {
    return path.is_absolute() ? path.lexically_normal() : (file_.parent_path() / path).lexically_normal();
  }

 private:
  fs::path file_;
};

std::string_view type_name(toml::node_type type) {
  switch (type) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a number";
    case toml::node_type::boolean: return "true or false";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "a date or time";
  }
}

std::size_t line_of(const toml::node& node) { return node.source().begin.line; }

toml::table parse_toml(std::string_view text, const Source& source) {
#if TOML_EXCEPTIONS
  try {
    return toml::parse(text);
  } catch (const toml::parse_error& error) {
    source.fail(error.source().begin.line, std::string(error.description()));
  }
#else
  toml::parse_result result = toml::parse(text);
  if (!result) source.fail(result.error().source().begin.line, std::string(result.error().description()));
  return std::move(result).table();
#endif
}

// The keys of a [[certificate]] table, in the order the documentation gives them.
const std::vector<std::string_view>& known_keys() {
  static const std::vector<std::string_view> keys = {
      "name",         "kind",   "server",     "trust",    "ca",       "profile",        "names",
      "principals",   "key_id", "cert",       "chain",    "key",      "key_type",       "rekey",
      "renew_before", "renew_at_percent",     "jitter",   "days",     "validity",       "deploy_hook",
      "tls_cert",     "tls_key"};
  return keys;
}


std::string unknown_key(std::string_view key) {
  std::string message = "unknown key '" + shown(key) + "' in [[certificate]]";
  std::string_view closest;
  std::size_t best = 3;
  for (std::string_view known : known_keys()) {
    std::size_t d = edit_distance(key, known);
    if (d < best) {
      best = d;
      closest = known;
    }
  }
  if (!closest.empty()) return message + " (did you mean '" + std::string(closest) + "'?)";
  message += " (known keys: ";
  for (std::size_t i = 0; i < known_keys().size(); ++i) message += (i > 0 ? ", " : "") + std::string(known_keys()[i]);
  return message + ")";
}

bool is_ip_address(const std::string& text) {
  unsigned char buffer[16];
  return ::inet_pton(AF_INET, text.c_str(), buffer) == 1 || ::inet_pton(AF_INET6, text.c_str(), buffer) == 1;
}

bool is_dns_name(const std::string& text) {
  if (text.empty() || text.size() > 253 || text.front() == '.' || text.back() == '.') return false;
  for (char c : text) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '*';
    if (!ok) return false;
  }
  return true;
}

// Reads one [[certificate]] table into an Entry, key by key, then checks the entry as a whole.
class EntryReader {
 public:
  EntryReader(const toml::table& table, std::size_t header_line, const Source& source)
      : table_(table), source_(source) {
    entry_.line = header_line;
  }

  Entry read() {
    // toml++ keeps keys sorted by name: take them in file order, so the first problem reported is the first in the file.
    std::vector<std::pair<const toml::key*, const toml::node*>> items;
    for (auto&& [key, node] : table_) items.emplace_back(&key, &node);
    std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
      const auto& pa = a.first->source().begin;
      const auto& pb = b.first->source().begin;
      return pa.line != pb.line ? pa.line < pb.line : pa.column < pb.column;
    });
    for (const auto& [key, node] : items) {
      std::size_t line = key->source().begin.line != 0 ? key->source().begin.line : line_of(*node);
      lines_[std::string(key->str())] = line;
      if (std::find(known_keys().begin(), known_keys().end(), key->str()) == known_keys().end()) {
        source_.fail(line, unknown_key(key->str()));
      }
    }
    read_kind_and_mode();
    read_everything();
    check_whole();
    return std::move(entry_);
  }

 private:
  bool has(std::string_view key) const { return table_.contains(key); }
  std::size_t line(std::string_view key) const {
    auto it = lines_.find(std::string(key));
    return it != lines_.end() ? it->second : entry_.line;
  }
  [[noreturn]] void fail(std::string_view key, const std::string& message) const { source_.fail(line(key), message); }
  [[noreturn]] void fail_entry(const std::string& message) const { source_.fail(entry_.line, message); }

  const toml::node& node(std::string_view key, toml::node_type type) const {
    const toml::node& n = *table_.get(key);
    if (n.type() != type) {
      fail(key, "'" + std::string(key) + "' must be " + std::string(type_name(type)) + ", not " +
                    std::string(type_name(n.type())));
    }
    return n;
  }

  std::string text(std::string_view key) const {
    std::string value = node(key, toml::node_type::string).as_string()->get();
    if (value.empty()) fail(key, "'" + std::string(key) + "' must not be empty");
    if (scan_text(value) != TextProblem::kNone) {
      fail(key, "'" + std::string(key) + "' must be UTF-8 text without control characters, not '" + shown(value) + "'");
    }
    return value;
  }

  std::optional<std::string> optional_text(std::string_view key) const {
    if (!has(key)) return std::nullopt;
    return text(key);
  }

  fs::path path(std::string_view key) const { return source_.resolve(text(key)); }

  std::chrono::seconds duration(std::string_view key) const {
    std::string value = text(key);
    auto parsed = parse_duration(value);
    if (!parsed) fail(key, "'" + std::string(key) + "' must be a duration such as '12h', '10d' or '2w', not '" + value + "'");
    return *parsed;
  }

  std::vector<std::string> list(std::string_view key) const {
    const toml::array& array = *node(key, toml::node_type::array).as_array();
    std::vector<std::string> out;
    for (const toml::node& element : array) {
      std::size_t at = line_of(element) != 0 ? line_of(element) : line(key);
      if (!element.is_string()) source_.fail(at, "'" + std::string(key) + "' must be an array of strings");
      std::string value = element.as_string()->get();
      if (value.empty() || scan_text(value) != TextProblem::kNone || value.find_first_of(" \t,") != std::string::npos) {
        source_.fail(at, "'" + std::string(key) + "' holds '" + shown(value) +
                             "': each must be non-empty, without spaces, commas or control characters");
      }
      if (std::find(out.begin(), out.end(), value) != out.end()) {
        source_.fail(at, "'" + std::string(key) + "' names '" + value + "' twice");
      }
      out.push_back(value);
    }
    if (out.empty()) fail(key, "'" + std::string(key) + "' must not be empty");
    return out;
  }

  // Keys that only make sense in some entries are refused elsewhere, saying where they belong.
  void only_if(bool allowed, std::string_view key, const std::string& where) const {
    if (!allowed && has(key)) fail(key, "'" + std::string(key) + "' is only for " + where);
  }
  void required(std::string_view key, const std::string& what) const {
    if (!has(key)) fail_entry("entry '" + entry_.name + "' needs '" + std::string(key) + "' (" + what + ")");
  }

  void read_kind_and_mode() {
    if (!has("name")) fail_entry("[[certificate]] needs 'name'");
    entry_.name = text("name");
    if (!is_valid_name(entry_.name)) {
      fail("name", "invalid entry name '" + shown(entry_.name) +
                       "': use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit");
    }
    required("kind", "x509, ssh-user or ssh-host");
    std::string kind = text("kind");
    if (kind == "x509") {
      entry_.kind = Kind::X509;
    } else if (kind == "ssh-user") {
      entry_.kind = Kind::SshUser;
    } else if (kind == "ssh-host") {
      entry_.kind = Kind::SshHost;
    } else {
      fail("kind", "'kind' must be x509, ssh-user or ssh-host, not '" + kind + "'");
    }
    if (has("server")) {
      std::string server = text("server");
      if (!parse_https_url(server)) {
        fail("server", "'server' must be an https:// URL such as https://kms.example.org:8443, not '" + server + "'");
      }
      while (server.size() > 8 && server.back() == '/') server.pop_back();
      entry_.server = server;
    }
  }

  void read_everything() {
    const bool remote = entry_.remote(), ssh = entry_.ssh(), x509 = !ssh;
    const std::string remote_only = "remote entries (with 'server')";
    only_if(remote, "trust", remote_only);
    if (remote) {
      required("trust", "the CA certificate that the server's certificate chains to");
      entry_.trust = path("trust");
    }

    required("ca", "the name of the CA that issues it");
    entry_.ca = text("ca");
    if (!is_valid_name(entry_.ca)) fail("ca", "invalid CA name '" + shown(entry_.ca) + "'");

    if (has("profile")) {
      entry_.profile = text("profile");
      if (!is_valid_name(*entry_.profile)) fail("profile", "invalid profile name '" + shown(*entry_.profile) + "'");
    } else if (x509 && !remote) {
      required("profile", "the issuance profile");
    }

    if (x509 && has("principals")) fail("principals", "'principals' is for SSH entries; X.509 entries list 'names'");
    if (ssh && has("names")) fail("names", "'names' is for X.509 entries; SSH entries list 'principals'");
    const char* names_key = ssh ? "principals" : "names";
    if (has(names_key)) {
      entry_.names = list(names_key);
      for (const std::string& name : entry_.names) {
        if (x509 && !is_ip_address(name) && !is_dns_name(name)) {
          fail("names", "'names' holds '" + shown(name) + "', which is neither a DNS name nor an IP address");
        }
      }
    } else if (!remote) {
      required(names_key, ssh ? "the principals the certificate names" : "the DNS names and IP addresses it names");
    }

    only_if(ssh, "key_id", "SSH entries");
    if (has("key_id")) entry_.key_id = text("key_id");

    only_if(x509, "chain", "X.509 entries");
    if (has("chain")) entry_.chain = path("chain");

    required("key", ssh ? "the OpenSSH private key file" : "the private key file, or \"token\" on the CA host");
    if (text("key") == "token") {
      if (ssh || remote) {
        fail("key", ssh ? "key = \"token\" is for X.509 entries; an SSH entry names its private key file"
                        : "key = \"token\" is for local entries (on the CA host): a remote entry keeps its key in a "
                          "file to present it to the server");
      }
      entry_.key_in_token = true;
    } else {
      entry_.key = path("key");
    }

    if (has("cert")) {
      entry_.cert = path("cert");
    } else if (ssh) {
      entry_.cert = fs::path(entry_.key->string() + "-cert.pub");
    } else {
      required("cert", "where the certificate is written");
    }

    if (has("key_type")) {
      std::string type = text("key_type");
      std::vector<std::string> types = key_types_for(entry_.kind);
      if (std::find(types.begin(), types.end(), type) == types.end()) {
        std::string known;
        for (const std::string& t : types) known += (known.empty() ? "" : ", ") + t;
        fail("key_type", "'key_type' must be one of " + known + ", not '" + type + "'");
      }
      entry_.key_type = type;
    }
    if (has("rekey")) entry_.rekey = node("rekey", toml::node_type::boolean).as_boolean()->get();
    if (entry_.key_in_token && !entry_.rekey) {
      fail("rekey", "rekey = false is not supported with key = \"token\": each renewal makes a new key in the token");
    }

    if (has("renew_before") && has("renew_at_percent")) {
      fail("renew_at_percent", "give 'renew_before' or 'renew_at_percent', not both");
    }
    if (has("renew_before")) entry_.policy.renew_before = duration("renew_before");
    if (has("renew_at_percent")) {
      const toml::node& n = *table_.get("renew_at_percent");
      double percent = 0;
      if (n.is_integer()) {
        percent = static_cast<double>(n.as_integer()->get());
      } else if (n.is_floating_point()) {
        percent = n.as_floating_point()->get();
      } else {
        fail("renew_at_percent", "'renew_at_percent' must be a number, not " + std::string(type_name(n.type())));
      }
      if (!(percent > 0 && percent < 100)) {
        fail("renew_at_percent", "'renew_at_percent' must be above 0 and below 100 (the share of the lifetime "
                                 "that has passed when it renews)");
      }
      entry_.policy.renew_at_percent = percent;
    }
    if (has("jitter")) entry_.policy.jitter = duration("jitter");

    const std::string local_x509 = "local X.509 entries (a remote server renews with the profile's lifetime)";
    only_if(x509 && !remote, "days", local_x509);
    if (has("days")) {
      std::int64_t days = node("days", toml::node_type::integer).as_integer()->get();
      if (days < 1 || days > kMaxDays) fail("days", "'days' must be between 1 and " + std::to_string(kMaxDays));
      entry_.days = static_cast<int>(days);
    }
    only_if(ssh && !remote, "validity", "local SSH entries (a remote server signs with the profile's validity)");
    if (has("validity")) entry_.validity = duration("validity");

    if (has("deploy_hook")) entry_.deploy_hook = text("deploy_hook");

    only_if(ssh && remote, "tls_cert", "remote SSH entries (an X.509 entry presents its own certificate)");
    only_if(ssh && remote, "tls_key", "remote SSH entries (an X.509 entry presents its own key)");
    if (ssh && remote) {
      required("tls_cert", "the X.509 certificate presented to the server");
      required("tls_key", "the key of tls_cert");
      entry_.tls_cert = path("tls_cert");
      entry_.tls_key = path("tls_key");
    }
  }

  void check_whole() const {
    std::vector<std::pair<std::string_view, fs::path>> written = {{"cert", entry_.cert}};
    if (entry_.chain) written.emplace_back("chain", *entry_.chain);
    if (entry_.key) written.emplace_back("key", *entry_.key);
    for (std::size_t i = 0; i < written.size(); ++i) {
      for (std::size_t j = i + 1; j < written.size(); ++j) {
        if (written[i].second == written[j].second) {
          fail(written[j].first, "'" + std::string(written[j].first) + "' and '" + std::string(written[i].first) +
                                     "' name the same file " + written[j].second.string());
        }
      }
    }
  }

  const toml::table& table_;
  const Source& source_;
  std::map<std::string, std::size_t> lines_;
  Entry entry_;
};

// The files an entry writes (an SSH key also has its KEY.pub).
std::vector<std::pair<std::string, fs::path>> files_of(const Entry& entry) {
  std::vector<std::pair<std::string, fs::path>> files = {{"cert", entry.cert}};
  if (entry.chain) files.emplace_back("chain", *entry.chain);
  if (entry.key) {
    files.emplace_back("key", *entry.key);
    if (entry.ssh()) files.emplace_back("key", entry.key->string() + ".pub");
  }
  return files;
}

}  // namespace

std::string_view to_string(Kind kind) noexcept {
  switch (kind) {
    case Kind::X509: return "x509";
    case Kind::SshUser: return "ssh-user";
    case Kind::SshHost: return "ssh-host";
  }
  return "x509";
}

std::vector<std::string> key_types_for(Kind kind) {
  if (kind == Kind::X509) return {"ec-p256", "ec-p384", "ed25519", "rsa-2048", "rsa-3072", "rsa-4096"};
  return {"ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-3072", "rsa-4096"};
}

RenewalFile parse_renewal_file(std::string_view text, const fs::path& path) {
  Source source(path);
  if (text.find('\0') != std::string_view::npos) source.fail(0, "the renewal file holds a NUL byte");
  toml::table document = parse_toml(text, source);
  RenewalFile file;
  file.path = source.file();
  for (auto&& [key, node] : document) {
    std::size_t line = key.source().begin.line;
    if (key.str() != "certificate") {
      source.fail(line, "unknown key '" + shown(key.str()) + "' (a renewal file holds [[certificate]] entries only)");
    }
    if (!node.is_array_of_tables()) source.fail(line, "'certificate' must be written as [[certificate]] tables");
    for (const toml::node& element : *node.as_array()) {
      file.entries.push_back(EntryReader(*element.as_table(), line_of(element), source).read());
    }
  }
  std::sort(file.entries.begin(), file.entries.end(), [](const Entry& a, const Entry& b) { return a.line < b.line; });

  // Names are unique, and no file is written by two entries.
  std::map<std::string, const Entry*> names;
  std::map<fs::path, const Entry*> files;
  for (const Entry& entry : file.entries) {
    auto [it, fresh] = names.emplace(entry.name, &entry);
    if (!fresh) {
      source.fail(entry.line, "duplicate entry name '" + entry.name + "' (first at line " +
                                  std::to_string(it->second->line) + ")");
    }
    for (const auto& [what, path] : files_of(entry)) {
      auto [at, unique] = files.emplace(path, &entry);
      if (!unique && at->second != &entry) {
        source.fail(entry.line, "entry '" + entry.name + "' writes " + path.string() + " (its " + what +
                                    "), which entry '" + at->second->name + "' (line " +
                                    std::to_string(at->second->line) + ") writes too");
      }
    }
  }
  return file;
}

RenewalFile load_renewal_file(const fs::path& path) {
  std::error_code ec;
  fs::file_status status = fs::status(path, ec);
  std::string name = fs::absolute(path, ec).lexically_normal().string();
  if (status.type() == fs::file_type::not_found) {
    throw Error(ErrorCode::InvalidArgument, "no renewal file " + name + " (write one, see docs/renewal.md, or pass --renew-config FILE)");
  }
  if (status.type() != fs::file_type::regular) {
    throw Error(ErrorCode::InvalidArgument, "the renewal file " + name + " is not a regular file");
  }
  if (fs::file_size(path, ec) > kMaxRenewalFileBytes) {
    throw Error(ErrorCode::InvalidArgument, "the renewal file " + name + " is larger than 1 MiB");
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  if (!in && !in.eof()) throw Error(ErrorCode::InvalidArgument, "cannot read the renewal file " + name);
  return parse_renewal_file(content.str(), path);
}

// ---- Due ---------------------------------------------------------------------

std::string format_duration(std::chrono::seconds duration) {
  std::int64_t s = duration.count();
  std::string sign = s < 0 ? "-" : "";
  if (s < 0) s = -s;
  const std::pair<std::int64_t, const char*> units[] = {{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}};
  std::string out;
  int parts = 0;
  for (const auto& [size, suffix] : units) {
    if (parts == 2) break;
    std::int64_t n = s / size;
    if (n == 0 && parts == 0) continue;
    if (n != 0) out += (out.empty() ? "" : " ") + std::to_string(n) + suffix;
    s -= n * size;
    ++parts;
  }
  return out.empty() ? "0s" : sign + out;
}

namespace {

std::string format_time(TimePoint t) {
  std::time_t time = Clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&time, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

std::chrono::seconds seconds_between(TimePoint from, TimePoint to) {
  return std::chrono::duration_cast<std::chrono::seconds>(to - from);
}

}  // namespace

DueDecision decide(const DuePolicy& policy, const std::optional<CurrentValidity>& current, TimePoint now, bool force,
                   double jitter_fraction) {
  DueDecision decision;
  if (!current) {
    decision.due = true;
    decision.reason = "no certificate yet";
    return decision;
  }
  const auto lifetime = seconds_between(current->not_before, current->not_after);
  const auto left = seconds_between(now, current->not_after);
  TimePoint point;
  std::string rule;
  if (policy.renew_before) {
    point = current->not_after - *policy.renew_before;
    rule = "it expires within renew_before (" + format_duration(*policy.renew_before) + ")";
    if (*policy.renew_before >= lifetime) {
      rule += ", which is longer than its lifetime (" + format_duration(lifetime) + "): it renews on every run";
    }
  } else if (policy.renew_at_percent) {
    auto elapsed = std::chrono::seconds(static_cast<std::int64_t>(std::floor(
        static_cast<double>(lifetime.count()) * *policy.renew_at_percent / 100.0)));
    point = current->not_before + elapsed;
    std::ostringstream percent;
    percent << *policy.renew_at_percent;
    rule = percent.str() + "% of its lifetime (" + format_duration(lifetime) + ") has passed";
  } else {
    point = current->not_after - lifetime / 3;
    rule = "less than a third of its lifetime (" + format_duration(lifetime) + ") is left";
  }
  if (policy.jitter && jitter_fraction > 0 && point < current->not_after) {
    auto window = std::min(*policy.jitter, seconds_between(point, current->not_after) / 2);
    point += std::chrono::seconds(static_cast<std::int64_t>(std::floor(static_cast<double>(window.count()) *
                                                                       std::min(jitter_fraction, 1.0))));
  }
  decision.renew_from = point;
  if (force) {
    decision.due = true;
    decision.reason = "forced (--force); it " + std::string(left.count() > 0 ? "expires in " + format_duration(left)
                                                                            : "expired at " + format_time(current->not_after));
  } else if (left.count() <= 0) {
    decision.due = true;
    decision.reason = "it expired at " + format_time(current->not_after);
  } else if (now >= point) {
    decision.due = true;
    decision.reason = rule + " (expires in " + format_duration(left) + ")";
  } else {
    decision.reason = "not due (expires in " + format_duration(left) + "; renewal from " + format_time(point) +
                      (policy.jitter ? ", with jitter" : "") + ")";
  }
  return decision;
}

double jitter_fraction(std::string_view machine, std::string_view entry, std::string_view serial) {
  std::string input = std::string(machine) + '\0' + std::string(entry) + '\0' + std::string(serial);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &length, EVP_sha256(), nullptr) != 1 || length < 8) return 0.5;
  std::uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = value << 8 | digest[i];
  return static_cast<double>(value >> 11) / static_cast<double>(1ULL << 53);
}

std::string machine_identity() {
  std::ifstream in("/etc/machine-id");
  std::string id;
  if (in && std::getline(in, id) && !id.empty()) return id;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) return host;
  return "localhost";
}

std::optional<TimePoint> parse_rfc3339(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
  auto digits = [&](std::size_t at, std::size_t count, int& out) {
    if (at + count > text.size()) return false;
    out = 0;
    for (std::size_t i = at; i < at + count; ++i) {
      if (text[i] < '0' || text[i] > '9') return false;
      out = out * 10 + (text[i] - '0');
    }
    return true;
  };
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (text.size() < 20 || !digits(0, 4, year) || text[4] != '-' || !digits(5, 2, month) || text[7] != '-' ||
      !digits(8, 2, day) || (text[10] != 'T' && text[10] != 't' && text[10] != ' ') || !digits(11, 2, hour) ||
      text[13] != ':' || !digits(14, 2, minute) || text[16] != ':' || !digits(17, 2, second)) {
    return std::nullopt;
  }
  std::size_t at = 19;
  if (at < text.size() && text[at] == '.') {
    ++at;
    std::size_t start = at;
    while (at < text.size() && text[at] >= '0' && text[at] <= '9') ++at;
    if (at == start) return std::nullopt;  // fractions are dropped: renewal decisions need no more than seconds
  }
  int offset = 0;
  if (at < text.size() && (text[at] == 'Z' || text[at] == 'z')) {
    ++at;
  } else if (at < text.size() && (text[at] == '+' || text[at] == '-')) {
    int oh = 0, om = 0;
    if (!digits(at + 1, 2, oh) || at + 3 >= text.size() || text[at + 3] != ':' || !digits(at + 4, 2, om) || oh > 23 ||
        om > 59) {
      return std::nullopt;
    }
    offset = (text[at] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    at += 6;
  } else {
    return std::nullopt;
  }
  if (at != text.size()) return std::nullopt;
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month < 1 || month > 12 || day < 1 || day > kDays[month - 1] || (month == 2 && day == 29 && !leap) ||
      hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = std::min(second, 59);  // a leap second counts as the second before it
  return Clock::from_time_t(timegm(&tm)) - std::chrono::seconds(offset);
}

}  // namespace keyhold::renew
