#include "keyhold/store/group_commit.hpp"

#include <vector>

namespace keyhold::store {

void GroupCommit::run(const std::function<void()>& work) {
  Piece piece{&work, false, nullptr};
  std::unique_lock lock(mutex_);
  waiting_.push_back(&piece);
  while (!piece.done) {
    if (!leading_) {
      lead(lock);
    } else {
      finished_.wait(lock);
    }
  }
  if (piece.error) std::rethrow_exception(piece.error);
}

void GroupCommit::lead(std::unique_lock<std::mutex>& lock) {
  leading_ = true;
  std::vector<Piece*> batch(waiting_.begin(), waiting_.end());
  waiting_.clear();
  lock.unlock();

  bool committed = false;
  try {
    Transaction tx(store_);
    for (Piece* p : batch) (*p->work)();
    tx.commit();
    committed = true;
  } catch (...) {
    // Someone's work failed (or the commit did): nothing of the batch was
    // kept. Each piece now gets its own transaction and its own outcome.
  }
  std::uint64_t commits = committed ? 1 : 0;
  if (!committed) {
    for (Piece* p : batch) {
      try {
        Transaction tx(store_);
        (*p->work)();
        tx.commit();
        ++commits;
      } catch (...) {
        p->error = std::current_exception();
      }
    }
  }

  lock.lock();
  for (Piece* p : batch) p->done = true;
  commits_ += commits;
  pieces_ += batch.size();
  leading_ = false;
  finished_.notify_all();
}

std::uint64_t GroupCommit::commits() const {
  std::lock_guard lock(mutex_);
  return commits_;
}

std::size_t GroupCommit::waiting() const {
  std::lock_guard lock(mutex_);
  return waiting_.size();
}

std::uint64_t GroupCommit::pieces() const {
  std::lock_guard lock(mutex_);
  return pieces_;
}

}  // namespace keyhold::store
