// A PKCS#11 module with scripted faults, for what SoftHSM cannot produce:
// a removed device, a token out of sessions, a locked PIN, a stale object
// handle, a module that reports CKR_BUFFER_TOO_SMALL. It implements just
// enough of one token for keyhold::hsm::Module and Token (see
// fake_pkcs11_control.hpp for the token and the control API); every other
// function returns CKR_FUNCTION_NOT_SUPPORTED. One mutex serialises it all.
//
// Only C_GetFunctionList and the fake_p11_* control functions are exported;
// the implementations have internal linkage so that they can never bind to
// another library's C_* symbols (libp11-kit exports C_GetFunctionList).

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/fake_pkcs11/fake_pkcs11_control.hpp"

// After the standard headers: p11-kit's header defines lower-case macros
// (count, value, reserved, ...) for its compatibility names.
#include <p11-kit/pkcs11.h>

#define FAKE_P11_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr CK_SLOT_ID kSlot = 7;
constexpr const char* kUserPin = "1234";
const std::vector<std::uint8_t> kKeyId = {1, 2, 3, 4};

struct ScriptedFailure {
  CK_RV rv;
  int times;
};

struct Session {
  CK_FLAGS flags = 0;
  enum class Operation { None, Find, Sign } operation = Operation::None;
  std::vector<CK_OBJECT_HANDLE> found;  // Find: results not yet returned
  bool short_buffer_reported = false;   // Sign: the pretence was made once
};

struct State {
  bool initialized = false;
  // Script and counters (fake_p11_reset clears them).
  std::map<std::string, std::vector<ScriptedFailure>> script;
  std::map<std::string, unsigned> delay_ms;
  std::map<std::string, unsigned long> calls;
  long max_sessions = -1;
  bool sign_reports_short_buffer = false;
  bool pin_locked = false;
  unsigned long peak_sessions = 0;
  // The token.
  std::map<CK_SESSION_HANDLE, Session> sessions;
  CK_SESSION_HANDLE next_session = 0x10;  // never reused, so a stale handle never aliases a new session
  bool logged_in = false;
  CK_OBJECT_HANDLE key_handle = 0x100;
  std::uint8_t random_counter = 0;
};

std::mutex g_mutex;
State g_state;

// One call into the module: takes the lock, counts the call, applies the
// script; on the way out releases the lock, then sleeps any scripted delay.
class Call {
 public:
  explicit Call(const char* name, bool needs_initialized = true) : lock_(g_mutex) {
    ++g_state.calls[name];
    if (auto it = g_state.delay_ms.find(name); it != g_state.delay_ms.end()) delay_ms_ = it->second;
    if (auto it = g_state.script.find(name); it != g_state.script.end() && !it->second.empty()) {
      ScriptedFailure& next = it->second.front();
      early_ = next.rv;
      if (--next.times <= 0) it->second.erase(it->second.begin());
      return;
    }
    if (needs_initialized && !g_state.initialized) early_ = CKR_CRYPTOKI_NOT_INITIALIZED;
  }
  ~Call() {
    lock_.unlock();
    if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
  }
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

  // The result to return before doing anything: scripted, or not initialised.
  std::optional<CK_RV> early() const { return early_; }

 private:
  std::unique_lock<std::mutex> lock_;
  std::optional<CK_RV> early_;
  unsigned delay_ms_ = 0;
};

#define FAKE_P11_ENTER(...)                   \
  Call call(__VA_ARGS__);                     \
  if (auto early = call.early()) return *early

void pad(unsigned char* field, std::size_t size, const char* text) {
  std::memset(field, ' ', size);
  std::memcpy(field, text, std::min(size, std::strlen(text)));
}

Session* find_session(CK_SESSION_HANDLE handle) {
  auto it = g_state.sessions.find(handle);
  return it == g_state.sessions.end() ? nullptr : &it->second;
}

// --- the key object ---

std::vector<std::uint8_t> ulong_bytes(CK_ULONG v) {
  std::vector<std::uint8_t> bytes(sizeof v);
  std::memcpy(bytes.data(), &v, sizeof v);
  return bytes;
}

