#pragma once
// The CA host's periodic work (docs/maintenance.md), shared by `keyhold
// maintain` (cron, a systemd timer) and `keyhold serve` (its own schedule):
// publishes a fresh CRL for every CA version that needs one and a fresh KRL
// for every SSH CA when due, rotates every KEK that is due, marks expired
// certificates in the store, and reports the certificates of keyhold's CAs
// that expire soon. A failing item does not stop the others.

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "keyhold/app/application.hpp"

namespace keyhold::app {

constexpr std::chrono::seconds kDefaultExpiringWithin = std::chrono::days(30);

// One line of a run's report, as a person reads it ("KEK 'payments': not due (...)").
struct MaintenanceLine {
  enum class Kind {
    Unchanged,  // not due: nothing was done
    Changed,    // something was signed, rotated or marked (operation and resource say what)
    Notice,     // a report: a certificate expires soon, or has expired
    Failed,     // the item failed; text is its one-line message
  };
  Kind kind = Kind::Unchanged;
  std::string item;       // "CRL of CA 'issuing' v1", "KEK 'payments'", ...
  std::string text;       // the whole line, one line (no newline)
  // Changed and Failed: what the item does ("crl.publish", "krl.publish",
  // "kek.rotate", "certificate.mark_expired", "certificate.report") and to
  // what ("ca:issuing", "ssh-ca:users", "kek:payments"; empty for a whole
  // step, such as listing the CAs).
  std::string operation;
  std::string resource;
  std::string error_code;  // Failed: to_string(ErrorCode) of the failure
};

struct MaintenanceOptions {
  // Acts as if it were this time (keyhold maintain --now): what is due and
  // what expires soon. Never changes what is signed, and marks a certificate
  // expired only once the real clock says so.
  std::chrono::system_clock::time_point now = std::chrono::system_clock::now();
  std::chrono::seconds expiring_within = kDefaultExpiringWithin;
  // Also write the current CRLs (NAME.crl, NAME.vN.crl) and KRLs (NAME.krl)
  // there, each only when its content changed.
  std::optional<std::filesystem::path> publish_dir;
  // Called for each line as the run goes (may be empty).
  std::function<void(const MaintenanceLine&)> on_line;
};

struct MaintenanceResult {
  nlohmann::json report;      // keyhold maintain --json (docs/maintenance.md)
  std::size_t changed = 0;    // Changed lines
  std::size_t notices = 0;    // Notice lines
  std::size_t failures = 0;   // Failed lines
};

MaintenanceResult run_maintenance(Application& app, const MaintenanceOptions& options);

// Where a maintenance run takes its lock (keyhold::FileLock) unless told
// otherwise: beside the store, so that every `keyhold maintain` and
// `keyhold serve` of one store share it.
std::filesystem::path maintenance_lock_file(const Config& config);

}  // namespace keyhold::app
