#include "keyhold/core/text.hpp"
#include "keyhold/audit/log.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"

namespace keyhold::audit {
namespace {

using TimePoint = std::chrono::system_clock::time_point;
using Json = nlohmann::json;

constexpr std::string_view kZeroHash = "0000000000000000000000000000000000000000000000000000000000000000";
constexpr std::string_view kHashField = ",\"hash\":\"";
constexpr std::size_t kHashHexSize = 64;
// ,"hash":"<64 hex>"}
constexpr std::size_t kHashTailSize = kHashField.size() + kHashHexSize + 2;
constexpr std::string_view kCheckpointDomain = "keyhold-audit-checkpoint\n";
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
// After a signer failure, automatic checkpoints wait this long before trying again,
// so that a token outage does not add a failing C_Sign to every append.
constexpr std::chrono::seconds kCheckpointRetry{1};

std::string errno_text(int error) {
  char buffer[256];
  // GNU strerror_r (g++ defines _GNU_SOURCE): returns the message, thread-safe.
  return ::strerror_r(error, buffer, sizeof buffer);
}

// ---- UTF-8 and JSON strings ------------------------------------------------


// Code points written as \uxxxx although JSON allows them raw: controls, and
// the line separators and bidi controls that mislead line tools and terminals.
bool escaped(char32_t cp) {
  return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) || cp == 0x200E || cp == 0x200F ||
         cp == 0x2028 || cp == 0x2029 || (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

// s with every byte that is not part of well-formed UTF-8 replaced by U+FFFD.
std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    std::size_t n = utf8_sequence(s, i, cp);
    if (n == 0) {
      out += kReplacement;
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

// Appends s as a JSON string (RFC 8259 section 7) by the rules in log.hpp.
void append_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (std::size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    std::size_t n = utf8_sequence(s, i, cp);
    if (n == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    switch (cp) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (escaped(cp)) {
          char buffer[16];
          std::snprintf(buffer, sizeof buffer, "\\u%04x", static_cast<unsigned>(cp));
          out += buffer;
        } else {
          out.append(s.substr(i, n));
        }
    }
    i += n;
  }
  out.push_back('"');
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out += ",\"";
  out += name;
  out += "\":";
  append_string(out, value);
}

// The context as written: keys and values made valid UTF-8, keys that then
// collide made unique with "~2", "~3", ... (a JSON object must not repeat a key).
std::map<std::string, std::string> written_context(const std::map<std::string, std::string>& context) {
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : context) {
    std::string name = valid_utf8(key);
    if (out.contains(name)) {
      for (int n = 2;; ++n) {
        std::string candidate = name + "~" + std::to_string(n);
        if (!out.contains(candidate)) {
          name = std::move(candidate);
          break;
        }
      }
    }
    out.emplace(std::move(name), valid_utf8(value));
  }
  return out;
}

// ---- time, hashes, base64 ----------------------------------------------------

// RFC 3339, UTC, six fraction digits: "2030-01-02T03:04:05.000006Z".
std::string format_time(TimePoint t) {
  auto micros = std::chrono::floor<std::chrono::microseconds>(t.time_since_epoch());
  auto seconds = std::chrono::floor<std::chrono::seconds>(micros);
  std::string text = format_utc(TimePoint(seconds));
  char fraction[32];
  std::snprintf(fraction, sizeof fraction, ".%06lld", static_cast<long long>((micros - seconds).count()));
  text.insert(text.size() - 1, fraction);
  return text;
}

// Reads exactly what format_time writes.
std::optional<TimePoint> parse_time(std::string_view text) {
  if (text.size() != 27 || text[19] != '.' || text[26] != 'Z') return std::nullopt;
  long long micros = 0;
  for (std::size_t i = 20; i < 26; ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    micros = micros * 10 + (text[i] - '0');
  }
  auto seconds = parse_utc(std::string(text.substr(0, 19)) + "Z");
  if (!seconds) return std::nullopt;
  TimePoint t = *seconds + std::chrono::microseconds(micros);
  if (format_time(t) != text) return std::nullopt;  // e.g. February 30th, normalised by timegm
  return t;
}

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr) != 1) {
    throw Error(ErrorCode::Internal, "SHA-256 failed");
  }
  return to_hex({digest, length});
}

