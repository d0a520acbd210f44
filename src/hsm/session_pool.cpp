#include "keyhold/hsm/session_pool.hpp"

#include <algorithm>

#include "keyhold/hsm/module.hpp"

namespace keyhold::hsm {

SessionLease::SessionLease(SessionLease&& other) noexcept
    : pool_(other.pool_), handle_(other.handle_), generation_(other.generation_), healthy_(other.healthy_) {
  other.pool_ = nullptr;
}

SessionLease::~SessionLease() {
  if (pool_ != nullptr) pool_->give_back(handle_, generation_, healthy_);
}

SessionPool::SessionPool(const Module& module, CK_SLOT_ID slot, std::size_t max_sessions,
                         std::chrono::milliseconds checkout_timeout)
    : module_(module), slot_(slot), max_sessions_(max_sessions), checkout_timeout_(checkout_timeout) {}

SessionPool::~SessionPool() {
  std::lock_guard lock(mutex_);
  if (!abandon_old_) {
    for (CK_SESSION_HANDLE h : idle_) close_quietly(h);
  }
  idle_.clear();
}

SessionLease SessionPool::checkout() {
  std::unique_lock lock(mutex_);
  auto deadline = std::chrono::steady_clock::now() + checkout_timeout_;
  for (;;) {
    if (!idle_.empty()) {
      CK_SESSION_HANDLE h = idle_.back();
      idle_.pop_back();
      ++leased_;
      return SessionLease(this, h, generation_);
    }
    std::size_t cap = effective_limit();
    if (cap == 0 || leased_ + opening_ < cap) {
      ++opening_;
      std::uint64_t generation = generation_;
      CK_SLOT_ID slot = slot_;
      lock.unlock();
      CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
      CK_RV rv = KH_P11(module_, C_OpenSession, slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h);
      lock.lock();
      --opening_;
      if (rv == CKR_OK) {
        ++leased_;
        ++opened_total_;
        return SessionLease(this, h, generation);
      }
      if (rv == CKR_SESSION_COUNT && leased_ + idle_.size() + opening_ > 0) {
        // The token's own limit. Sessions we hold (leased, idle, or being
        // opened by another thread) will come back: remember the limit and
        // look again, since one may have become idle while we were opening.
        token_limit_ = std::max<std::size_t>(1, leased_ + idle_.size());
        continue;
      }
      returned_.notify_all();  // waiters re-evaluate now that this open failed
      check(rv, "opening a session on the token");
    }
    if (returned_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty()) {
      throw Error(ErrorCode::Unavailable, "no token session became free within " +
                                              std::to_string(checkout_timeout_.count()) + " ms (" +
                                              std::to_string(leased_) + " in use)");
    }
  }
}

void SessionPool::give_back(CK_SESSION_HANDLE handle, std::uint64_t generation, bool healthy) noexcept {
  std::unique_lock lock(mutex_);
  --leased_;
  if (generation != generation_) {
    // A lease from before a reset: closed, or abandoned when it belongs to the parent process.
    if (!abandon_old_) {
      lock.unlock();
      close_quietly(handle);
      lock.lock();
    }
  } else if (healthy) {
    idle_.push_back(handle);
  } else {
    lock.unlock();
    close_quietly(handle);
    lock.lock();
  }
  returned_.notify_one();
}

void SessionPool::reset(CK_SLOT_ID slot, bool close_idle) {
  std::vector<CK_SESSION_HANDLE> old;
  {
    std::lock_guard lock(mutex_);
    old.swap(idle_);
    slot_ = slot;
    token_limit_ = 0;
    ++generation_;
    abandon_old_ = !close_idle;
  }
  if (close_idle) {
    for (CK_SESSION_HANDLE h : old) close_quietly(h);
  }
  returned_.notify_all();
}

std::uint64_t SessionPool::generation() const {
  std::lock_guard lock(mutex_);
  return generation_;
}

SessionPoolStats SessionPool::stats() const {
  std::lock_guard lock(mutex_);
  return SessionPoolStats{idle_.size(), leased_, opened_total_, effective_limit()};
}

std::size_t SessionPool::effective_limit() const {
  if (token_limit_ != 0 && (max_sessions_ == 0 || token_limit_ < max_sessions_)) return token_limit_;
  return max_sessions_;
}

void SessionPool::close_quietly(CK_SESSION_HANDLE handle) const noexcept {
  // The session may already be gone (closed underneath, device removed): nothing to report.
  try {
    (void)KH_P11(module_, C_CloseSession, handle);
  } catch (...) {
  }
}

}  // namespace keyhold::hsm
