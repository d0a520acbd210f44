#pragma once
// One PKCS#11 token, logged in once for the lifetime of this object, with a
// session pool and an object-handle cache keyed by CKA_ID.
//
// Recovery (the design's PKCS#11 rules): an operation whose session was lost
// (closed, device removed, logged out underneath) rebuilds the pool, logs in
// again and is retried once; an operation on a stale object handle re-finds
// the object by CKA_ID and is retried once. A wrong PIN is never retried.
// Thread-safe: operations may run concurrently from many threads.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "keyhold/core/secret.hpp"
#include "keyhold/core/activity.hpp"
#include "keyhold/hsm/attributes.hpp"
#include "keyhold/hsm/module.hpp"
#include "keyhold/hsm/pin.hpp"
#include "keyhold/hsm/pkcs11.hpp"
#include "keyhold/hsm/session_pool.hpp"
#include "keyhold/hsm/uri.hpp"

namespace keyhold::hsm {

// The stable identity of a key object: CKA_ID and class. Handles are looked
// up from it and cached.
struct ObjectRef {
  std::vector<std::uint8_t> id;
  CK_OBJECT_CLASS object_class;
};

struct TokenDescription {
  std::string uri;
  std::string label;
  std::string manufacturer;
  std::string model;
  std::string serial;
  CK_SLOT_ID slot_id = 0;
  std::string slot_description;
  std::string hardware_version;
  std::string firmware_version;
  std::vector<std::string> flags;  // "login-required", "rng", ...
  std::optional<unsigned long> max_sessions;  // nullopt: effectively infinite
  unsigned long session_count = 0;
  std::optional<unsigned long> free_private_memory;
  std::optional<unsigned long> total_private_memory;
  std::vector<CK_MECHANISM_TYPE> mechanisms;
  ModuleInfo module;
};

struct TokenOptions {
  std::size_t max_sessions = 0;  // 0: the token's limit
  std::chrono::milliseconds checkout_timeout{30'000};
};

struct KeyPairHandles {
  CK_OBJECT_HANDLE public_key;
  CK_OBJECT_HANDLE private_key;
};

class Token {
 public:
  // Finds the one token that matches uri (Unavailable when none, InvalidArgument
  // when several) and, when pin is given, logs in as the user.
  static std::unique_ptr<Token> open(std::shared_ptr<Module> module, const Uri& uri,
                                     std::unique_ptr<PinSource> pin, TokenOptions options = {});
  ~Token();
  Token(const Token&) = delete;
  Token& operator=(const Token&) = delete;

  Module& module() const noexcept { return *module_; }
  CK_SLOT_ID slot() const;
  const CK_TOKEN_INFO& token_info() const noexcept { return token_info_; }
  std::string label() const;
  TokenDescription describe() const;
  SessionPoolStats pool_stats() const { return pool_->stats(); }
  // Calls made through run() so far, their latency and the session pool now.
  TokenActivity activity() const;

  // Runs op(session) on a leased session with the recovery described above.
  template <class Op>
  auto run(Op&& op) -> decltype(op(CK_SESSION_HANDLE{}));

  // Resolves a key reference to a handle (cached; C_FindObjects on a miss).
  // Throws NotFound when no such object exists, FailedPrecondition when
  // several objects share the CKA_ID and class.
  CK_OBJECT_HANDLE resolve(CK_SESSION_HANDLE session, const ObjectRef& ref);

  // --- operations (each one run() under the hood) ---
  std::vector<std::uint8_t> sign(const ObjectRef& key, CK_MECHANISM mechanism,
                                 std::span<const std::uint8_t> data, std::size_t size_hint);
  std::vector<std::uint8_t> encrypt(const ObjectRef& key, CK_MECHANISM mechanism,
                                    std::span<const std::uint8_t> plaintext, std::size_t size_hint);
  SecretBytes decrypt(const ObjectRef& key, CK_MECHANISM mechanism, std::span<const std::uint8_t> ciphertext);
  std::vector<std::uint8_t> random(std::size_t size);
  // Serialised across every Token of the process (not across processes):
  // concurrent key generation has crashed SoftHSM (SoftHSMv2 #573, #688).
  KeyPairHandles generate_key_pair(CK_MECHANISM mechanism, AttributeTemplate& public_template,
                                   AttributeTemplate& private_template);
  CK_OBJECT_HANDLE generate_key(CK_MECHANISM mechanism, AttributeTemplate& key_template);
  // Every object matching the template (no cache: for listing and admin).
  std::vector<CK_OBJECT_HANDLE> find(AttributeTemplate& match);
  AttributeValues read(CK_OBJECT_HANDLE object, std::span<const CK_ATTRIBUTE_TYPE> types);
  AttributeValues read(const ObjectRef& ref, std::span<const CK_ATTRIBUTE_TYPE> types);
  void destroy(const ObjectRef& ref);