bool is_hash(std::string_view text) {
  return text.size() == kHashHexSize &&
         std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string key_id(const crypto::PublicKey& key) {
  std::vector<std::uint8_t> der = key.der();
  return "spki-sha256:" + sha256_hex({reinterpret_cast<const char*>(der.data()), der.size()});
}

std::string checkpoint_message(std::uint64_t seq, std::string_view time, std::string_view prev) {
  std::string message(kCheckpointDomain);
  message += std::to_string(seq);
  message += '\n';
  message += time;
  message += '\n';
  message += prev;
  message += '\n';
  return message;
}

std::span<const std::uint8_t> bytes(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

// ---- records -------------------------------------------------------------------

// The bytes the hash covers (everything before ,"hash":).
std::string event_prefix(std::uint64_t seq, std::string_view time, const Event& e, std::string_view prev) {
  std::string out;
  out.reserve(320);
  out += "{\"seq\":";
  out += std::to_string(seq);
  append_field(out, "time", time);
  out += ",\"type\":\"event\"";
  append_field(out, "request_id", e.request_id);
  append_field(out, "identity", e.identity);
  append_field(out, "client_address", e.client_address);
  append_field(out, "operation", e.operation);
  append_field(out, "resource", e.resource);
  append_field(out, "outcome", e.outcome);
  append_field(out, "error_code", e.error_code);
  out += ",\"latency_us\":";
  out += std::to_string(e.latency.count());
  out += ",\"context\":{";
  bool first = true;
  for (const auto& [key, value] : written_context(e.context)) {
    if (!first) out += ',';
    first = false;
    append_string(out, key);
    out += ':';
    append_string(out, value);
  }
  out += '}';
  append_field(out, "prev", prev);
  return out;
}

std::string checkpoint_prefix(std::uint64_t seq, std::string_view time, std::string_view key,
                              std::string_view algorithm, std::string_view signature, std::string_view prev) {
  std::string out = "{\"seq\":" + std::to_string(seq);
  append_field(out, "time", time);
  out += ",\"type\":\"checkpoint\"";
  append_field(out, "key", key);
  append_field(out, "algorithm", algorithm);
  append_field(out, "signature", signature);
  append_field(out, "prev", prev);
  return out;
}

// The whole line, "\n" included; hash receives the record's hash.
std::string finish_line(std::string prefix, std::string& hash) {
  hash = sha256_hex(prefix);
  prefix += kHashField;
  prefix += hash;
  prefix += "\"}\n";
  return prefix;
}

bool valid_outcome(std::string_view outcome) {
  return outcome == "allowed" || outcome == "denied" || outcome == "failed";
}

struct Record {
  std::uint64_t seq = 0;
  std::string time;
  bool checkpoint = false;
  Event event;
  std::string key, algorithm, signature;  // checkpoints; signature in base64
  std::string prev, hash;
};

// One line (without its "\n"): its hash first, then that it is a record in
// exactly the form keyhold writes. nullopt and a problem when not.
std::optional<Record> parse_record(std::string_view line, std::string& problem) {
  if (line.empty()) {
    problem = "empty line";
    return std::nullopt;
  }
  if (line.size() < kHashTailSize + 2 || line.front() != '{' || !line.ends_with("\"}") ||
      line.substr(line.size() - kHashTailSize, kHashField.size()) != kHashField) {
    problem = "not an audit record (it does not end with its \"hash\")";
    return std::nullopt;
  }
  std::string_view prefix = line.substr(0, line.size() - kHashTailSize);
  std::string_view hash = line.substr(line.size() - kHashHexSize - 2, kHashHexSize);
  if (!is_hash(hash)) {
    problem = "its \"hash\" is not 64 lower-case hex digits";
    return std::nullopt;
  }
  if (sha256_hex(prefix) != hash) {
    problem = "hash mismatch: the record was changed";
    return std::nullopt;
  }
  Json j = Json::parse(std::string(prefix) + "}", nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    problem = "not valid JSON";
    return std::nullopt;
  }
  Record r;
  r.hash = std::string(hash);
  auto text = [&](const char* name, std::string& out) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string()) return false;
    out = it->get<std::string>();
    return true;
  };
  auto malformed = [&](std::string what) {
    problem = "malformed record: " + what;
    return std::nullopt;
  };
  auto seq = j.find("seq");
  if (seq == j.end() || !seq->is_number_unsigned() || seq->get<std::uint64_t>() == 0) return malformed("bad \"seq\"");
  r.seq = seq->get<std::uint64_t>();
  if (!text("time", r.time) || !parse_time(r.time)) return malformed("bad \"time\"");
  if (!text("prev", r.prev) || !is_hash(r.prev)) return malformed("bad \"prev\"");
  std::string type;
  text("type", type);
  std::string canonical;
  if (type == "event") {
    Event& e = r.event;
    if (!text("request_id", e.request_id) || !text("identity", e.identity) ||
        !text("client_address", e.client_address) || !text("operation", e.operation) ||
        !text("resource", e.resource) || !text("outcome", e.outcome) || !text("error_code", e.error_code)) {
      return malformed("an event field is missing or not a string");
    }
    if (!valid_outcome(e.outcome)) return malformed("unknown \"outcome\"");
    auto latency = j.find("latency_us");
    if (latency == j.end() || !latency->is_number_integer()) return malformed("bad \"latency_us\"");
    e.latency = std::chrono::microseconds(latency->get<std::int64_t>());
    auto context = j.find("context");
    if (context == j.end() || !context->is_object()) return malformed("bad \"context\"");
    for (const auto& [key, value] : context->items()) {
      if (!value.is_string()) return malformed("a \"context\" value is not a string");
      e.context.emplace(key, value.get<std::string>());
    }
    canonical = event_prefix(r.seq, r.time, e, r.prev);
  } else if (type == "checkpoint") {
    r.checkpoint = true;
    if (!text("key", r.key) || !text("algorithm", r.algorithm) || !text("signature", r.signature)) {
      return malformed("a checkpoint field is missing or not a string");
    }
    canonical = checkpoint_prefix(r.seq, r.time, r.key, r.algorithm, r.signature, r.prev);
  } else {
    return malformed("bad \"type\"");
  }
  if (canonical != prefix) {
    problem = "not in canonical form (fields, their order, spacing or escapes differ from what keyhold writes)";
    return std::nullopt;
  }
  return r;
}

