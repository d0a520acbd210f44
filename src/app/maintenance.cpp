#include "keyhold/app/maintenance.hpp"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <vector>

#include "keyhold/core/duration.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/core/pending_file.hpp"

namespace keyhold::app {
namespace {

using Clock = std::chrono::system_clock;

// What an item does and to what: "kek.rotate" on "kek:payments".
struct Target {
  std::string operation;
  std::string resource;  // empty when the item is a whole step (listing the CAs)
};

// What a run says: each line goes to the caller's on_line as it comes, and
// into the JSON report.
class Report {
 public:
  explicit Report(const MaintenanceOptions& options) : options_(options) {}

  void unchanged(const std::string& item, const std::string& text) { emit({MaintenanceLine::Kind::Unchanged, item, text, "", "", ""}); }
  void changed(const std::string& item, const std::string& text, const std::string& operation,
               const std::string& resource) {
    ++result_.changed;
    emit({MaintenanceLine::Kind::Changed, item, text, operation, resource, ""});
  }
  void notice(const std::string& item, const std::string& text) {
    ++result_.notices;
    emit({MaintenanceLine::Kind::Notice, item, text, "", "", ""});
  }
  void failure(const std::string& item, std::string message, nlohmann::json* entry, const Target& target,
               std::string error_code) {
    ++result_.failures;
    for (char& ch : message) {
      if (ch == '\n' || ch == '\r') ch = ' ';  // one line per item, whatever a library said
    }
    json()["failures"].push_back({{"item", item}, {"error", message}});
    if (entry != nullptr) {
      (*entry)["outcome"] = "failed";
      (*entry)["error"] = message;
    }
    emit({MaintenanceLine::Kind::Failed, item, item + ": failed: " + message, target.operation, target.resource,
          std::move(error_code)});
  }
  nlohmann::json& json() { return result_.report; }
  MaintenanceResult take() { return std::move(result_); }

 private:
  void emit(const MaintenanceLine& line) {
    if (options_.on_line) options_.on_line(line);
  }

