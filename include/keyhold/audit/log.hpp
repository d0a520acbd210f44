#pragma once
// The tamper-evident audit log of `keyhold serve`: one JSON line per request
// (allowed, denied or failed), chained by SHA-256, with checkpoints signed by
// the audit key in the token; and its verifier (`keyhold audit verify`).
//
// File format (this comment is its specification). UTF-8, one record per line,
// each line ended by "\n". Keys are always all present, in this order, with
// no whitespace anywhere outside strings:
//
//   {"seq":1,"time":"2030-01-02T03:04:05.000006Z","type":"event","request_id":"r1",
//    "identity":"svc","client_address":"10.0.0.1:5555","operation":"kek.encrypt",
//    "resource":"kek:payments","outcome":"allowed","error_code":"","latency_us":1200,
//    "context":{"app":"billing"},"prev":"<64 hex>","hash":"<64 hex>"}
//   {"seq":4,"time":"...","type":"checkpoint","key":"spki-sha256:<64 hex>",
//    "algorithm":"ed25519","signature":"<base64>","prev":"<64 hex>","hash":"<64 hex>"}
//
// (shown wrapped; a record is a single line).
// - seq: 1, 2, 3, ... over all records, events and checkpoints alike.
// - time: RFC 3339 UTC with exactly six fraction digits, when the record was made.
// - latency_us: a JSON integer, microseconds. context: an object, keys in
//   byte order; empty as {}. error_code: "" for an allowed request.
// - prev: the "hash" of the record before, or 64 "0" for the first record.
// - hash: lower-case hex SHA-256 over the line's bytes from its "{" up to,
//   not including, the "," that starts ,"hash": -- i.e. the line is
//   P + ",\"hash\":\"" + hex(SHA-256(P)) + "\"}\n".
// - key: "spki-sha256:" + lower-case hex SHA-256 of the audit key's DER
//   SubjectPublicKeyInfo (`openssl pkey -pubin -outform DER | sha256sum`).
// - algorithm: the signature algorithm's keyhold name (crypto::to_string):
//   the key's default -- ed25519, ecdsa-sha256 (P-256), ecdsa-sha384 (P-384),
//   rsa-pkcs1-sha256 (RSA). ECDSA signatures are DER Ecdsa-Sig-Value.
// - signature: standard base64 (with padding) of the signature over the bytes
//     "keyhold-audit-checkpoint\n" <seq> "\n" <time> "\n" <prev> "\n"
//   (seq in decimal, time and prev exactly as in the record). prev is the
//   chain hash, which commits to every record before the checkpoint.
//
// Strings: '"' and '\' are escaped as \" and \\; \b \f \n \r \t as such; the
// other C0 controls, DEL and the C1 controls (U+0080..U+009F) as \u00xx; and
// U+2028, U+2029, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069 (line
// separators and bidi controls, which mislead line tools and terminals) as
// \uxxxx (lower-case hex). Every byte that is not part of a well-formed UTF-8
// sequence is replaced by U+FFFD, so a line is always valid UTF-8 JSON. If
// context keys collide after that replacement, the later ones get "~2",
// "~3", ... appended. Nothing but the Event's fields is ever written: the
// caller must put in the context only the encryption context (never
// plaintext, data keys, PINs or ciphertext bodies).
//
// What verify() detects, naming the first bad line: a changed byte anywhere
// (hash mismatch, or a line that no longer parses), a removed record (seq
// gap), an inserted record (a seq out of place, or a line the next record's
// prev skips), reordered records, a checkpoint whose signature does not
// verify or that names another key, a malformed or incomplete last line.
// What it cannot detect:
// - The end of the log is not protected. Records after the last checkpoint
//   are protected by the chain alone: whoever can write the file can remove,
//   change or add records there and recompute the hashes. And a cut right
//   after any checkpoint leaves a valid, shorter log. (While the Log is open,
//   such a change breaks the chain at the next record it writes, which
//   verify then reports there.) Compare records and the last checkpoint with
//   an outside copy (metrics, a shipped log) to detect a cut.
// - A rewrite of records before a checkpoint with recomputed hashes is
//   detected, but at the checkpoint that no longer verifies, not at the
//   record that was changed.
// - A log rewritten by someone who holds the audit key (or can make the token
//   sign) verifies. So does a log with no checkpoints at all: see
//   VerifyResult::checkpoints and unsigned_tail.
// One log file has one audit key: start a new file when the key changes.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "keyhold/crypto/public_key.hpp"
#include "keyhold/crypto/signer.hpp"

