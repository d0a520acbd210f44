#include "keyhold/hsm/token.hpp"

#include <cstring>
#include <deque>
#include <utility>

#include "keyhold/core/encoding.hpp"
#include "keyhold/core/log.hpp"

namespace keyhold::hsm {
namespace {

std::string version_string(const CK_VERSION& v) {
  return std::to_string(v.major) + "." + std::to_string(v.minor);
}

std::vector<std::string> token_flag_names(CK_FLAGS flags) {
  static const std::pair<CK_FLAGS, const char*> kNames[] = {
      {CKF_RNG, "rng"},
      {CKF_WRITE_PROTECTED, "write-protected"},
      {CKF_LOGIN_REQUIRED, "login-required"},
      {CKF_USER_PIN_INITIALIZED, "user-pin-initialized"},
      {CKF_RESTORE_KEY_NOT_NEEDED, "restore-key-not-needed"},
      {CKF_CLOCK_ON_TOKEN, "clock-on-token"},
      {CKF_PROTECTED_AUTHENTICATION_PATH, "protected-authentication-path"},
      {CKF_DUAL_CRYPTO_OPERATIONS, "dual-crypto-operations"},
      {CKF_TOKEN_INITIALIZED, "token-initialized"},
      {CKF_USER_PIN_COUNT_LOW, "user-pin-count-low"},
      {CKF_USER_PIN_FINAL_TRY, "user-pin-final-try"},
      {CKF_USER_PIN_LOCKED, "user-pin-locked"},
      {CKF_USER_PIN_TO_BE_CHANGED, "user-pin-to-be-changed"},
      {CKF_SO_PIN_COUNT_LOW, "so-pin-count-low"},
      {CKF_SO_PIN_FINAL_TRY, "so-pin-final-try"},
      {CKF_SO_PIN_LOCKED, "so-pin-locked"},
      {CKF_SO_PIN_TO_BE_CHANGED, "so-pin-to-be-changed"},
  };
  std::vector<std::string> names;
  for (const auto& [flag, name] : kNames) {
    if ((flags & flag) != 0) names.emplace_back(name);
  }
  return names;
}

std::optional<unsigned long> finite(CK_ULONG value) {
  if (value == CK_UNAVAILABLE_INFORMATION || value == CK_EFFECTIVELY_INFINITE) return std::nullopt;
  return value;
}

std::vector<CK_OBJECT_HANDLE> find_on(const Module& module, CK_SESSION_HANDLE session, AttributeTemplate& match,
                                      std::size_t limit) {
  check(KH_P11(module, C_FindObjectsInit, session, match.data(), match.size()), "searching the token");
  std::vector<CK_OBJECT_HANDLE> found;
  CK_RV rv = CKR_OK;
  for (;;) {
    CK_OBJECT_HANDLE batch[64];
    CK_ULONG count = 0;
    rv = KH_P11(module, C_FindObjects, session, batch, 64, &count);
    if (rv != CKR_OK || count == 0) break;
    found.insert(found.end(), batch, batch + count);
    if (limit != 0 && found.size() >= limit) break;
  }
  CK_RV final_rv = KH_P11(module, C_FindObjectsFinal, session);
  check(rv, "searching the token");
  check(final_rv, "finishing a search of the token");
  return found;
}

// One per process, whatever the number of Token objects: concurrent key
// generation has crashed SoftHSM (SoftHSMv2 #573, #688).
std::mutex& keygen_mutex() {
  static std::mutex mutex;
  return mutex;
}

}  // namespace

std::unique_ptr<Token> Token::open(std::shared_ptr<Module> module, const Uri& uri, std::unique_ptr<PinSource> pin,
                                   TokenOptions options) {
  std::unique_ptr<Token> token(new Token(std::move(module), Uri::parse(uri.to_string()), std::move(pin), options));
  token->locate();
  token->module_generation_ = token->module_->generation();
  token->pool_ = std::make_unique<SessionPool>(*token->module_, token->slot_, options.max_sessions,
                                               options.checkout_timeout);
  if (token->pin_) token->open_anchor_and_login();
  return token;
}

Token::Token(std::shared_ptr<Module> module, Uri uri, std::unique_ptr<PinSource> pin, TokenOptions options)
    : module_(std::move(module)), uri_(std::move(uri)), pin_(std::move(pin)), options_(options) {}

Token::~Token() {
  if (!pool_) return;  // open() failed before any session was opened
  bool ours = module_->generation() == module_generation_;
  if (!ours) {
    // Forked child that never used the token: the sessions are the parent's.
    pool_->reset(slot_, false);
    return;
  }
  pool_.reset();  // closes idle sessions
  if (anchor_ != CK_INVALID_HANDLE) {
    // Closing the last session logs the application out (PKCS#11 v2.40 section 5.6).
    try {
      (void)KH_P11(*module_, C_Logout, anchor_);
      (void)KH_P11(*module_, C_CloseSession, anchor_);
    } catch (...) {
    }
  }
}

void Token::locate() {
  std::vector<CK_SLOT_ID> matches;
  std::vector<std::string> present;
  CK_TOKEN_INFO matched_info{};
  for (CK_SLOT_ID slot : module_->slots_with_token()) {
    CK_TOKEN_INFO info{};
    CK_SLOT_INFO slot_info{};
    if (KH_P11(*module_, C_GetTokenInfo, slot, &info) != CKR_OK) continue;
    if (KH_P11(*module_, C_GetSlotInfo, slot, &slot_info) != CKR_OK) continue;
    if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) continue;
    present.push_back(trim_padded(info.label, sizeof info.label));
    if (uri_.matches_token(info) && uri_.matches_slot(slot, slot_info)) {
      matches.push_back(slot);
      matched_info = info;
    }
  }
  if (matches.empty()) {
    std::string list;
    for (const std::string& label : present) list += (list.empty() ? "" : ", ") + ("'" + label + "'");
    throw Error(ErrorCode::Unavailable, "no token matches " + uri_.to_string() + " in module " +
                                            module_->info().path +
                                            (list.empty() ? " (the module has no initialised token)"
                                                          : " (tokens present: " + list + ")"));
  }
  if (matches.size() > 1) {
    throw Error(ErrorCode::InvalidArgument, std::to_string(matches.size()) + " tokens match " + uri_.to_string() +
                                                "; add token=LABEL or serial=SERIAL to select one");
  }
  std::lock_guard lock(state_mutex_);
  slot_ = matches.front();
  token_info_ = matched_info;
}