// Empty when the checkpoint's key and signature hold, else what is wrong.
std::string check_checkpoint(const Record& r, const crypto::PublicKey& key, const std::string& expected_key_id) {
  if (r.key != expected_key_id) return "checkpoint names key " + r.key + ", not the audit key " + expected_key_id;
  auto algorithm = crypto::parse_signature_algorithm(r.algorithm);
  if (!algorithm) return "checkpoint has an unknown signature algorithm '" + r.algorithm + "'";
  if (key.type() && !crypto::can_sign_with(*key.type(), *algorithm)) {
    return "checkpoint algorithm " + r.algorithm + " does not fit the audit key";
  }
  auto signature = from_base64(r.signature);
  if (!signature) return "checkpoint signature is not base64";
  if (!key.verify(*algorithm, bytes(checkpoint_message(r.seq, r.time, r.prev)), *signature)) {
    return "checkpoint signature does not verify: forged or changed";
  }
  return "";
}

// ---- file helpers ------------------------------------------------------------

// 0 or the errno of the failure. Short writes continue where they stopped.
int write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return 0;
}

void sync_directory(const std::filesystem::path& file) {
  std::filesystem::path dir = file.parent_path();
  if (dir.empty()) dir = ".";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int error = fd < 0 ? errno : (::fsync(fd) == 0 ? 0 : errno);
  if (fd >= 0) ::close(fd);
  if (error != 0) {
    throw Error(ErrorCode::Unavailable, "cannot sync directory " + dir.string() + " of the new audit log: " +
                                            errno_text(error));
  }
}