std::vector<std::uint8_t> bool_bytes(bool b) { return {static_cast<std::uint8_t>(b ? CK_TRUE : CK_FALSE)}; }

// The key's attributes; CKA_VALUE is present but sensitive.
const std::map<CK_ATTRIBUTE_TYPE, std::vector<std::uint8_t>>& key_attributes() {
  static const std::map<CK_ATTRIBUTE_TYPE, std::vector<std::uint8_t>> attributes = {
      {CKA_CLASS, ulong_bytes(CKO_PRIVATE_KEY)},
      {CKA_KEY_TYPE, ulong_bytes(CKK_EC)},
      {CKA_ID, kKeyId},
      {CKA_LABEL, {'f', 'a', 'k', 'e', '-', 'k', 'e', 'y'}},
      {CKA_TOKEN, bool_bytes(true)},
      {CKA_PRIVATE, bool_bytes(true)},
      {CKA_SENSITIVE, bool_bytes(true)},
      {CKA_ALWAYS_SENSITIVE, bool_bytes(true)},
      {CKA_EXTRACTABLE, bool_bytes(false)},
      {CKA_NEVER_EXTRACTABLE, bool_bytes(true)},
      {CKA_SIGN, bool_bytes(true)},
      {CKA_DECRYPT, bool_bytes(false)},
      {CKA_UNWRAP, bool_bytes(false)},
      {CKA_DERIVE, bool_bytes(false)},
      // DER OID 1.2.840.10045.3.1.7 (P-256), RFC 5480 section 2.1.1.1.
      {CKA_EC_PARAMS, {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}},
      {CKA_VALUE, {}},
  };
  return attributes;
}

// Private objects are invisible without a login (PKCS#11 v2.40 section 4.4).
bool key_visible(CK_OBJECT_HANDLE handle) { return g_state.logged_in && handle == g_state.key_handle; }

bool key_matches(const CK_ATTRIBUTE* match, CK_ULONG n) {
  const auto& attributes = key_attributes();
  for (CK_ULONG i = 0; i < n; ++i) {
    auto it = attributes.find(match[i].type);
    if (it == attributes.end() || match[i].type == CKA_VALUE) return false;
    if (match[i].ulValueLen != it->second.size()) return false;
    if (!it->second.empty() && std::memcmp(match[i].pValue, it->second.data(), it->second.size()) != 0) return false;
  }
  return true;
}

// --- general purpose ---

CK_RV Initialize(CK_VOID_PTR init_args) {
  FAKE_P11_ENTER("C_Initialize", false);
  if (g_state.initialized) return CKR_CRYPTOKI_ALREADY_INITIALIZED;
  if (init_args != nullptr && static_cast<CK_C_INITIALIZE_ARGS*>(init_args)->pReserved != nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  g_state.initialized = true;
  return CKR_OK;
}

CK_RV Finalize(CK_VOID_PTR reserved_arg) {
  FAKE_P11_ENTER("C_Finalize");
  if (reserved_arg != nullptr) return CKR_ARGUMENTS_BAD;
  g_state.initialized = false;
  g_state.sessions.clear();
  g_state.logged_in = false;
  return CKR_OK;
}

CK_RV GetInfo(CK_INFO_PTR info) {
  FAKE_P11_ENTER("C_GetInfo");
  if (info == nullptr) return CKR_ARGUMENTS_BAD;
  *info = CK_INFO{};
  info->cryptokiVersion = {2, 40};
  pad(info->manufacturerID, sizeof info->manufacturerID, "keyhold tests");
  pad(info->libraryDescription, sizeof info->libraryDescription, "keyhold fake PKCS#11 module");
  info->libraryVersion = {1, 0};
  return CKR_OK;
}

// --- slots and tokens ---

CK_RV GetSlotList(CK_BBOOL, CK_SLOT_ID_PTR list, CK_ULONG_PTR n) {
  FAKE_P11_ENTER("C_GetSlotList");
  if (n == nullptr) return CKR_ARGUMENTS_BAD;
  if (list == nullptr) {
    *n = 1;
    return CKR_OK;
  }
  if (*n < 1) {
    *n = 1;
    return CKR_BUFFER_TOO_SMALL;
  }
  list[0] = kSlot;
  *n = 1;
  return CKR_OK;
}

CK_RV GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info) {
  FAKE_P11_ENTER("C_GetSlotInfo");
  if (slot != kSlot) return CKR_SLOT_ID_INVALID;
  if (info == nullptr) return CKR_ARGUMENTS_BAD;
  *info = CK_SLOT_INFO{};
  pad(info->slotDescription, sizeof info->slotDescription, "fake slot");
  pad(info->manufacturerID, sizeof info->manufacturerID, "keyhold tests");
  info->flags = CKF_TOKEN_PRESENT;
  info->hardwareVersion = {1, 0};
  info->firmwareVersion = {1, 0};
  return CKR_OK;
}

