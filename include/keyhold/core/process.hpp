#pragma once
// Knowing when the process has forked: state that must not be shared between
// a parent and its child (PKCS#11 sessions, batches of random IVs) records
// the generation it was made in and is dropped when it changes.

#include <cstdint>

namespace keyhold {

// Increases in the child after each fork(). Thread-safe and cheap (an atomic
// load after the first call, which registers the pthread_atfork handler).
std::uint64_t fork_generation() noexcept;

}  // namespace keyhold