void Token::open_anchor_and_login() {
  // The PIN is read first: a PIN source that fails leaves no session behind.
  bool pin_pad = (token_info_.flags & CKF_PROTECTED_AUTHENTICATION_PATH) != 0;
  SecretBytes pin = pin_pad ? SecretBytes() : pin_->read();
  CK_SESSION_HANDLE anchor = CK_INVALID_HANDLE;
  check(KH_P11(*module_, C_OpenSession, slot(), CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &anchor),
        "opening a session on token '" + label() + "'");
  // With a PIN pad on the device, C_Login takes no PIN.
  CK_RV rv = KH_P11(*module_, C_Login, anchor, CKU_USER, pin_pad ? nullptr : pin.data(),
                    static_cast<CK_ULONG>(pin.size()));
  pin.wipe();
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
    (void)KH_P11(*module_, C_CloseSession, anchor);
    throw_rv(rv, "logging in to token '" + label() + "' with the " + pin_->describe());
  }
  std::lock_guard lock(state_mutex_);
  anchor_ = anchor;
}

void Token::recover(std::uint64_t failed_generation) {
  std::lock_guard lock(recover_mutex_);
  if (pool_->generation() != failed_generation) return;  // another thread already recovered
  log::info("token '" + label() + "': session or login lost; reopening sessions and logging in again");
  CK_SESSION_HANDLE old_anchor;
  {
    std::lock_guard state(state_mutex_);
    old_anchor = std::exchange(anchor_, CK_INVALID_HANDLE);
  }
  if (old_anchor != CK_INVALID_HANDLE) (void)KH_P11(*module_, C_CloseSession, old_anchor);
  locate();  // the token may be back in another slot
  pool_->reset(slot(), true);
  {
    std::unique_lock handles(handles_mutex_);
    handles_.clear();
  }
  if (pin_) open_anchor_and_login();
}

void Token::follow_process() {
  std::lock_guard lock(recover_mutex_);
  std::uint64_t generation = module_->generation();
  if (generation == module_generation_) return;
  // A forked child: every session we hold belongs to the parent; leave them
  // alone, open our own and log in.
  pool_->reset(slot(), false);
  {
    std::lock_guard state(state_mutex_);
    anchor_ = CK_INVALID_HANDLE;
  }
  {
    std::unique_lock handles(handles_mutex_);
    handles_.clear();
  }
  locate();
  pool_->reset(slot(), false);
  if (pin_) open_anchor_and_login();
  module_generation_ = generation;
}