CK_RV GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
  FAKE_P11_ENTER("C_GetTokenInfo");
  if (slot != kSlot) return CKR_SLOT_ID_INVALID;
  if (info == nullptr) return CKR_ARGUMENTS_BAD;
  *info = CK_TOKEN_INFO{};
  pad(info->label, sizeof info->label, "fake");
  pad(info->manufacturerID, sizeof info->manufacturerID, "keyhold tests");
  pad(info->model, sizeof info->model, "fake_pkcs11");
  pad(info->serialNumber, sizeof info->serialNumber, "0001");
  info->flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED |
                (g_state.pin_locked ? CKF_USER_PIN_LOCKED : 0);
  info->ulMaxSessionCount =
      g_state.max_sessions < 0 ? CK_EFFECTIVELY_INFINITE : static_cast<CK_ULONG>(g_state.max_sessions);
  info->ulSessionCount = g_state.sessions.size();
  info->ulMaxRwSessionCount = info->ulMaxSessionCount;
  info->ulRwSessionCount = static_cast<CK_ULONG>(std::count_if(
      g_state.sessions.begin(), g_state.sessions.end(), [](const auto& s) { return (s.second.flags & CKF_RW_SESSION) != 0; }));
  info->ulMaxPinLen = 255;
  info->ulMinPinLen = 4;
  info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
  info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
  info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
  info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
  info->hardwareVersion = {1, 0};
  info->firmwareVersion = {1, 0};
  pad(info->utcTime, sizeof info->utcTime, "");
  return CKR_OK;
}

CK_RV GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR n) {
  FAKE_P11_ENTER("C_GetMechanismList");
  if (slot != kSlot) return CKR_SLOT_ID_INVALID;
  if (n == nullptr) return CKR_ARGUMENTS_BAD;
  if (list == nullptr) {
    *n = 1;
    return CKR_OK;
  }
  if (*n < 1) {
    *n = 1;
    return CKR_BUFFER_TOO_SMALL;
  }
  list[0] = CKM_ECDSA;
  *n = 1;
  return CKR_OK;
}

// --- sessions and login ---

CK_RV OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR, CK_NOTIFY, CK_SESSION_HANDLE_PTR handle) {
  FAKE_P11_ENTER("C_OpenSession");
  if (slot != kSlot) return CKR_SLOT_ID_INVALID;
  if (handle == nullptr) return CKR_ARGUMENTS_BAD;
  if ((flags & CKF_SERIAL_SESSION) == 0) return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
  if (g_state.max_sessions >= 0 && g_state.sessions.size() >= static_cast<std::size_t>(g_state.max_sessions)) {
    return CKR_SESSION_COUNT;
  }
  *handle = g_state.next_session++;
  g_state.sessions[*handle].flags = flags;
  g_state.peak_sessions = std::max<unsigned long>(g_state.peak_sessions, g_state.sessions.size());
  return CKR_OK;
}

CK_RV CloseSession(CK_SESSION_HANDLE handle) {
  FAKE_P11_ENTER("C_CloseSession");
  if (g_state.sessions.erase(handle) == 0) return CKR_SESSION_HANDLE_INVALID;
  // Closing the application's last session logs it out (PKCS#11 v2.40 section 5.6).
  if (g_state.sessions.empty()) g_state.logged_in = false;
  return CKR_OK;
}