  const MaintenanceOptions& options_;
  MaintenanceResult result_{{{"crls", nlohmann::json::array()},
                             {"krls", nlohmann::json::array()},
                             {"keks", nlohmann::json::array()},
                             {"rotated_keks", nlohmann::json::array()},
                             {"expired_certificates", nlohmann::json::array()},
                             {"expiring_certificates", nlohmann::json::array()},
                             {"expiring_ca_certificates", nlohmann::json::array()},
                             {"failures", nlohmann::json::array()}}};
};

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


// Runs one item; a keyhold::Error (or any exception) becomes its failure line.
// target: what the item does, for the failure's line (the audit record of keyhold serve).
void attempt(Report& report, const std::string& item, nlohmann::json* entry, const Target& target,
             const std::function<void()>& work) {
  try {
    work();
  } catch (const Error& e) {
    report.failure(item, e.what(), entry, target, std::string(to_string(e.code())));
  } catch (const std::exception& e) {
    report.failure(item, e.what(), entry, target, std::string(to_string(ErrorCode::Internal)));
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


void maintain_crls(Application& app, Report& report, const MaintenanceOptions& o) {
  pki::Authority* authority = nullptr;
  std::vector<pki::CaDetails> cas;
  attempt(report, "CAs", nullptr, {"crl.publish", ""}, [&] {
    authority = &app.authority();
    cas = authority->list();
  });
  if (authority == nullptr) return;
  for (const pki::CaDetails& ca : cas) {
    const std::string& name = ca.ca.name;
    std::vector<int> versions;
    attempt(report, "CRLs of CA '" + name + "'", nullptr, {"crl.publish", "ca:" + name}, [&] { versions = authority->crl_versions(name, o.now); });
    int current = versions.empty() ? 0 : versions.back();
    for (int version : versions) {
      std::string item = "CRL of CA '" + name + "' v" + std::to_string(version);
      nlohmann::json entry = {{"ca", name}, {"version", version}};
      attempt(report, item, &entry, {"crl.publish", "ca:" + name}, [&] {
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
        if (crl.published) {
          report.changed(item, item + ": " + text, "crl.publish", "ca:" + name);
        } else {
          report.unchanged(item, item + ": " + text);
        }
      });
      report.json()["crls"].push_back(entry);
    }
  }
}

void maintain_krls(Application& app, Report& report, const MaintenanceOptions& o) {
  ssh::Authority* authority = nullptr;
  std::vector<ssh::CaDetails> cas;
  attempt(report, "SSH CAs", nullptr, {"krl.publish", ""}, [&] {
    authority = &app.ssh_authority();
    cas = authority->list_cas();
  });
  if (authority == nullptr) return;
  for (const ssh::CaDetails& ca : cas) {
    const std::string& name = ca.ca.name;
    std::string item = "KRL of SSH CA '" + name + "'";
    nlohmann::json entry = {{"ca", name}};
    attempt(report, item, &entry, {"krl.publish", "ssh-ca:" + name}, [&] {
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
      if (krl.published) {
        report.changed(item, item + ": " + text, "krl.publish", "ssh-ca:" + name);
      } else {
        report.unchanged(item, item + ": " + text);
      }
    });
    report.json()["krls"].push_back(entry);
  }
}

// Due as envelope::Service judges it, but at o.now: by count, or by age
// once the primary version is as old as the rotation period.
std::string kek_due_reason(const envelope::KekInfo& k, const MaintenanceOptions& o) {
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

void maintain_keks(Application& app, Report& report, const MaintenanceOptions& o) {
  envelope::Service* keks = nullptr;
  std::vector<envelope::KekInfo> all;
  attempt(report, "KEKs", nullptr, {"kek.rotate", ""}, [&] {
    keks = &app.envelope();
    all = keks->list();
  });
  if (keks == nullptr) return;
  for (const envelope::KekInfo& k : all) {
    const std::string& name = k.kek.name;
    std::string item = "KEK '" + name + "'";
    nlohmann::json entry = {{"kek", name}};
    attempt(report, item, &entry, {"kek.rotate", "kek:" + name}, [&] {
      std::string reason = kek_due_reason(k, o);
      if (reason.empty()) {
        entry["outcome"] = "not due";
        entry["primary_version"] = k.primary_version;
        if (k.next_rotation_due) entry["next_rotation"] = *k.next_rotation_due;
        report.unchanged(item, item + ": not due (" +
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
      report.changed(item, "rotated KEK '" + name + "' to version " + std::to_string(rotated.primary_version) + ": " + reason,
                     "kek.rotate", "kek:" + name);
    });
    report.json()["keks"].push_back(entry);
  }
}

std::string subject_of(const store::CertificateRecord& r) {
  if (!r.subject.empty()) return r.subject;
  return r.sans.empty() ? "no subject" : r.sans.front();
}

void maintain_certificates(Application& app, Report& report, const MaintenanceOptions& o) {
  pki::Authority* authority = nullptr;
  // Marked as the clock says, even with --now later than the clock: a mark
  // is a record of the store, and a rehearsal must not make it false.
  Clock::time_point clock = Clock::now();
  Clock::time_point mark_at = std::min(o.now, clock);
  attempt(report, "expired certificates", nullptr, {"certificate.mark_expired", ""}, [&] {
    authority = &app.authority();
    for (const pki::ExpiredCertificate& e : authority->mark_expired(mark_at)) {
      report.json()["expired_certificates"].push_back({{"ca", e.ca},
                                                       {"ca_version", e.ca_version},
                                                       {"serial", e.record.serial},
                                                       {"subject", e.record.subject},
                                                       {"profile", e.record.profile},
                                                       {"not_after", e.record.not_after},
                                                       {"marked", true}});
      report.changed("certificate " + e.record.serial, "certificate " + e.record.serial + " of CA '" + e.ca + "' (" + subject_of(e.record) +
                  "): expired at " + e.record.not_after + ", marked expired",
                     "certificate.mark_expired", "ca:" + e.ca);
    }
  });
  if (authority == nullptr) return;

  std::vector<pki::CaDetails> cas;
  attempt(report, "CAs", nullptr, {"certificate.report", ""}, [&] { cas = authority->list(); });
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
        report.notice(item, item + ": expired at " + current->not_after + " (keyhold ca rotate " + name + ")");
      } else if (end && *end < horizon) {
        report.json()["expiring_ca_certificates"].push_back(
            {{"ca", name}, {"version", current->version}, {"not_after", current->not_after}, {"expired", false}});
        report.notice(item, item + ": expires in " + span_text(std::chrono::duration_cast<std::chrono::seconds>(*end - o.now)) +
                    " (" + current->not_after + "; keyhold ca rotate " + name + ")");
      }
    }
    if (o.now > clock) {
      // Expired at --now but not by the clock: reported, never marked.
      attempt(report, "expired certificates of CA '" + name + "'", nullptr, {"certificate.report", "ca:" + name}, [&] {
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
          report.notice("certificate " + r.serial, "certificate " + r.serial + " of CA '" + name + "' (" + subject_of(r) + "): expired at " +
                      r.not_after + " as of --now, not marked (the clock says it has not)");
        }
      });
    }
    attempt(report, "expiring certificates of CA '" + name + "'", nullptr, {"certificate.report", "ca:" + name}, [&] {
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
        report.notice("certificate " + r.serial, "certificate " + r.serial + " of CA '" + name + "' (" + subject_of(r) + "): expires in " + in +
                    " (" + r.not_after + ")");
      }
    });
  }
}

}  // namespace

MaintenanceResult run_maintenance(Application& app, const MaintenanceOptions& options) {
  Report report(options);
  report.json()["now"] = format_utc(options.now);
  maintain_crls(app, report, options);
  maintain_krls(app, report, options);
  maintain_keks(app, report, options);
  maintain_certificates(app, report, options);
  return report.take();
}

std::filesystem::path maintenance_lock_file(const Config& config) {
  return config.store.path.string() + ".maintain.lock";
}

}  // namespace keyhold::app