bool Token::logged_in() const {
  CK_SESSION_HANDLE anchor;
  {
    std::lock_guard lock(state_mutex_);
    anchor = anchor_;
  }
  if (anchor == CK_INVALID_HANDLE) return false;
  CK_SESSION_INFO info{};
  if (KH_P11(*module_, C_GetSessionInfo, anchor, &info) != CKR_OK) return false;
  return info.state == CKS_RO_USER_FUNCTIONS || info.state == CKS_RW_USER_FUNCTIONS;
}

CK_SLOT_ID Token::slot() const {
  std::lock_guard lock(state_mutex_);
  return slot_;
}

std::string Token::label() const {
  std::lock_guard lock(state_mutex_);
  return trim_padded(token_info_.label, sizeof token_info_.label);
}

std::string Token::cache_key(const ObjectRef& ref) {
  std::string key(sizeof ref.object_class, '\0');
  std::memcpy(key.data(), &ref.object_class, sizeof ref.object_class);
  key.append(ref.id.begin(), ref.id.end());
  return key;
}

CK_OBJECT_HANDLE Token::resolve(CK_SESSION_HANDLE session, const ObjectRef& ref) {
  // The hot path: the key of a usual CKA_ID is built on the stack, so a hit
  // allocates nothing.
  char buffer[sizeof(CK_OBJECT_CLASS) + 64];
  std::string long_key;
  std::string_view key;
  if (ref.id.size() <= 64) {
    std::memcpy(buffer, &ref.object_class, sizeof ref.object_class);
    std::memcpy(buffer + sizeof ref.object_class, ref.id.data(), ref.id.size());
    key = std::string_view(buffer, sizeof ref.object_class + ref.id.size());
  } else {
    long_key = cache_key(ref);
    key = long_key;
  }
  {
    std::shared_lock lock(handles_mutex_);
    if (auto it = handles_.find(key); it != handles_.end()) return it->second;
  }
  AttributeTemplate match;
  match.set_ulong(CKA_CLASS, ref.object_class).set_bytes(CKA_ID, ref.id);
  std::vector<CK_OBJECT_HANDLE> found = find_on(*module_, session, match, 2);
  if (found.empty()) {
    // Private objects are invisible without a login: if it was lost, say so,
    // so that run() logs in again and retries.
    if (pin_ && !logged_in()) throw_rv(CKR_USER_NOT_LOGGED_IN, "finding key " + to_hex(ref.id));
    throw Error(ErrorCode::NotFound, "token '" + label() + "' has no object with CKA_ID " + to_hex(ref.id));
  }
  if (found.size() > 1) {
    throw Error(ErrorCode::FailedPrecondition,
                "token '" + label() + "' has several objects of one class with CKA_ID " + to_hex(ref.id) +
                    "; keyhold will not guess which one to use");
  }
  std::unique_lock lock(handles_mutex_);
  handles_.insert_or_assign(std::string(key), found.front());
  return found.front();
}

namespace {

// C_SignInit + C_Sign, or C_EncryptInit + C_Encrypt: one single-part
// operation (multi-part ones are broken for hashed ECDSA in SoftHSM 2.6.1,
// SoftHSMv2 PR 683), sized by the hint or a size query, growing once on
// CKR_BUFFER_TOO_SMALL (the operation stays active then, PKCS#11 v2.40 5.2).
template <auto Init, auto Operation>
std::vector<std::uint8_t> single_part(const Module& module, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key,
                                      CK_MECHANISM mechanism, std::span<const std::uint8_t> input,
                                      std::size_t size_hint, const char* init_name, const char* name,
                                      const char* starting, const char* what) {
  check(module.call<Init>(init_name, session, &mechanism, key), starting);
  // An empty input may come as a null pointer, which tokens refuse
  // (CKR_ARGUMENTS_BAD) even with a length of 0.
  static CK_BYTE nothing = 0;
  auto* data = input.empty() ? &nothing : const_cast<CK_BYTE*>(input.data());
  CK_ULONG length = size_hint;
  if (size_hint == 0) check(module.call<Operation>(name, session, data, input.size(), nullptr, &length), what);
  std::vector<std::uint8_t> output(length);
  CK_RV rv = module.call<Operation>(name, session, data, input.size(), output.data(), &length);
  if (rv == CKR_BUFFER_TOO_SMALL) {
    output.resize(length);
    rv = module.call<Operation>(name, session, data, input.size(), output.data(), &length);
  }
  check(rv, what);
  output.resize(length);
  return output;
}

}  // namespace

