#pragma once
// One `keyhold renew` pass over the entries of a renewal file: for each, roll
// forward an interrupted installation, decide whether it is due, obtain the
// new certificate (locally from the CA host, or remotely from keyhold serve
// over mTLS), install the files crash-safely and run the deploy hook. An
// entry's failure never stops the others.
//
// Local mode needs the CA itself, which lives above this module: the caller
// (the command line, over app::Application) implements LocalAuthority.

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "keyhold/renew/renewal.hpp"

namespace keyhold::renew {

struct X509Issued {
  std::string certificate_pem;
  std::string chain_pem;                // issuers, PEM, possibly empty
  std::optional<std::string> key_uri;   // when the subject key was made in the token
};

// The CA host's own CAs, for local entries. Errors are keyhold::Error.
class LocalAuthority {
 public:
  virtual ~LocalAuthority() = default;
  // Issues under entry.ca and entry.profile, for entry.names (DNS names and IP
  // addresses) and entry.days. csr: the subject key's request (PEM); nullopt
  // when entry.key_in_token (the CA makes the subject key in the token).
  virtual X509Issued issue(const Entry& entry, const std::optional<std::string>& csr) = 0;
  // Signs public_key_line (KEY.pub) as a user or host certificate after
  // entry.kind, with entry.key_id (default: the entry name), entry.names as
  // principals and entry.validity. Returns the certificate line.
  virtual std::string sign(const Entry& entry, const std::string& public_key_line) = 0;
};

struct RunOptions {
  TimePoint now = Clock::now();  // --now: when to decide for; never changes what is signed
  bool dry_run = false;
  bool force = false;
  std::string machine;  // machine_identity(): feeds the jitter
  // Built on first use (only when a local entry is due); may throw.
  std::function<LocalAuthority&()> local;
};

enum class Status {
  NotDue,       // nothing to do (an interrupted installation may have been completed)
  Due,          // --dry-run: would renew
  Renewed,
  Failed,
};

struct EntryResult {
  std::string name;
  Status status = Status::NotDue;
  bool changed = false;      // files were replaced (renewal or roll-forward)
  bool hook_failed = false;  // the deploy hook ran and failed
  std::string line;          // "web: renewed: ...", one line, no newline
  bool failure() const noexcept { return status == Status::Failed || hook_failed; }
};

EntryResult renew_entry(const Entry& entry, const RunOptions& options);

}  // namespace keyhold::renew
