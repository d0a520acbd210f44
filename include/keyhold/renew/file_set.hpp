#pragma once
// Installing a renewed set of files (certificate, chain, key) so that a
// crash leaves the old set or the new one, never a mix that stays
// (docs/renewal.md, "What a crash leaves behind"):
//
//  1. each new file is written to a temporary file beside its target
//     (".NAME.keyhold-new"), with the target's mode and owner (new files:
//     the mode given), and fsynced; the directories are fsynced;
//  2. `check` is called with the temporary files (the certificate must
//     match the key) -- nothing is renamed unless it passes;
//  3. a journal listing every (temporary, target) pair is written beside
//     the certificate (".NAME.keyhold-journal", itself via a fsynced
//     temporary file and a rename);
//  4. each target is hard-linked as NAME.prev (the previous version) and the
//     temporary file is renamed over it; the directories are fsynced;
//  5. the journal is removed.
//
// A crash before 3 leaves the old set (and temporary files, which the next
// run removes); a crash after 3 leaves a journal that the next run rolls
// forward before anything else (recover), completing the new set.
//
// Not thread-safe per entry: keyhold renew holds its lock file throughout.

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "keyhold/core/secret.hpp"

namespace keyhold::renew {

// Test-only fault hook: KEYHOLD_RENEW_CRASH_AT=<step> makes the process kill
// itself with SIGKILL at that step: "before-temp-write" (the new certificate
// is in memory, nothing written), "after-temp-write" (temporary files
// complete, no journal), "between-renames" (the journal written and the
// first file renamed, the others not).
void crash_point(std::string_view step);

struct NewFile {
  std::filesystem::path target;
  SecretBytes content;
  unsigned mode_if_new = 0644;  // when the target does not exist yet; else its own mode is kept
};

std::filesystem::path temporary_path(const std::filesystem::path& target);  // DIR/.NAME.keyhold-new
std::filesystem::path previous_path(const std::filesystem::path& target);   // DIR/NAME.prev
std::filesystem::path journal_path(const std::filesystem::path& cert);      // DIR/.NAME.keyhold-journal

struct Recovery {
  bool pending = false;                     // a journal was there
  bool completed = false;                   // ... and the set was rolled forward now
  std::vector<std::filesystem::path> files;  // the targets it names
};

// At the start of an entry's run: completes an installation that a crash
// interrupted (its journal exists), or else removes temporary files a crash
// left behind for `targets`. With dry_run, only reports. Throws
// FailedPrecondition when the journal is unreadable or names a file that is
// neither in its temporary nor its final place (it is then left as it is).
Recovery recover(const std::filesystem::path& journal, const std::vector<std::filesystem::path>& targets, bool dry_run);

// Steps 1-5 above. Throws keyhold::Error (FailedPrecondition) when a file
// cannot be written or the check fails; then the temporary files are
// removed and no target has changed. A target that is a symbolic link or not
// a regular file is refused before anything is written.
void install(const std::filesystem::path& journal, std::vector<NewFile> files,
             const std::function<void(const std::vector<std::filesystem::path>& temporaries)>& check);

}  // namespace keyhold::renew