std::vector<std::uint8_t> Token::sign(const ObjectRef& key, CK_MECHANISM mechanism, std::span<const std::uint8_t> data,
                                      std::size_t size_hint) {
  return run([&](CK_SESSION_HANDLE session) {
    return single_part<&CK_FUNCTION_LIST::C_SignInit, &CK_FUNCTION_LIST::C_Sign>(
        *module_, session, resolve(session, key), mechanism, data, size_hint, "C_SignInit", "C_Sign",
        "starting a signature", "signing");
  });
}

std::vector<std::uint8_t> Token::encrypt(const ObjectRef& key, CK_MECHANISM mechanism,
                                         std::span<const std::uint8_t> plaintext, std::size_t size_hint) {
  return run([&](CK_SESSION_HANDLE session) {
    return single_part<&CK_FUNCTION_LIST::C_EncryptInit, &CK_FUNCTION_LIST::C_Encrypt>(
        *module_, session, resolve(session, key), mechanism, plaintext, size_hint, "C_EncryptInit", "C_Encrypt",
        "starting an encryption", "encrypting");
  });
}

SecretBytes Token::decrypt(const ObjectRef& key, CK_MECHANISM mechanism, std::span<const std::uint8_t> ciphertext) {
  return run([&](CK_SESSION_HANDLE session) {
    CK_OBJECT_HANDLE handle = resolve(session, key);
    CK_MECHANISM m = mechanism;
    check(KH_P11(*module_, C_DecryptInit, session, &m, handle), "starting a decryption");
    auto* input = const_cast<CK_BYTE*>(ciphertext.data());
    // The plaintext is never longer than the ciphertext for the mechanisms keyhold uses.
    SecretBytes plaintext(ciphertext.size());
    CK_ULONG length = plaintext.size();
    CK_RV rv = KH_P11(*module_, C_Decrypt, session, input, ciphertext.size(), plaintext.data(), &length);
    if (rv == CKR_BUFFER_TOO_SMALL) {
      plaintext = SecretBytes(length);
      rv = KH_P11(*module_, C_Decrypt, session, input, ciphertext.size(), plaintext.data(), &length);
    }
    check(rv, "decrypting");
    plaintext.truncate(length);
    return plaintext;
  });
}

std::vector<std::uint8_t> Token::random(std::size_t size) {
  return run([&](CK_SESSION_HANDLE session) {
    std::vector<std::uint8_t> bytes(size);
    check(KH_P11(*module_, C_GenerateRandom, session, bytes.data(), bytes.size()),
          "drawing random bytes from the token");
    return bytes;
  });
}

KeyPairHandles Token::generate_key_pair(CK_MECHANISM mechanism, AttributeTemplate& public_template,
                                        AttributeTemplate& private_template) {
  std::lock_guard serial(keygen_mutex());
  return run([&](CK_SESSION_HANDLE session) {
    KeyPairHandles handles{CK_INVALID_HANDLE, CK_INVALID_HANDLE};
    CK_MECHANISM m = mechanism;
    check(KH_P11(*module_, C_GenerateKeyPair, session, &m, public_template.data(), public_template.size(),
                 private_template.data(), private_template.size(), &handles.public_key, &handles.private_key),
          "generating a key pair in the token");
    return handles;
  });
}

CK_OBJECT_HANDLE Token::generate_key(CK_MECHANISM mechanism, AttributeTemplate& key_template) {
  std::lock_guard serial(keygen_mutex());
  return run([&](CK_SESSION_HANDLE session) {
    CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
    CK_MECHANISM m = mechanism;
    check(KH_P11(*module_, C_GenerateKey, session, &m, key_template.data(), key_template.size(), &handle),
          "generating a key in the token");
    return handle;
  });
}

std::vector<CK_OBJECT_HANDLE> Token::find(AttributeTemplate& match) {
  return run([&](CK_SESSION_HANDLE session) { return find_on(*module_, session, match, 0); });
}

