#pragma once
// Sessions checked out per operation. PKCS#11 allows one operation per session
// at a time, so each operation leases its own session and gives it back.
// Thread-safe.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "keyhold/hsm/pkcs11.hpp"

namespace keyhold::hsm {

class Module;
class SessionPool;

// A session leased from the pool; returned on destruction. A lease whose
// operation failed is discard()ed: the session is closed rather than reused,
// since its operation state is unknown (SoftHSMv2 #585 leaves an operation
// active after some argument errors).
class SessionLease {
 public:
  SessionLease(SessionPool* pool, CK_SESSION_HANDLE handle, std::uint64_t generation) noexcept
      : pool_(pool), handle_(handle), generation_(generation) {}
  SessionLease(SessionLease&& other) noexcept;
  SessionLease& operator=(SessionLease&&) = delete;
  SessionLease(const SessionLease&) = delete;
  ~SessionLease();

  CK_SESSION_HANDLE handle() const noexcept { return handle_; }
  std::uint64_t generation() const noexcept { return generation_; }
  void discard() noexcept { healthy_ = false; }

 private:
  SessionPool* pool_;
  CK_SESSION_HANDLE handle_;
  std::uint64_t generation_;
  bool healthy_ = true;
};

struct SessionPoolStats {
  std::size_t idle = 0;
  std::size_t leased = 0;
  std::size_t opened_total = 0;
  std::size_t limit = 0;  // 0: no limit known
};

class SessionPool {
 public:
  // max_sessions 0: no limit of ours; the token's CKR_SESSION_COUNT still caps it.
  SessionPool(const Module& module, CK_SLOT_ID slot, std::size_t max_sessions,
              std::chrono::milliseconds checkout_timeout);
  ~SessionPool();
  SessionPool(const SessionPool&) = delete;
  SessionPool& operator=(const SessionPool&) = delete;

  // Waits (up to the timeout) when every allowed session is leased; throws
  // Unavailable when the token has no session to give at all.
  SessionLease checkout();

  // Forgets every session of the current generation and starts a new one:
  // idle sessions are closed when close_idle is true (after a failure) or
  // abandoned (in a forked child, where they belong to the parent). Leases
  // of the old generation are closed (or abandoned) when they come back.
  void reset(CK_SLOT_ID slot, bool close_idle);

  std::uint64_t generation() const;
  SessionPoolStats stats() const;

 private:
  friend class SessionLease;
  void give_back(CK_SESSION_HANDLE handle, std::uint64_t generation, bool healthy) noexcept;
  void close_quietly(CK_SESSION_HANDLE handle) const noexcept;
  std::size_t effective_limit() const;  // with mutex_ held

  const Module& module_;
  mutable std::mutex mutex_;
  std::condition_variable returned_;
  CK_SLOT_ID slot_;
  std::size_t max_sessions_;
  std::size_t token_limit_ = 0;  // learnt from CKR_SESSION_COUNT
  std::chrono::milliseconds checkout_timeout_;
  std::vector<CK_SESSION_HANDLE> idle_;
  std::size_t leased_ = 0;
  std::size_t opening_ = 0;
  std::size_t opened_total_ = 0;
  std::uint64_t generation_ = 1;
  bool abandon_old_ = false;  // sessions of older generations belong to a parent process
};

}  // namespace keyhold::hsm