 private:
  Token(std::shared_ptr<Module> module, Uri uri, std::unique_ptr<PinSource> pin, TokenOptions options);
  void locate();                 // finds slot_ and token_info_ from uri_
  void open_anchor_and_login();  // the session that holds the login
  void recover(std::uint64_t failed_generation);
  void follow_process();  // after fork: drop the parent's sessions and log in again
  bool logged_in() const;
  static std::string cache_key(const ObjectRef& ref);
  AttributeValues read_on(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                          std::span<const CK_ATTRIBUTE_TYPE> types);

  std::shared_ptr<Module> module_;
  Uri uri_;
  std::unique_ptr<PinSource> pin_;
  TokenOptions options_;

  mutable std::mutex state_mutex_;  // slot_, token_info_, anchor_, module generation
  CK_SLOT_ID slot_ = 0;
  CK_TOKEN_INFO token_info_{};
  CK_SESSION_HANDLE anchor_ = CK_INVALID_HANDLE;
  std::atomic<std::uint64_t> module_generation_{0};

  std::unique_ptr<SessionPool> pool_;
  std::mutex recover_mutex_;

  // Keyed by class and CKA_ID bytes; looked up by string_view so that a hit
  // allocates nothing (transparent hash, C++20).
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view key) const noexcept { return std::hash<std::string_view>{}(key); }
  };
  mutable std::shared_mutex handles_mutex_;
  std::unordered_map<std::string, CK_OBJECT_HANDLE, KeyHash, std::equal_to<>> handles_;

  // Metrics of run(): latency of every call, and the calls that failed:
  // those that threw, but for an Error without a CK_RV (an object that is
  // not there is an answer of the token, not its failure: lookups by
  // class probe for keys that way).
  LatencyHistogram call_latency_;
  std::atomic<std::uint64_t> call_failures_{0};
  class CallTimer {
   public:
    explicit CallTimer(Token& token) noexcept
        : token_(token), started_(std::chrono::steady_clock::now()), exceptions_(std::uncaught_exceptions()) {}
    ~CallTimer() {
      token_.call_latency_.observe(std::chrono::steady_clock::now() - started_);
      if (std::uncaught_exceptions() > exceptions_ && !answered_) {
        token_.call_failures_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    CallTimer(const CallTimer&) = delete;
    CallTimer& operator=(const CallTimer&) = delete;
    void not_a_failure() noexcept { answered_ = true; }

   private:
    Token& token_;
    std::chrono::steady_clock::time_point started_;
    int exceptions_;
    bool answered_ = false;
  };
};

template <class Op>
auto Token::run(Op&& op) -> decltype(op(CK_SESSION_HANDLE{})) {
  CallTimer timer(*this);
  if (module_->generation() != module_generation_) follow_process();
  for (int attempt = 0;; ++attempt) {
    SessionLease lease = pool_->checkout();
    try {
      return op(lease.handle());
    } catch (const Error& e) {
      lease.discard();
      if (!e.ck_rv()) timer.not_a_failure();
      if (attempt > 0 || !e.ck_rv()) throw;
      CK_RV rv = *e.ck_rv();
      if (is_session_lost(rv)) {
        recover(lease.generation());
        continue;
      }
      if (is_handle_stale(rv)) {
        {
          std::unique_lock lock(handles_mutex_);
          handles_.clear();
        }
        // SoftHSM invalidates private handles on logout: a stale handle may
        // mean the login is gone.
        if (!logged_in()) recover(lease.generation());
        continue;
      }
      throw;
    }
  }
}

}  // namespace keyhold::hsm