// Calls visit(line, offset) for each line of the first `end` bytes of fd,
// the last first, until visit returns false or the first line was visited.
// The first call gets what follows the last "\n" (empty if the file ends
// with one).
template <class Visit>
void read_lines_backwards(int fd, off_t end, const std::string& path, Visit&& visit) {
  constexpr off_t kChunk = 64 * 1024;
  std::string carry;  // the bytes [pos, ...) not yet delivered
  off_t pos = end;
  while (true) {
    for (std::size_t nl; (nl = carry.rfind('\n')) != std::string::npos;) {
      if (!visit(std::string_view(carry).substr(nl + 1), pos + static_cast<off_t>(nl) + 1)) return;
      carry.resize(nl);
    }
    if (pos == 0) {
      visit(std::string_view(carry), off_t{0});
      return;
    }
    off_t n = std::min(kChunk, pos);
    pos -= n;
    std::string chunk(static_cast<std::size_t>(n), '\0');
    for (std::size_t done = 0; done < chunk.size();) {
      ssize_t got = ::pread(fd, chunk.data() + done, chunk.size() - done, pos + static_cast<off_t>(done));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        throw Error(ErrorCode::Unavailable,
                    "cannot read audit log " + path + ": " + (got < 0 ? errno_text(errno) : "unexpected end of file"));
      }
      done += static_cast<std::size_t>(got);
    }
    carry.insert(0, chunk);
  }
}

}  // namespace

// ---- Log -------------------------------------------------------------------------

struct Log::State {
  LogSettings settings;
  std::string path;  // for messages
  std::shared_ptr<const crypto::Signer> signer;
  crypto::SignatureAlgorithm algorithm{};
  std::string key_id;
  Clock now;
  int fd = -1;

  mutable std::mutex mutex;
  std::condition_variable written;
  // The chain as far as queued.
  std::uint64_t last_seq = 0;
  std::string last_hash{kZeroHash};
  bool last_is_checkpoint = false;
  std::uint64_t unsigned_records = 0;
  TimePoint last_checkpoint_time{};
  TimePoint next_checkpoint_attempt{};
  // Lines queued and not yet taken by a writer, in seq order.
  std::string pending;
  std::uint64_t pending_checkpoints = 0;
  // What is on disk.
  std::uint64_t durable_seq = 0;
  off_t durable_size = 0;
  bool writing = false;
  bool broken = false;
  std::string broken_reason;
  std::uint64_t checkpoints = 0;
  std::uint64_t checkpoint_failures = 0;
  std::uint64_t syncs = 0;

  ~State() {
    if (fd >= 0) ::close(fd);
  }

  int sync_file() const {
    if (settings.sync) return settings.sync(fd);
    return ::fdatasync(fd) == 0 ? 0 : errno;
  }

  [[noreturn]] void throw_broken() const { throw Error(ErrorCode::Unavailable, broken_reason); }

  void open();
  void load_tail(off_t size);

  std::uint64_t queue_event(const Event& event, TimePoint t) {
    std::uint64_t seq = last_seq + 1;
    std::string hash;
    pending += finish_line(event_prefix(seq, format_time(t), event, last_hash), hash);
    last_seq = seq;
    last_hash = std::move(hash);
    last_is_checkpoint = false;
    ++unsigned_records;
    return seq;
  }

  // Signs under the lock: the next record's prev is this record's hash, which
  // covers the signature. Throws what the signer throws, changing nothing.
  std::uint64_t queue_checkpoint(TimePoint t) {
    std::uint64_t seq = last_seq + 1;
    std::string time = format_time(t);
    std::vector<std::uint8_t> signature = signer->sign(algorithm, bytes(checkpoint_message(seq, time, last_hash)));
    std::string hash;
    pending += finish_line(
        checkpoint_prefix(seq, time, key_id, crypto::to_string(algorithm), to_base64(signature), last_hash), hash);
    ++pending_checkpoints;
    last_seq = seq;
    last_hash = std::move(hash);
    last_is_checkpoint = true;
    unsigned_records = 0;
    last_checkpoint_time = t;
    return seq;
  }

  bool checkpoint_due(TimePoint t) const {
    if (!signer || unsigned_records == 0 || t < next_checkpoint_attempt) return false;
    std::uint64_t every = settings.checkpoint_every_records;
    auto period = settings.checkpoint_every;
    return (every > 0 && unsigned_records >= every) ||
           (period.count() > 0 && t - last_checkpoint_time >= period);
  }

