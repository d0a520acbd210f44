#pragma once
// Group commit: callers that write at the same time share one transaction
// and so one fsync, and each returns only once its own write is durable.
// One caller at a time is the leader: it takes every piece of work waiting,
// runs it in one Transaction and commits; the others wait for that commit.
// A batch that fails is retried one piece at a time, so one bad write (say a
// duplicate serial) fails only its own caller.
//
// Thread-safe. Work runs on the leader's thread, inside its transaction:
// it must only touch the store and its own captured state.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>

#include "keyhold/store/store.hpp"

namespace keyhold::store {

class GroupCommit {
 public:
  explicit GroupCommit(Store& store) : store_(store) {}
  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;

  // Runs work in a shared transaction and returns once it is committed;
  // rethrows what work (or the commit) threw.
  void run(const std::function<void()>& work);

  // How many commits served how many pieces of work so far (for benchmarks).
  std::uint64_t commits() const;
  std::uint64_t pieces() const;
  // Work queued behind the current leader (for tests).
  std::size_t waiting() const;

 private:
  struct Piece {
    const std::function<void()>* work;
    bool done = false;
    std::exception_ptr error;
  };
  void lead(std::unique_lock<std::mutex>& lock);

  Store& store_;
  mutable std::mutex mutex_;
  std::condition_variable finished_;
  std::deque<Piece*> waiting_;
  bool leading_ = false;
  std::uint64_t commits_ = 0;
  std::uint64_t pieces_ = 0;
};

}  // namespace keyhold::store
