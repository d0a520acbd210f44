#include "keyhold/core/process.hpp"

#include <pthread.h>

#include <atomic>

namespace keyhold {
namespace {

std::atomic<std::uint64_t> g_generation{1};

void on_fork_child() { g_generation.fetch_add(1, std::memory_order_relaxed); }

// Registered before any caller can hold state tagged with a generation.
const bool kRegistered = [] {
  pthread_atfork(nullptr, nullptr, on_fork_child);
  return true;
}();

}  // namespace

std::uint64_t fork_generation() noexcept {
  (void)kRegistered;
  return g_generation.load(std::memory_order_relaxed);
}

}  // namespace keyhold