AttributeValues Token::read_on(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                               std::span<const CK_ATTRIBUTE_TYPE> types) {
  // Per PKCS#11 v2.40 section 5.7 (C_GetAttributeValue), attributes that are
  // sensitive or absent come back as CK_UNAVAILABLE_INFORMATION while the
  // others are still filled in; those return values are not failures here.
  auto tolerable = [](CK_RV rv) {
    return rv == CKR_OK || rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID;
  };
  std::vector<CK_ATTRIBUTE> query;
  for (CK_ATTRIBUTE_TYPE type : types) query.push_back(CK_ATTRIBUTE{type, nullptr, 0});
  CK_RV rv = KH_P11(*module_, C_GetAttributeValue, session, object, query.data(), query.size());
  if (!tolerable(rv)) check(rv, "reading attributes of a token object");

  std::vector<CK_ATTRIBUTE> fetch;
  std::deque<std::vector<std::uint8_t>> buffers;
  for (const CK_ATTRIBUTE& a : query) {
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) continue;
    std::vector<std::uint8_t>& buffer = buffers.emplace_back(a.ulValueLen);
    fetch.push_back(CK_ATTRIBUTE{a.type, buffer.data(), a.ulValueLen});
  }
  AttributeValues values;
  if (fetch.empty()) return values;
  rv = KH_P11(*module_, C_GetAttributeValue, session, object, fetch.data(), fetch.size());
  if (!tolerable(rv)) check(rv, "reading attributes of a token object");
  for (std::size_t i = 0; i < fetch.size(); ++i) {
    if (fetch[i].ulValueLen == CK_UNAVAILABLE_INFORMATION) continue;
    buffers[i].resize(fetch[i].ulValueLen);
    values.put(fetch[i].type, std::move(buffers[i]));
  }
  return values;
}

AttributeValues Token::read(CK_OBJECT_HANDLE object, std::span<const CK_ATTRIBUTE_TYPE> types) {
  return run([&](CK_SESSION_HANDLE session) { return read_on(session, object, types); });
}

AttributeValues Token::read(const ObjectRef& ref, std::span<const CK_ATTRIBUTE_TYPE> types) {
  return run([&](CK_SESSION_HANDLE session) { return read_on(session, resolve(session, ref), types); });
}

void Token::destroy(const ObjectRef& ref) {
  run([&](CK_SESSION_HANDLE session) {
    CK_OBJECT_HANDLE handle = resolve(session, ref);
    check(KH_P11(*module_, C_DestroyObject, session, handle), "destroying a token object");
    return 0;
  });
  std::unique_lock lock(handles_mutex_);
  handles_.erase(cache_key(ref));
}

TokenActivity Token::activity() const {
  TokenActivity activity;
  activity.operations = call_latency_.snapshot();
  activity.failures = call_failures_.load(std::memory_order_relaxed);
  SessionPoolStats pool = pool_->stats();
  activity.sessions_idle = pool.idle;
  activity.sessions_leased = pool.leased;
  activity.sessions_limit = pool.limit;
  return activity;
}

TokenDescription Token::describe() const {
  CK_SLOT_ID slot_id = slot();
  TokenDescription d;
  CK_TOKEN_INFO info{};
  check(KH_P11(*module_, C_GetTokenInfo, slot_id, &info), "reading token information");
  CK_SLOT_INFO slot_info{};
  check(KH_P11(*module_, C_GetSlotInfo, slot_id, &slot_info), "reading slot information");
  d.uri = Uri::for_token(info);
  d.label = trim_padded(info.label, sizeof info.label);
  d.manufacturer = trim_padded(info.manufacturerID, sizeof info.manufacturerID);
  d.model = trim_padded(info.model, sizeof info.model);
  d.serial = trim_padded(info.serialNumber, sizeof info.serialNumber);
  d.slot_id = slot_id;
  d.slot_description = trim_padded(slot_info.slotDescription, sizeof slot_info.slotDescription);
  d.hardware_version = version_string(info.hardwareVersion);
  d.firmware_version = version_string(info.firmwareVersion);
  d.flags = token_flag_names(info.flags);
  d.max_sessions = finite(info.ulMaxSessionCount);
  d.session_count = info.ulSessionCount == CK_UNAVAILABLE_INFORMATION ? 0 : info.ulSessionCount;
  d.free_private_memory = finite(info.ulFreePrivateMemory);
  d.total_private_memory = finite(info.ulTotalPrivateMemory);
  CK_ULONG count = 0;
  if (KH_P11(*module_, C_GetMechanismList, slot_id, nullptr, &count) == CKR_OK) {
    d.mechanisms.resize(count);
    if (KH_P11(*module_, C_GetMechanismList, slot_id, d.mechanisms.data(), &count) == CKR_OK) {
      d.mechanisms.resize(count);
    } else {
      d.mechanisms.clear();
    }
  }
  d.module = module_->info();
  return d;
}

}  // namespace keyhold::hsm
