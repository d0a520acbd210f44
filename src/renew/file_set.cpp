#include "keyhold/renew/file_set.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "keyhold/core/error.hpp"

namespace keyhold::renew {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kJournalHeader = "keyhold renew journal 1";
constexpr std::string_view kJournalEnd = "end";

[[noreturn]] void fail(const std::string& what, int error) {
  throw Error(ErrorCode::FailedPrecondition, what + ": " + std::strerror(error));
}

fs::path directory_of(const fs::path& path) { return path.has_parent_path() ? path.parent_path() : fs::path("."); }

void sync_directory(const fs::path& directory) {
  int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail("cannot open the directory " + directory.string(), errno);
  int rc = ::fsync(fd);
  int error = errno;
  ::close(fd);
  if (rc != 0) fail("cannot sync the directory " + directory.string(), error);
}

void sync_directories(const std::vector<fs::path>& paths) {
  std::set<fs::path> directories;
  for (const fs::path& p : paths) directories.insert(directory_of(p));
  for (const fs::path& d : directories) sync_directory(d);
}

bool write_all(int fd, const std::uint8_t* data, std::size_t size) {
  std::size_t written = 0;
  while (written < size) {
    ssize_t n = ::write(fd, data + written, size - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    written += static_cast<std::size_t>(n);
  }
  return true;
}

bool exists_no_follow(const fs::path& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0;
}

// Removes a file if it is there; an error other than "not there" is reported.
void remove_if_there(const fs::path& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) fail("cannot remove " + path.string(), errno);
}

// Writes content to path (which must not exist), with mode and owner, and fsyncs it.
void write_new_file(const fs::path& path, const SecretBytes& content, mode_t mode, std::optional<std::pair<uid_t, gid_t>> owner) {
  // 0600 until the content is complete and the owner set: a key is never readable by others on the way.
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) fail("cannot write " + path.string(), errno);
  bool ok = write_all(fd, content.data(), content.size());
  int error = errno;
  std::string what = "cannot write " + path.string();
  if (ok && owner && ::fchown(fd, owner->first, owner->second) != 0) {
    ok = false;
    error = errno;
    what = "cannot give " + path.string() + " the owner of the file it replaces (uid " + std::to_string(owner->first) +
           ", gid " + std::to_string(owner->second) + ")";
  }
  if (ok && ::fchmod(fd, mode) != 0) {
    ok = false;
    error = errno;
  }
  if (ok && ::fsync(fd) != 0) {
    ok = false;
    error = errno;
  }
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    fail(what, error);
  }
}

struct JournalPair {
  fs::path temporary, target;
};

std::vector<JournalPair> read_journal(const fs::path& journal) {
  std::ifstream in(journal);
  if (!in) throw Error(ErrorCode::FailedPrecondition, "cannot read the journal " + journal.string());
  std::string line;
  std::vector<JournalPair> pairs;
  bool header = false, end = false;
  while (std::getline(in, line)) {
    if (!header) {
      if (line != kJournalHeader) break;
      header = true;
      continue;
    }
    if (line == kJournalEnd) {
      end = true;
      break;
    }
    std::size_t tab = line.find('\t');
    if (tab == std::string::npos) break;
    pairs.push_back({line.substr(0, tab), line.substr(tab + 1)});
  }
  if (!header || !end || pairs.empty()) {
    throw Error(ErrorCode::FailedPrecondition, "the journal " + journal.string() +
                                                   " is not one keyhold renew wrote; look at it and remove it by hand");
  }
  return pairs;
}

// Keeps the current target as NAME.prev (a hard link: the target never goes
// missing), then renames the temporary file over the target.
void replace(const JournalPair& pair) {
  if (exists_no_follow(pair.target)) {
    fs::path previous = previous_path(pair.target);
    remove_if_there(previous);
    if (::link(pair.target.c_str(), previous.c_str()) != 0) {
      // Some file systems and fs.protected_hardlinks refuse links: a copy by rename then.
      if (errno != EPERM && errno != EXDEV && errno != ENOTSUP && errno != EMLINK) {
        fail("cannot keep " + pair.target.string() + " as " + previous.string(), errno);
      }
      if (::rename(pair.target.c_str(), previous.c_str()) != 0) {
        fail("cannot keep " + pair.target.string() + " as " + previous.string(), errno);
      }
    }
  }
  if (::rename(pair.temporary.c_str(), pair.target.c_str()) != 0) {
    fail("cannot rename " + pair.temporary.string() + " to " + pair.target.string(), errno);
  }
}

}  // namespace

void crash_point(std::string_view step) {
  const char* at = std::getenv("KEYHOLD_RENEW_CRASH_AT");
  if (at != nullptr && step == at) ::raise(SIGKILL);
}

fs::path temporary_path(const fs::path& target) {
  return directory_of(target) / ("." + target.filename().string() + ".keyhold-new");
}

fs::path previous_path(const fs::path& target) { return fs::path(target.string() + ".prev"); }