CK_RV CloseAllSessions(CK_SLOT_ID slot) {
  FAKE_P11_ENTER("C_CloseAllSessions");
  if (slot != kSlot) return CKR_SLOT_ID_INVALID;
  g_state.sessions.clear();
  g_state.logged_in = false;
  return CKR_OK;
}

CK_RV GetSessionInfo(CK_SESSION_HANDLE handle, CK_SESSION_INFO_PTR info) {
  FAKE_P11_ENTER("C_GetSessionInfo");
  Session* session = find_session(handle);
  if (session == nullptr) return CKR_SESSION_HANDLE_INVALID;
  if (info == nullptr) return CKR_ARGUMENTS_BAD;
  bool rw = (session->flags & CKF_RW_SESSION) != 0;
  info->slotID = kSlot;
  info->state = g_state.logged_in ? (rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS)
                                  : (rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION);
  info->flags = session->flags;
  info->ulDeviceError = 0;
  return CKR_OK;
}

CK_RV Login(CK_SESSION_HANDLE handle, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_length) {
  FAKE_P11_ENTER("C_Login");
  if (find_session(handle) == nullptr) return CKR_SESSION_HANDLE_INVALID;
  if (user != CKU_USER) return CKR_USER_TYPE_INVALID;
  if (g_state.logged_in) return CKR_USER_ALREADY_LOGGED_IN;
  if (g_state.pin_locked) return CKR_PIN_LOCKED;
  if (pin == nullptr || pin_length != std::strlen(kUserPin) || std::memcmp(pin, kUserPin, pin_length) != 0) {
    return CKR_PIN_INCORRECT;
  }
  g_state.logged_in = true;
  return CKR_OK;
}

CK_RV Logout(CK_SESSION_HANDLE handle) {
  FAKE_P11_ENTER("C_Logout");
  if (find_session(handle) == nullptr) return CKR_SESSION_HANDLE_INVALID;
  if (!g_state.logged_in) return CKR_USER_NOT_LOGGED_IN;
  g_state.logged_in = false;
  return CKR_OK;
}

// --- objects ---

CK_RV GetAttributeValue(CK_SESSION_HANDLE handle, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR attrs, CK_ULONG n) {
  FAKE_P11_ENTER("C_GetAttributeValue");
  if (find_session(handle) == nullptr) return CKR_SESSION_HANDLE_INVALID;
  if (!key_visible(object)) return CKR_OBJECT_HANDLE_INVALID;
  if (attrs == nullptr && n > 0) return CKR_ARGUMENTS_BAD;
  // Every attribute is processed; the result reports the last problem (PKCS#11 v2.40 section 5.7).
  CK_RV rv = CKR_OK;
  const auto& attributes = key_attributes();
  for (CK_ULONG i = 0; i < n; ++i) {
    CK_ATTRIBUTE& a = attrs[i];
    auto it = attributes.find(a.type);
    if (it == attributes.end()) {
      a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
      rv = CKR_ATTRIBUTE_TYPE_INVALID;
    } else if (a.type == CKA_VALUE) {
      a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
      rv = CKR_ATTRIBUTE_SENSITIVE;
    } else if (a.pValue == nullptr) {
      a.ulValueLen = it->second.size();
    } else if (a.ulValueLen < it->second.size()) {
      a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
      rv = CKR_BUFFER_TOO_SMALL;
    } else {
      std::memcpy(a.pValue, it->second.data(), it->second.size());
      a.ulValueLen = it->second.size();
    }
  }
  return rv;
}

CK_RV FindObjectsInit(CK_SESSION_HANDLE handle, CK_ATTRIBUTE_PTR match, CK_ULONG n) {
  FAKE_P11_ENTER("C_FindObjectsInit");
  Session* session = find_session(handle);
  if (session == nullptr) return CKR_SESSION_HANDLE_INVALID;
  if (match == nullptr && n > 0) return CKR_ARGUMENTS_BAD;
  if (session->operation != Session::Operation::None) return CKR_OPERATION_ACTIVE;
  session->operation = Session::Operation::Find;
  session->found.clear();
  if (g_state.logged_in && key_matches(match, n)) session->found.push_back(g_state.key_handle);
  return CKR_OK;
}