  // Returns once record seq is on disk; the first waiter not behind a writer
  // becomes the writer for everything queued.
  void wait_durable(std::unique_lock<std::mutex>& lock, std::uint64_t seq) {
    while (durable_seq < seq) {
      if (broken) throw_broken();
      if (!writing) {
        write_pending(lock);
      } else {
        written.wait(lock);
      }
    }
  }

  void write_pending(std::unique_lock<std::mutex>& lock) {
    writing = true;
    std::string batch;
    batch.swap(pending);
    std::uint64_t target = last_seq;
    std::uint64_t batch_checkpoints = std::exchange(pending_checkpoints, 0);
    off_t start = durable_size;
    lock.unlock();

    std::string failure;
    std::uint64_t sync_calls = 0;
    try {
      if (int error = write_all(fd, batch); error != 0) {
        failure = "writing failed: " + errno_text(error);
      } else {
        ++sync_calls;
        if (int error = sync_file(); error != 0) failure = "fdatasync failed: " + errno_text(error);
      }
      if (!failure.empty()) {
        // Cut back a partial line so that the file stays a valid log that can
        // be reopened once the cause is fixed. After a failed fdatasync the
        // batch's fate on disk is unknown (the kernel may have dropped it), so
        // it goes too: its callers are told it failed.
        if (::ftruncate(fd, start) == 0) {
          ++sync_calls;
          (void)sync_file();
        }
      }
    } catch (...) {
      failure = "internal error while writing";
    }

    lock.lock();
    writing = false;
    syncs += sync_calls;
    if (failure.empty()) {
      durable_seq = target;
      durable_size = start + static_cast<off_t>(batch.size());
      checkpoints += batch_checkpoints;
    } else {
      broken = true;
      broken_reason = "audit log " + path + ": " + failure +
                      "; nothing is written (and no request served) until the log is reopened";
    }
    written.notify_all();
  }
};

