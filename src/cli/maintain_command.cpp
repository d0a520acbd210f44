// keyhold maintain: the CA host's periodic work, for cron or a systemd timer
// (docs/maintenance.md): publishes a fresh CRL for every CA version that
// needs one and a fresh KRL for every SSH CA when due, rotates every KEK that
// is due, marks expired certificates in the store, and reports the
// certificates of keyhold's CAs that expire soon. One line per item on
// stderr; a failing item does not stop the others.

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "arguments.hpp"
#include "cli.hpp"
#include "keyhold/renew/renewal.hpp"
#include "files.hpp"
#include "keyhold/core/duration.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"

namespace po = boost::program_options;

namespace keyhold::cli {
namespace {

using Clock = std::chrono::system_clock;

constexpr auto kDefaultExpiringWithin = std::chrono::days(30);


// "12d", "5h", "40m", "30s": the largest whole unit, rounded down.
std::string span_text(std::chrono::seconds span) {
  std::int64_t s = span.count();
  if (s >= 86400) return std::to_string(s / 86400) + "d";
  if (s >= 3600) return std::to_string(s / 3600) + "h";
  if (s >= 60) return std::to_string(s / 60) + "m";
  return std::to_string(s) + "s";
}

std::string plural(std::size_t n, const std::string& one, const std::string& many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

// The lock that keeps two runs apart: flock on a file beside the store. Held
// until the process exits (the descriptor is never closed before).
class RunLock {
 public:
  explicit RunLock(const std::filesystem::path& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) {
      error_ = "cannot open the lock file " + path.string() + ": " + std::strerror(errno);
      return;
    }
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      int saved = errno;
      error_ = saved == EWOULDBLOCK ? "another keyhold maintain is running (it holds " + path.string() + "); nothing done"
                                    : "cannot lock " + path.string() + ": " + std::strerror(saved);
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RunLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  bool held() const { return fd_ >= 0; }
  const std::string& error() const { return error_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::string error_;
};

// One line per item on stderr (failures even with --quiet), and the JSON
// report for --json.
class Report {
 public:
  Report(Context& c, bool quiet) : c_(c), quiet_(quiet) {}

  void line(const std::string& text) {
    if (!quiet_ && !c_.json()) std::cerr << text << "\n";
  }
  void failure(const std::string& item, std::string message, nlohmann::json* entry = nullptr) {
    ++failures_;
    for (char& ch : message) {
      if (ch == '\n' || ch == '\r') ch = ' ';  // one line per item, whatever a library said
    }
    std::cerr << item << ": failed: " << message << "\n";
    json_["failures"].push_back({{"item", item}, {"error", message}});
    if (entry != nullptr) {
      (*entry)["outcome"] = "failed";
      (*entry)["error"] = message;
    }
  }
  nlohmann::json& json() { return json_; }
  int failures() const { return failures_; }

 private:
  Context& c_;
  bool quiet_;
  int failures_ = 0;
  nlohmann::json json_ = {{"crls", nlohmann::json::array()},
                          {"krls", nlohmann::json::array()},
                          {"keks", nlohmann::json::array()},
                          {"rotated_keks", nlohmann::json::array()},
                          {"expired_certificates", nlohmann::json::array()},
                          {"expiring_certificates", nlohmann::json::array()},
                          {"expiring_ca_certificates", nlohmann::json::array()},
                          {"failures", nlohmann::json::array()}};
};

// Runs one item; a keyhold::Error (or any exception) becomes its failure line.
void attempt(Report& report, const std::string& item, nlohmann::json* entry, const std::function<void()>& work) {
  try {
    work();
  } catch (const Error& e) {
    report.failure(item, e.what(), entry);
  } catch (const std::exception& e) {
    report.failure(item, e.what(), entry);
  }
}

std::string read_existing(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Writes content to path atomically unless the file holds it already.
// Returns whether it wrote.
bool publish_file(const std::filesystem::path& path, const std::vector<std::uint8_t>& content) {
  std::string bytes(content.begin(), content.end());
  std::error_code ec;
  if (std::filesystem::is_regular_file(path, ec) && read_existing(path) == bytes) return false;
  write_file_atomically(path, bytes, 0644);
  return true;
}

struct Options {
  Clock::time_point now;
  bool now_given = false;
  std::chrono::seconds expiring_within{kDefaultExpiringWithin};
  std::optional<std::filesystem::path> publish_dir;
  bool quiet = false;
};

void maintain_crls(Context& c, Report& report, const Options& o) {
  pki::Authority* authority = nullptr;
  std::vector<pki::CaDetails> cas;
  attempt(report, "CAs", nullptr, [&] {
    authority = &c.app().authority();
    cas = authority->list();
  });
  if (authority == nullptr) return;
  for (const pki::CaDetails& ca : cas) {
    const std::string& name = ca.ca.name;
    std::vector<int> versions;
    attempt(report, "CRLs of CA '" + name + "'", nullptr, [&] { versions = authority->crl_versions(name, o.now); });
    int current = versions.empty() ? 0 : versions.back();
    for (int version : versions) {
      std::string item = "CRL of CA '" + name + "' v" + std::to_string(version);
      nlohmann::json entry = {{"ca", name}, {"version", version}};
      attempt(report, item, &entry, [&] {
        pki::PublicationCheck check;
        check.now = o.now;
        check.compare_revoked = true;
        pki::PublishedCrl crl = authority->published_crl(name, version, check);
        entry["outcome"] = crl.published ? "published" : "not due";
        entry["number"] = crl.crl.number;
        entry["this_update"] = crl.crl.this_update;
        entry["next_update"] = crl.crl.next_update;
        entry["due_at"] = crl.due_at;
        entry["revoked"] = crl.crl.revoked;
        if (crl.published) entry["reason"] = crl.reason;
        std::string text = crl.published
                               ? "published CRL " + std::to_string(crl.crl.number) + ", next update " +
                                     crl.crl.next_update + ", " +
                                     plural(crl.crl.revoked, "revoked certificate", "revoked certificates") + " (" +
                                     crl.reason + ")"
                               : "not due (CRL " + std::to_string(crl.crl.number) + ", next update " +
                                     crl.crl.next_update + ", due at " + crl.due_at + ")";
        if (o.publish_dir) {
          std::string file = name + (version == current ? "" : ".v" + std::to_string(version)) + ".crl";
          std::filesystem::path path = *o.publish_dir / file;
          entry["file"] = path.string();
          if (publish_file(path, crl.crl.der)) text += "; wrote " + path.string();
        }
        report.line(item + ": " + text);
      });
      report.json()["crls"].push_back(entry);
    }
  }
}

void maintain_krls(Context& c, Report& report, const Options& o) {
  ssh::Authority* authority = nullptr;
  std::vector<ssh::CaDetails> cas;
  attempt(report, "SSH CAs", nullptr, [&] {
    authority = &c.app().ssh_authority();
    cas = authority->list_cas();
  });
  if (authority == nullptr) return;
  for (const ssh::CaDetails& ca : cas) {
    const std::string& name = ca.ca.name;
    std::string item = "KRL of SSH CA '" + name + "'";
    nlohmann::json entry = {{"ca", name}};
    attempt(report, item, &entry, [&] {
      ssh::PublishedKrl krl = authority->published_krl(name, true);
      entry["outcome"] = krl.published ? "published" : "not due";
      entry["version"] = krl.krl.version;
      entry["generated_at"] = krl.krl.generated_at;
      entry["serials"] = krl.krl.serials;
      entry["key_ids"] = krl.krl.key_ids;
      entry["keys"] = krl.krl.keys;
      if (krl.published) entry["reason"] = krl.reason;
      std::string counts = plural(krl.krl.serials, "serial", "serials") + ", " +
                           plural(krl.krl.key_ids, "key id", "key ids") + ", " + plural(krl.krl.keys, "key", "keys");
      std::string text = krl.published ? "published KRL " + std::to_string(krl.krl.version) + ", " + counts + " (" +
                                             krl.reason + ")"
                                       : "not due (KRL " + std::to_string(krl.krl.version) +
                                             " lists every revocation: " + counts + ")";
      if (o.publish_dir) {
        std::filesystem::path path = *o.publish_dir / (name + ".krl");
        entry["file"] = path.string();
        if (publish_file(path, krl.krl.krl)) text += "; wrote " + path.string();
      }
      report.line(item + ": " + text);
    });
    report.json()["krls"].push_back(entry);
  }
}

// Due as envelope::Service judges it, but at o.now: by count, or by age
// once the primary version is as old as the rotation period.
std::string kek_due_reason(const envelope::KekInfo& k, const Options& o) {
  const store::KekVersionRecord* primary = nullptr;
  for (const envelope::KekVersionInfo& v : k.versions) {
    if (v.primary) primary = &v.record;
  }
  if (primary == nullptr) return "";
  if (primary->encryptions >= k.kek.max_encryptions) {
    return "version " + std::to_string(primary->version) + " has done " + std::to_string(primary->encryptions) +
           " encryptions (max-encryptions " + std::to_string(k.kek.max_encryptions) + ")";
  }
  if (k.next_rotation_due) {
    std::optional<Clock::time_point> due = parse_utc(*k.next_rotation_due);
    if (due && o.now >= *due) {
      return "version " + std::to_string(primary->version) + " is older than the rotation period (" +
             span_text(std::chrono::seconds(k.kek.rotation_period_seconds)) + ")";
    }
  }
  return "";
}

void maintain_keks(Context& c, Report& report, const Options& o) {
  envelope::Service* keks = nullptr;
  std::vector<envelope::KekInfo> all;
  attempt(report, "KEKs", nullptr, [&] {
    keks = &c.app().envelope();
    all = keks->list();
  });
  if (keks == nullptr) return;
  for (const envelope::KekInfo& k : all) {
    const std::string& name = k.kek.name;
    std::string item = "KEK '" + name + "'";
    nlohmann::json entry = {{"kek", name}};
    attempt(report, item, &entry, [&] {
      std::string reason = kek_due_reason(k, o);
      if (reason.empty()) {
        entry["outcome"] = "not due";
        entry["primary_version"] = k.primary_version;
        if (k.next_rotation_due) entry["next_rotation"] = *k.next_rotation_due;
        report.line(item + ": not due (" +
                    (k.next_rotation_due ? "next rotation " + *k.next_rotation_due : std::string("no rotation period")) +
                    ")");
        return;
      }
      envelope::KekInfo rotated = keks->rotate(name);
      entry["outcome"] = "rotated";
      entry["new_version"] = rotated.primary_version;
      entry["reason"] = reason;
      report.json()["rotated_keks"].push_back(
          {{"kek", name}, {"new_version", rotated.primary_version}, {"reason", reason}});
      report.line("rotated KEK '" + name + "' to version " + std::to_string(rotated.primary_version) + ": " + reason);
    });
    report.json()["keks"].push_back(entry);
  }
}

std::string subject_of(const store::CertificateRecord& r) {
  if (!r.subject.empty()) return r.subject;
  return r.sans.empty() ? "no subject" : r.sans.front();
}

void maintain_certificates(Context& c, Report& report, const Options& o) {
  pki::Authority* authority = nullptr;
  // Marked as the clock says, even with --now later than the clock: a mark
  // is a record of the store, and a rehearsal must not make it false.
  Clock::time_point clock = Clock::now();
  Clock::time_point mark_at = std::min(o.now, clock);
  attempt(report, "expired certificates", nullptr, [&] {
    authority = &c.app().authority();
    for (const pki::ExpiredCertificate& e : authority->mark_expired(mark_at)) {
      report.json()["expired_certificates"].push_back({{"ca", e.ca},
                                                       {"ca_version", e.ca_version},
                                                       {"serial", e.record.serial},
                                                       {"subject", e.record.subject},
                                                       {"profile", e.record.profile},
                                                       {"not_after", e.record.not_after},
                                                       {"marked", true}});
      report.line("certificate " + e.record.serial + " of CA '" + e.ca + "' (" + subject_of(e.record) +
                  "): expired at " + e.record.not_after + ", marked expired");
    }
  });
  if (authority == nullptr) return;

  std::vector<pki::CaDetails> cas;
  attempt(report, "CAs", nullptr, [&] { cas = authority->list(); });
  Clock::time_point horizon = o.now + o.expiring_within;
  std::string now_text = format_utc(o.now);
  for (const pki::CaDetails& ca : cas) {
    const std::string& name = ca.ca.name;
    // The CA's own certificate: the newest active version's.
    const store::CaVersionRecord* current = nullptr;
    for (const store::CaVersionRecord& v : ca.versions) {
      if (v.state == store::kStateActive) current = &v;
    }
    if (current != nullptr) {
      std::optional<Clock::time_point> end = parse_utc(current->not_after);
      std::string item = "CA '" + name + "' v" + std::to_string(current->version) + " certificate";
      if (end && *end < o.now) {
        report.json()["expiring_ca_certificates"].push_back(
            {{"ca", name}, {"version", current->version}, {"not_after", current->not_after}, {"expired", true}});
        report.line(item + ": expired at " + current->not_after + " (keyhold ca rotate " + name + ")");
      } else if (end && *end < horizon) {
        report.json()["expiring_ca_certificates"].push_back(
            {{"ca", name}, {"version", current->version}, {"not_after", current->not_after}, {"expired", false}});
        report.line(item + ": expires in " + span_text(std::chrono::duration_cast<std::chrono::seconds>(*end - o.now)) +
                    " (" + current->not_after + "; keyhold ca rotate " + name + ")");
      }
    }
    if (o.now > clock) {
      // Expired at --now but not by the clock: reported, never marked.
      attempt(report, "expired certificates of CA '" + name + "'", nullptr, [&] {
        store::CertificateFilter filter;
        filter.status = std::string(store::kCertificateExpired);
        filter.now = now_text;
        std::string clock_text = format_utc(clock);
        for (const store::CertificateRecord& r : authority->certificates(name, filter)) {
          if (r.not_after < clock_text) continue;  // expired by the clock: marked above, or earlier
          report.json()["expired_certificates"].push_back({{"ca", name},
                                                           {"serial", r.serial},
                                                           {"subject", r.subject},
                                                           {"profile", r.profile},
                                                           {"not_after", r.not_after},
                                                           {"marked", false}});
          report.line("certificate " + r.serial + " of CA '" + name + "' (" + subject_of(r) + "): expired at " +
                      r.not_after + " as of --now, not marked (the clock says it has not)");
        }
      });
    }
    attempt(report, "expiring certificates of CA '" + name + "'", nullptr, [&] {
      store::CertificateFilter filter;
      filter.status = std::string(store::kCertificateValid);
      filter.now = now_text;
      filter.not_after_before = format_utc(horizon);
      for (const store::CertificateRecord& r : authority->certificates(name, filter)) {
        // CA certificates are reported above, as their CA's.
        if (r.profile.rfind("ca:", 0) == 0) continue;
        std::optional<Clock::time_point> end = parse_utc(r.not_after);
        std::string in = end ? span_text(std::chrono::duration_cast<std::chrono::seconds>(*end - o.now)) : "?";
        report.json()["expiring_certificates"].push_back({{"ca", name},
                                                          {"serial", r.serial},
                                                          {"subject", r.subject},
                                                          {"sans", r.sans},
                                                          {"profile", r.profile},
                                                          {"not_after", r.not_after}});
        report.line("certificate " + r.serial + " of CA '" + name + "' (" + subject_of(r) + "): expires in " + in +
                    " (" + r.not_after + ")");
      }
    });
  }
}

int maintain(Context& c) {
  po::options_description options;
  options.add_options()("now", po::value<std::string>(), "")("expiring-within", po::value<std::string>(), "")(
      "publish-dir", po::value<std::string>(), "")("lock-file", po::value<std::string>(), "")("quiet", po::bool_switch(),
                                                                                               "");
  po::variables_map vm = parse_arguments(c.args(), options, {});

  Options o;
  o.quiet = vm["quiet"].as<bool>();
  o.now = Clock::now();
  if (vm.count("now")) {
    // --now takes what keyhold renew --now takes (one RFC 3339 parser for both).
    std::optional<Clock::time_point> now = renew::parse_rfc3339(vm["now"].as<std::string>());
    if (!now) {
      throw Error(ErrorCode::InvalidArgument,
                  "--now '" + vm["now"].as<std::string>() + "' is not an RFC 3339 time such as 2026-11-28T15:47:59Z");
    }
    o.now = *now;
    o.now_given = true;
  }
  if (vm.count("expiring-within")) {
    std::optional<std::chrono::seconds> within = parse_duration(vm["expiring-within"].as<std::string>());
    if (!within) {
      throw Error(ErrorCode::InvalidArgument, "--expiring-within '" + vm["expiring-within"].as<std::string>() +
                                                  "' is not a duration such as 30d, 2w or 12h");
    }
    o.expiring_within = *within;
  }
  if (vm.count("publish-dir")) {
    std::filesystem::path dir = std::filesystem::absolute(vm["publish-dir"].as<std::string>());
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
      throw Error(ErrorCode::InvalidArgument, "--publish-dir " + dir.string() + " is not a directory");
    }
    o.publish_dir = dir;
  }

  // A configuration error ends the run here, with status 2 (keyhold::cli::run).
  const app::Config& config = c.app().config();
  std::filesystem::path lock_path = vm.count("lock-file") ? std::filesystem::absolute(vm["lock-file"].as<std::string>())
                                                          : std::filesystem::path(config.store.path.string() + ".maintain.lock");
  RunLock lock(lock_path);
  if (!lock.held()) {
    std::cerr << "keyhold: maintain: " << lock.error() << "\n";
    return kExitFailed;
  }

  Report report(c, o.quiet);
  report.json()["now"] = format_utc(o.now);
  maintain_crls(c, report, o);
  maintain_krls(c, report, o);
  maintain_keks(c, report, o);
  maintain_certificates(c, report, o);

  if (c.json()) print_json(c, report.json());
  if (report.failures() > 0) {
    std::cerr << "keyhold: maintain: " << plural(static_cast<std::size_t>(report.failures()), "item", "items")
              << " failed; the others were done\n";
    return kExitFailed;
  }
  return kExitOk;
}

}  // namespace

std::vector<Command> maintain_commands() {
  return {
      {{"maintain"},
       "maintain [--now TIME] [--expiring-within 30d] [--publish-dir DIR] [--lock-file FILE] [--quiet]",
       "publish due CRLs and KRLs, rotate due KEKs, mark expired and report expiring certificates",
       maintain},
  };
}

}  // namespace keyhold::cli