namespace keyhold::audit {

// What the caller knows about one request.
struct Event {
  std::string request_id;
  std::string identity;        // the authenticated client, e.g. its certificate subject
  std::string client_address;  // "ip:port"
  std::string operation;       // e.g. "kek.encrypt" (authz operation names; "health", "unknown", ...)
  std::string resource;        // e.g. "kek:payments"
  std::string outcome;         // "allowed" (it succeeded), "denied" or "failed"
  std::string error_code;      // empty on success; the error code otherwise ("permission_denied", see to_string(ErrorCode))
  std::chrono::microseconds latency{0};
  std::map<std::string, std::string> context;  // encryption context keys and values, nothing else
};

struct LogSettings {
  std::filesystem::path path;
  // A checkpoint follows the record that makes this many records since the
  // last checkpoint (0: no count trigger).
  std::uint64_t checkpoint_every_records = 1000;
  // ... or the first record appended this long after the last checkpoint (in
  // a log without one: after opening) (0: no time trigger). An idle log
  // writes nothing: call checkpoint_if_due() from a timer to sign its tail.
  std::chrono::seconds checkpoint_every{60};
  // Makes the file durable: returns 0 or an errno value. Empty (the default):
  // fdatasync(fd). For tests and fault injection (a slow disk, EIO).
  std::function<int(int fd)> sync;
};

// Counters for metrics and tests.
struct LogStats {
  std::uint64_t records = 0;              // seq of the last durable record
  std::uint64_t checkpoints = 0;          // checkpoints written by this Log
  std::uint64_t checkpoint_failures = 0;  // automatic checkpoints the signer failed (retried later)
  std::uint64_t syncs = 0;                // fdatasync calls by this Log
  std::uint64_t unsigned_records = 0;     // records after the last checkpoint
  std::uint64_t queued = 0;               // records accepted and not yet durable (the group-commit queue)
  bool broken = false;
};

// The writer. One Log per file: the file is locked (flock) while open, and a
// second Log, in this or another process, is refused.
// Thread-safe: append, checkpoint and the accessors may be called from any
// number of threads. Not movable.
class Log {
 public:
  using Clock = std::function<std::chrono::system_clock::time_point()>;

  // Opens path, creating it with mode 0600 (and syncing its directory) if it
  // does not exist. An existing log is continued: the records from the last
  // checkpoint (or the first record) to the end are read back and their
  // hashes, seqs and chain checked; the next record follows the last one.
  // signer: the audit key; null means no checkpoints (tests of the chain only).
  // now: the clock for record times and the time trigger.
  // Throws InvalidArgument (empty path, signer whose key cannot sign),
  // Unavailable (cannot open, read, create or lock the file),
  // FailedPrecondition (not a regular file; in use by another Log; the tail
  // is damaged: an incomplete last line -- a crash during a write, or
  // tampering -- or a record whose hash or chain is wrong; the message says
  // where and to run `keyhold audit verify`; nothing is written).
  Log(LogSettings settings, std::shared_ptr<const crypto::Signer> signer, Clock now = {});
  // Closes the file. Writes nothing: every append has returned durable.
  ~Log();
  Log(const Log&) = delete;
  Log& operator=(const Log&) = delete;

  // Appends the event's record and returns its seq once it is on disk
  // (write + fdatasync). Concurrent callers share a sync (group commit): the
  // first waiting caller writes every record waiting, with one write and one
  // fdatasync, while the others wait for it. When a checkpoint is due it is
  // written right after the record, in the same batch; if the signer fails,
  // the record is still written and the checkpoint retried at an append at
  // least a second later (counted in stats().checkpoint_failures).
  // Throws InvalidArgument for an outcome other than allowed/denied/failed
  // (nothing written). Throws Unavailable when the write or the sync fails:
  // the log is then broken (the file is cut back to its last durable record
  // where possible) and every later append and checkpoint throws Unavailable
  // until the log is opened again.
  std::uint64_t append(const Event& event);

  // Writes a checkpoint now and returns its seq once durable; if the last
  // record already is a checkpoint, writes nothing and returns its seq.
  // Throws FailedPrecondition without a signer, what the signer throws, and
  // Unavailable as append does.
  std::uint64_t checkpoint();
  // Writes a checkpoint if one is due by time and records are unsigned
  // (for a timer, so that an idle log's tail gets signed). True if written.
  bool checkpoint_if_due();

  std::uint64_t records() const;  // seq of the last durable record (0: empty log)
  bool healthy() const;           // false once broken: callers may refuse work early (503)
  LogStats stats() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

struct VerifyResult {
  bool ok = false;
  std::uint64_t records = 0;      // records that verified, before the first bad line
  std::uint64_t checkpoints = 0;  // valid checkpoints among them
  std::uint64_t last_checkpoint_seq = 0;
  std::optional<std::uint64_t> first_bad_line;  // 1-based line number
  std::string problem;                          // what is wrong with first_bad_line
  std::uint64_t unsigned_tail = 0;              // verified records after the last valid checkpoint
};

// Reads the log from the start and checks each line: format, hash, seq, the
// chain, and each checkpoint's key and signature against audit_key (which
// must be a key keyhold signs with). Stops at the first bad line. Reads the
// file as it is; safe while a Log appends (a line being written may show as
// incomplete). Throws NotFound when the file does not exist, Unavailable
// when it cannot be read.
VerifyResult verify(const std::filesystem::path& log, const crypto::PublicKey& audit_key);

}  // namespace keyhold::audit