void Log::State::open() {
  bool created = true;
  fd = ::open(settings.path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EEXIST) {
    created = false;
    fd = ::open(settings.path.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
  }
  if (fd < 0) throw Error(ErrorCode::Unavailable, "cannot open audit log " + path + ": " + errno_text(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw Error(ErrorCode::Unavailable, "cannot stat audit log " + path + ": " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) throw Error(ErrorCode::FailedPrecondition, "audit log " + path + " is not a regular file");
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      throw Error(ErrorCode::FailedPrecondition, "audit log " + path + " is in use by another keyhold process");
    }
    throw Error(ErrorCode::Unavailable, "cannot lock audit log " + path + ": " + errno_text(errno));
  }
  if (created) {
    // The umask may have taken bits from 0600; the mode is exactly 0600.
    if (::fchmod(fd, 0600) != 0) {
      throw Error(ErrorCode::Unavailable, "cannot set the mode of audit log " + path + ": " + errno_text(errno));
    }
    sync_directory(settings.path);  // else the new file itself may vanish in a crash
  }
  load_tail(st.st_size);
  durable_size = st.st_size;
  durable_seq = last_seq;
}

// Reads back from the end to the last checkpoint (or the first record),
// checking each record and the chain between them, and continues from there.
void Log::State::load_tail(off_t size) {
  last_checkpoint_time = now();
  if (size == 0) return;
  const std::string advice = "; nothing was written. Run `keyhold audit verify --log " + path + "`";
  struct Read {
    Record record;
    off_t offset;
  };
  std::vector<Read> tail;  // last first
  bool first = true;
  read_lines_backwards(fd, size, path, [&](std::string_view line, off_t offset) {
    if (first) {
      first = false;
      if (!line.empty()) {
        throw Error(ErrorCode::FailedPrecondition,
                    "audit log " + path + " ends in an incomplete line (" + std::to_string(line.size()) +
                        " bytes without a newline at byte offset " + std::to_string(offset) +
                        "): a write that did not finish, or tampering" + advice +
                        "; to continue the log, keep a copy and cut it to " + std::to_string(offset) + " bytes");
      }
      return true;
    }
    std::string problem;
    auto record = parse_record(line, problem);
    if (!record) {
      throw Error(ErrorCode::FailedPrecondition,
                  "audit log " + path + ": damaged record at byte offset " + std::to_string(offset) + ": " + problem + advice);
    }
    bool more = !record->checkpoint;
    tail.push_back({std::move(*record), offset});
    return more;
  });
  std::reverse(tail.begin(), tail.end());
  auto broken_chain = [&](const Read& r, const std::string& what) {
    return Error(ErrorCode::FailedPrecondition, "audit log " + path + ": record seq " + std::to_string(r.record.seq) +
                                                    " at byte offset " + std::to_string(r.offset) + " " + what + advice);
  };
  const Record& head = tail.front().record;
  if (!head.checkpoint && (head.seq != 1 || head.prev != kZeroHash)) {
    throw broken_chain(tail.front(), "is the first line but not the first record");
  }
  for (std::size_t i = 1; i < tail.size(); ++i) {
    const Record& before = tail[i - 1].record;
    if (tail[i].record.seq != before.seq + 1) {
      throw broken_chain(tail[i], "does not follow seq " + std::to_string(before.seq));
    }
    if (tail[i].record.prev != before.hash) throw broken_chain(tail[i], "does not chain to the record before");
  }
  if (head.checkpoint && signer) {
    if (head.key != key_id) {
      throw Error(ErrorCode::FailedPrecondition, "audit log " + path + " is signed by key " + head.key +
                                                     ", not by the audit key " + key_id +
                                                     ": one log file has one audit key; start a new file");
    }
    std::string problem = check_checkpoint(head, signer->public_key(), key_id);
    if (!problem.empty()) throw broken_chain(tail.front(), problem);
  }
  const Record& last = tail.back().record;
  last_seq = last.seq;
  last_hash = last.hash;
  last_is_checkpoint = last.checkpoint;
  unsigned_records = tail.size() - (head.checkpoint ? 1 : 0);
  if (head.checkpoint) last_checkpoint_time = *parse_time(head.time);
}

Log::Log(LogSettings settings, std::shared_ptr<const crypto::Signer> signer, Clock now)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  if (settings.path.empty()) throw Error(ErrorCode::InvalidArgument, "the audit log path is empty");
  s.path = settings.path.string();
  s.settings = std::move(settings);
  s.now = now ? std::move(now) : Clock([] { return std::chrono::system_clock::now(); });
  if (signer) {
    auto algorithm = crypto::default_signature_algorithm(signer->key_type());
    if (!algorithm) {
      throw Error(ErrorCode::InvalidArgument, "the audit key is an " + std::string(crypto::to_string(signer->key_type())) +
                                                  " key, which cannot sign");
    }
    s.algorithm = *algorithm;
    s.key_id = key_id(signer->public_key());
    s.signer = std::move(signer);
  }
  s.open();
}

Log::~Log() = default;

std::uint64_t Log::append(const Event& event) {
  if (!valid_outcome(event.outcome)) {
    throw Error(ErrorCode::InvalidArgument,
                "audit event outcome must be allowed, denied or failed, not '" + valid_utf8(event.outcome) + "'");
  }
  State& s = *state_;
  std::unique_lock lock(s.mutex);
  if (s.broken) s.throw_broken();
  TimePoint t = s.now();
  std::uint64_t seq = s.queue_event(event, t);
  if (s.checkpoint_due(t)) {
    try {
      s.queue_checkpoint(t);
    } catch (...) {
      // The record stands unsigned for now; the checkpoint is retried.
      ++s.checkpoint_failures;
      s.next_checkpoint_attempt = t + kCheckpointRetry;
    }
  }
  s.wait_durable(lock, seq);
  return seq;
}

std::uint64_t Log::checkpoint() {
  State& s = *state_;
  if (!s.signer) throw Error(ErrorCode::FailedPrecondition, "audit log " + s.path + " has no audit key to sign checkpoints");
  std::unique_lock lock(s.mutex);
  if (s.broken) s.throw_broken();
  std::uint64_t seq = s.last_is_checkpoint ? s.last_seq : s.queue_checkpoint(s.now());
  s.wait_durable(lock, seq);
  return seq;
}