CK_RV FindObjects(CK_SESSION_HANDLE handle, CK_OBJECT_HANDLE_PTR objects, CK_ULONG max, CK_ULONG_PTR n) {
  FAKE_P11_ENTER("C_FindObjects");
  Session* session = find_session(handle);
  if (session == nullptr) return CKR_SESSION_HANDLE_INVALID;
  if (objects == nullptr || n == nullptr) return CKR_ARGUMENTS_BAD;
  if (session->operation != Session::Operation::Find) return CKR_OPERATION_NOT_INITIALIZED;
  CK_ULONG given = std::min<CK_ULONG>(max, session->found.size());
  std::copy_n(session->found.begin(), given, objects);
  session->found.erase(session->found.begin(), session->found.begin() + static_cast<std::ptrdiff_t>(given));
  *n = given;
  return CKR_OK;
}

CK_RV FindObjectsFinal(CK_SESSION_HANDLE handle) {
  FAKE_P11_ENTER("C_FindObjectsFinal");
  Session* session = find_session(handle);
  if (session == nullptr) return CKR_SESSION_HANDLE_INVALID;
  if (session->operation != Session::Operation::Find) return CKR_OPERATION_NOT_INITIALIZED;
  session->operation = Session::Operation::None;
  session->found.clear();
  return CKR_OK;
}

// --- signing and random ---

CK_RV SignInit(CK_SESSION_HANDLE handle, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key) {
  FAKE_P11_ENTER("C_SignInit");
  Session* session = find_session(handle);
  if (session == nullptr) return CKR_SESSION_HANDLE_INVALID;
  if (mechanism == nullptr) return CKR_ARGUMENTS_BAD;
  if (session->operation != Session::Operation::None) return CKR_OPERATION_ACTIVE;
  if (!key_visible(key)) return CKR_KEY_HANDLE_INVALID;
  if (mechanism->mechanism != CKM_ECDSA) return CKR_MECHANISM_INVALID;
  session->operation = Session::Operation::Sign;
  session->short_buffer_reported = false;
  return CKR_OK;
}

CK_RV Sign(CK_SESSION_HANDLE handle, CK_BYTE_PTR data, CK_ULONG data_length, CK_BYTE_PTR signature,
           CK_ULONG_PTR signature_length) {
  FAKE_P11_ENTER("C_Sign");
  Session* session = find_session(handle);
  if (session == nullptr) return CKR_SESSION_HANDLE_INVALID;
  if (session->operation != Session::Operation::Sign) return CKR_OPERATION_NOT_INITIALIZED;
  if (signature_length == nullptr || (data == nullptr && data_length > 0)) {
    session->operation = Session::Operation::None;  // an error other than a size answer ends the operation
    return CKR_ARGUMENTS_BAD;
  }
  // PKCS#11 v2.40 section 5.2 ("Conventions for functions returning output in
  // a variable-length buffer"): a size query or a short buffer leaves the
  // operation active.
  if (signature == nullptr) {
    *signature_length = fake_p11::kSignatureSize;
    return CKR_OK;
  }
  bool pretend_short = g_state.sign_reports_short_buffer && !session->short_buffer_reported;
  if (pretend_short || *signature_length < fake_p11::kSignatureSize) {
    session->short_buffer_reported = true;
    *signature_length = fake_p11::kSignatureSize;
    return CKR_BUFFER_TOO_SMALL;
  }
  std::vector<std::uint8_t> result = fake_p11::expected_signature({data, data_length});
  std::memcpy(signature, result.data(), result.size());
  *signature_length = result.size();
  session->operation = Session::Operation::None;
  return CKR_OK;
}

CK_RV GenerateRandom(CK_SESSION_HANDLE handle, CK_BYTE_PTR out, CK_ULONG length) {
  FAKE_P11_ENTER("C_GenerateRandom");
  if (find_session(handle) == nullptr) return CKR_SESSION_HANDLE_INVALID;
  if (out == nullptr && length > 0) return CKR_ARGUMENTS_BAD;
  for (CK_ULONG i = 0; i < length; ++i) out[i] = g_state.random_counter++;
  return CKR_OK;
}