fs::path journal_path(const fs::path& cert) {
  return directory_of(cert) / ("." + cert.filename().string() + ".keyhold-journal");
}

Recovery recover(const fs::path& journal, const std::vector<fs::path>& targets, bool dry_run) {
  Recovery recovery;
  if (!exists_no_follow(journal)) {
    if (!dry_run) {
      // Temporary files of an installation that never reached its journal: the old set is in place.
      for (const fs::path& target : targets) remove_if_there(temporary_path(target));
      remove_if_there(fs::path(journal.string() + ".new"));
    }
    return recovery;
  }
  recovery.pending = true;
  std::vector<JournalPair> pairs = read_journal(journal);
  for (const JournalPair& pair : pairs) recovery.files.push_back(pair.target);
  for (const JournalPair& pair : pairs) {
    if (!exists_no_follow(pair.temporary) && !exists_no_follow(pair.target)) {
      throw Error(ErrorCode::FailedPrecondition, "the journal " + journal.string() + " names " + pair.target.string() +
                                                     ", which is neither there nor in " + pair.temporary.string() +
                                                     "; look at the files and remove the journal by hand");
    }
  }
  if (dry_run) return recovery;
  std::vector<fs::path> touched;
  for (const JournalPair& pair : pairs) {
    // Renamed already when its temporary file is gone.
    if (exists_no_follow(pair.temporary)) replace(pair);
    touched.push_back(pair.target);
  }
  sync_directories(touched);
  remove_if_there(journal);
  sync_directory(directory_of(journal));
  recovery.completed = true;
  return recovery;
}

void install(const fs::path& journal, std::vector<NewFile> files,
             const std::function<void(const std::vector<fs::path>& temporaries)>& check) {
  // Refused before anything is written: what would be replaced must be a plain file.
  std::vector<std::optional<struct stat>> existing;
  for (const NewFile& file : files) {
    struct stat st{};
    if (::lstat(file.target.c_str(), &st) == 0) {
      if (S_ISLNK(st.st_mode)) {
        throw Error(ErrorCode::FailedPrecondition, file.target.string() +
                                                       " is a symbolic link: name the file it points to in the renewal file");
      }
      if (!S_ISREG(st.st_mode)) throw Error(ErrorCode::FailedPrecondition, file.target.string() + " is not a regular file");
      existing.emplace_back(st);
    } else if (errno == ENOENT) {
      existing.emplace_back(std::nullopt);
    } else {
      fail("cannot examine " + file.target.string(), errno);
    }
  }

  crash_point("before-temp-write");
  std::vector<fs::path> temporaries;
  struct Cleanup {
    std::vector<fs::path>* paths;
    bool armed = true;
    ~Cleanup() {
      if (!armed) return;
      for (const fs::path& p : *paths) ::unlink(p.c_str());
    }
  } cleanup{&temporaries};
  std::vector<fs::path> targets;
  for (std::size_t i = 0; i < files.size(); ++i) {
    const NewFile& file = files[i];
    fs::path temporary = temporary_path(file.target);
    remove_if_there(temporary);
    std::optional<std::pair<uid_t, gid_t>> owner;
    mode_t mode = file.mode_if_new;
    if (existing[i]) {
      owner.emplace(existing[i]->st_uid, existing[i]->st_gid);
      mode = existing[i]->st_mode & 07777;
    }
    write_new_file(temporary, file.content, mode, owner);
    temporaries.push_back(temporary);
    targets.push_back(file.target);
  }
  sync_directories(temporaries);
  check(temporaries);
  crash_point("after-temp-write");

  // The journal: after every temporary file is complete, before the first rename.
  std::string text = std::string(kJournalHeader) + "\n";
  for (std::size_t i = 0; i < files.size(); ++i) text += temporaries[i].string() + "\t" + targets[i].string() + "\n";
  text += std::string(kJournalEnd) + "\n";
  fs::path journal_temporary = journal.string() + ".new";
  remove_if_there(journal_temporary);
  SecretBytes journal_content(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  write_new_file(journal_temporary, journal_content, 0600, std::nullopt);
  if (::rename(journal_temporary.c_str(), journal.c_str()) != 0) {
    int error = errno;
    ::unlink(journal_temporary.c_str());
    fail("cannot write the journal " + journal.string(), error);
  }
  sync_directory(directory_of(journal));
  // From here on the journal owns the temporary files: a failure leaves them for the next run to roll forward.
  cleanup.armed = false;

  try {
    for (std::size_t i = 0; i < files.size(); ++i) {
      replace({temporaries[i], targets[i]});
      if (i == 0) crash_point("between-renames");
    }
    sync_directories(targets);
  } catch (const Error& e) {
    throw Error(e.code(), std::string(e.what()) + "; the journal " + journal.string() +
                              " stays, and the next keyhold renew completes the renewal before anything else");
  }
  remove_if_there(journal);
  sync_directory(directory_of(journal));
}

}  // namespace keyhold::renew