bool Log::checkpoint_if_due() {
  State& s = *state_;
  std::unique_lock lock(s.mutex);
  if (s.broken) s.throw_broken();
  TimePoint t = s.now();
  if (!s.checkpoint_due(t)) return false;
  std::uint64_t seq = 0;
  try {
    seq = s.queue_checkpoint(t);
  } catch (...) {
    ++s.checkpoint_failures;
    s.next_checkpoint_attempt = t + kCheckpointRetry;
    throw;
  }
  s.wait_durable(lock, seq);
  return true;
}

std::uint64_t Log::records() const {
  std::lock_guard lock(state_->mutex);
  return state_->durable_seq;
}

bool Log::healthy() const {
  std::lock_guard lock(state_->mutex);
  return !state_->broken;
}

LogStats Log::stats() const {
  const State& s = *state_;
  std::lock_guard lock(s.mutex);
  LogStats stats;
  stats.records = s.durable_seq;
  stats.checkpoints = s.checkpoints;
  stats.checkpoint_failures = s.checkpoint_failures;
  stats.syncs = s.syncs;
  stats.unsigned_records = s.unsigned_records;
  stats.broken = s.broken;
  stats.queued = s.last_seq >= s.durable_seq ? s.last_seq - s.durable_seq : 0;
  return stats;
}

// ---- verify ----------------------------------------------------------------------

VerifyResult verify(const std::filesystem::path& log, const crypto::PublicKey& audit_key) {
  std::ifstream in(log, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!std::filesystem::exists(log, ec)) throw Error(ErrorCode::NotFound, "audit log " + log.string() + " does not exist");
    throw Error(ErrorCode::Unavailable, "cannot read audit log " + log.string());
  }
  const std::string expected_key = key_id(audit_key);
  VerifyResult result;
  struct Link {
    std::uint64_t seq;
    std::string hash;
  };
  Link last{0, std::string(kZeroHash)};
  std::optional<Link> before_last;
  bool last_was_checkpoint = false;
  auto fail = [&](std::uint64_t line, std::string problem) {
    result.ok = false;
    result.first_bad_line = line;
    result.problem = std::move(problem);
    return result;
  };
  std::string line;
  std::uint64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (in.eof()) return fail(number, "incomplete last line (no newline): the log was cut, or a write did not finish");
    std::string problem;
    auto record = parse_record(line, problem);
    if (!record) return fail(number, problem);
    if (record->seq != last.seq + 1 || record->prev != last.hash) {
      if (before_last && record->seq == before_last->seq + 1 && record->prev == before_last->hash) {
        // This record continues the chain from two lines up: the line between was put in.
        --result.records;
        if (!last_was_checkpoint && result.unsigned_tail > 0) --result.unsigned_tail;
        return fail(number - 1, "inserted record: line " + std::to_string(number) + " (seq " + std::to_string(record->seq) +
                                    ") follows on from line " + std::to_string(number - 2) + ", skipping this one");
      }
      if (record->seq > last.seq + 1) {
        return fail(number, "seq jumps from " + std::to_string(last.seq) + " to " + std::to_string(record->seq) +
                                ": a record was removed here, or records were reordered");
      }
      if (record->seq <= last.seq) {
        return fail(number, "seq " + std::to_string(record->seq) + " after seq " + std::to_string(last.seq) +
                                ": a record was inserted, repeated or moved here");
      }
      return fail(number, "\"prev\" is not the hash of the record before: that record was replaced, or this one was");
    }
    if (record->checkpoint) {
      if (std::string bad = check_checkpoint(*record, audit_key, expected_key); !bad.empty()) return fail(number, bad);
      ++result.checkpoints;
      result.last_checkpoint_seq = record->seq;
      result.unsigned_tail = 0;
    } else {
      ++result.unsigned_tail;
    }
    ++result.records;
    last_was_checkpoint = record->checkpoint;
    before_last = std::move(last);
    last = Link{record->seq, record->hash};
  }
  if (in.bad()) throw Error(ErrorCode::Unavailable, "cannot read audit log " + log.string());
  result.ok = true;
  return result;
}

}  // namespace keyhold::audit