CK_RV GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

// Every v2.40 function not implemented above: counted, scriptable, unsupported.
#define FAKE_P11_UNSUPPORTED(name)                                   \
  functions.name = [](auto...) -> CK_RV {                            \
    FAKE_P11_ENTER(#name);                                           \
    return CKR_FUNCTION_NOT_SUPPORTED;                               \
  };

CK_FUNCTION_LIST make_function_list() {
  CK_FUNCTION_LIST functions{};
  functions.version = {2, 40};
  FAKE_P11_UNSUPPORTED(C_GetMechanismInfo)
  FAKE_P11_UNSUPPORTED(C_InitToken)
  FAKE_P11_UNSUPPORTED(C_InitPIN)
  FAKE_P11_UNSUPPORTED(C_SetPIN)
  FAKE_P11_UNSUPPORTED(C_GetOperationState)
  FAKE_P11_UNSUPPORTED(C_SetOperationState)
  FAKE_P11_UNSUPPORTED(C_CreateObject)
  FAKE_P11_UNSUPPORTED(C_CopyObject)
  FAKE_P11_UNSUPPORTED(C_DestroyObject)
  FAKE_P11_UNSUPPORTED(C_GetObjectSize)
  FAKE_P11_UNSUPPORTED(C_SetAttributeValue)
  FAKE_P11_UNSUPPORTED(C_EncryptInit)
  FAKE_P11_UNSUPPORTED(C_Encrypt)
  FAKE_P11_UNSUPPORTED(C_EncryptUpdate)
  FAKE_P11_UNSUPPORTED(C_EncryptFinal)
  FAKE_P11_UNSUPPORTED(C_DecryptInit)
  FAKE_P11_UNSUPPORTED(C_Decrypt)
  FAKE_P11_UNSUPPORTED(C_DecryptUpdate)
  FAKE_P11_UNSUPPORTED(C_DecryptFinal)
  FAKE_P11_UNSUPPORTED(C_DigestInit)
  FAKE_P11_UNSUPPORTED(C_Digest)
  FAKE_P11_UNSUPPORTED(C_DigestUpdate)
  FAKE_P11_UNSUPPORTED(C_DigestKey)
  FAKE_P11_UNSUPPORTED(C_DigestFinal)
  FAKE_P11_UNSUPPORTED(C_SignUpdate)
  FAKE_P11_UNSUPPORTED(C_SignFinal)
  FAKE_P11_UNSUPPORTED(C_SignRecoverInit)
  FAKE_P11_UNSUPPORTED(C_SignRecover)
  FAKE_P11_UNSUPPORTED(C_VerifyInit)
  FAKE_P11_UNSUPPORTED(C_Verify)
  FAKE_P11_UNSUPPORTED(C_VerifyUpdate)
  FAKE_P11_UNSUPPORTED(C_VerifyFinal)
  FAKE_P11_UNSUPPORTED(C_VerifyRecoverInit)
  FAKE_P11_UNSUPPORTED(C_VerifyRecover)
  FAKE_P11_UNSUPPORTED(C_DigestEncryptUpdate)
  FAKE_P11_UNSUPPORTED(C_DecryptDigestUpdate)
  FAKE_P11_UNSUPPORTED(C_SignEncryptUpdate)
  FAKE_P11_UNSUPPORTED(C_DecryptVerifyUpdate)
  FAKE_P11_UNSUPPORTED(C_GenerateKey)
  FAKE_P11_UNSUPPORTED(C_GenerateKeyPair)
  FAKE_P11_UNSUPPORTED(C_WrapKey)
  FAKE_P11_UNSUPPORTED(C_UnwrapKey)
  FAKE_P11_UNSUPPORTED(C_DeriveKey)
  FAKE_P11_UNSUPPORTED(C_SeedRandom)
  FAKE_P11_UNSUPPORTED(C_GetFunctionStatus)
  FAKE_P11_UNSUPPORTED(C_CancelFunction)
  FAKE_P11_UNSUPPORTED(C_WaitForSlotEvent)
  functions.C_Initialize = Initialize;
  functions.C_Finalize = Finalize;
  functions.C_GetInfo = GetInfo;
  functions.C_GetFunctionList = GetFunctionList;
  functions.C_GetSlotList = GetSlotList;
  functions.C_GetSlotInfo = GetSlotInfo;
  functions.C_GetTokenInfo = GetTokenInfo;
  functions.C_GetMechanismList = GetMechanismList;
  functions.C_OpenSession = OpenSession;
  functions.C_CloseSession = CloseSession;
  functions.C_CloseAllSessions = CloseAllSessions;
  functions.C_GetSessionInfo = GetSessionInfo;
  functions.C_Login = Login;
  functions.C_Logout = Logout;
  functions.C_GetAttributeValue = GetAttributeValue;
  functions.C_FindObjectsInit = FindObjectsInit;
  functions.C_FindObjects = FindObjects;
  functions.C_FindObjectsFinal = FindObjectsFinal;
  functions.C_SignInit = SignInit;
  functions.C_Sign = Sign;
  functions.C_GenerateRandom = GenerateRandom;
  return functions;
}

CK_FUNCTION_LIST g_functions = make_function_list();

CK_RV GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  FAKE_P11_ENTER("C_GetFunctionList", false);
  if (list == nullptr) return CKR_ARGUMENTS_BAD;
  *list = &g_functions;
  return CKR_OK;
}

}  // namespace

FAKE_P11_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) { return GetFunctionList(list); }

// --- control API (fake_pkcs11_control.hpp) ---

FAKE_P11_EXPORT void fake_p11_reset(void) {
  std::lock_guard lock(g_mutex);
  g_state.script.clear();
  g_state.delay_ms.clear();
  g_state.calls.clear();
  g_state.max_sessions = -1;
  g_state.sign_reports_short_buffer = false;
  g_state.pin_locked = false;
  g_state.sessions.clear();
  g_state.logged_in = false;
  g_state.peak_sessions = 0;
}

FAKE_P11_EXPORT void fake_p11_fail_next(const char* function, unsigned long rv, int times) {
  if (function == nullptr || times <= 0) return;
  std::lock_guard lock(g_mutex);
  g_state.script[function].push_back(ScriptedFailure{rv, times});
}

FAKE_P11_EXPORT void fake_p11_set_delay_ms(const char* function, unsigned ms) {
  if (function == nullptr) return;
  std::lock_guard lock(g_mutex);
  g_state.delay_ms[function] = ms;
}

FAKE_P11_EXPORT void fake_p11_set_max_sessions(long max) {
  std::lock_guard lock(g_mutex);
  g_state.max_sessions = max;
}

FAKE_P11_EXPORT void fake_p11_set_sign_reports_short_buffer(bool on) {
  std::lock_guard lock(g_mutex);
  g_state.sign_reports_short_buffer = on;
}

FAKE_P11_EXPORT void fake_p11_set_pin_locked(bool on) {
  std::lock_guard lock(g_mutex);
  g_state.pin_locked = on;
}

FAKE_P11_EXPORT void fake_p11_renumber_objects(void) {
  std::lock_guard lock(g_mutex);
  ++g_state.key_handle;
}

FAKE_P11_EXPORT unsigned long fake_p11_calls(const char* function) {
  if (function == nullptr) return 0;
  std::lock_guard lock(g_mutex);
  auto it = g_state.calls.find(function);
  return it == g_state.calls.end() ? 0 : it->second;
}

FAKE_P11_EXPORT unsigned long fake_p11_open_sessions(void) {
  std::lock_guard lock(g_mutex);
  return g_state.sessions.size();
}

FAKE_P11_EXPORT unsigned long fake_p11_peak_sessions(void) {
  std::lock_guard lock(g_mutex);
  return g_state.peak_sessions;
}

FAKE_P11_EXPORT bool fake_p11_logged_in(void) {
  std::lock_guard lock(g_mutex);
  return g_state.logged_in;
}
