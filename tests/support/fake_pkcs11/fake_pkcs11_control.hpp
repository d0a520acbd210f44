#pragma once
// Control API of the fake PKCS#11 module (keyhold_fake_pkcs11.so): scripts
// faults that SoftHSM cannot produce and counts calls. Thread-safe: it shares
// one mutex with the module's PKCS#11 functions.
//
// The functions live in the module, which tests never link: they reach the
// very copy keyhold loaded through fake_p11::Control below (dlopen with
// RTLD_NOLOAD + dlsym), after keyhold::hsm::Module::load() mapped it.
//
// The token: one slot (id 7) holding an initialised token labelled "fake",
// serial "0001", user PIN "1234", with one private EC key (CKA_ID 01 02 03 04,
// CKA_SIGN only) that is visible only while the application is logged in.
// C_Sign with CKM_ECDSA returns the 64-byte fake_p11::expected_signature(data).

#include <dlfcn.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

extern "C" {
// Back to a fresh token: no script, no delays, counters at zero, no session
// open, logged out, no session limit, PIN not locked, no short-buffer pretence.
void fake_p11_reset(void);
// The next `times` calls of `function` (e.g. "C_Sign") return rv (a CK_RV) and
// do nothing else: an active operation stays active, no session is opened.
void fake_p11_fail_next(const char* function, unsigned long rv, int times);
// Each call of `function` sleeps `ms` milliseconds after it has decided its
// result and released the module's lock (widens races between callers).
void fake_p11_set_delay_ms(const char* function, unsigned ms);
// C_OpenSession returns CKR_SESSION_COUNT while `max` sessions are open
// (every session counts, the one holding keyhold's login too). Negative: no limit.
void fake_p11_set_max_sessions(long max);
// The first C_Sign with an output buffer of each signing operation returns
// CKR_BUFFER_TOO_SMALL (with the needed length, operation still active) even
// when the buffer is large enough.
void fake_p11_set_sign_reports_short_buffer(bool on);
// C_Login returns CKR_PIN_LOCKED.
void fake_p11_set_pin_locked(bool on);
// Gives the key object a new handle: a handle cached before is stale
// (CKR_KEY_HANDLE_INVALID / CKR_OBJECT_HANDLE_INVALID).
void fake_p11_renumber_objects(void);
// Calls of `function` since the last reset, scripted failures included.
unsigned long fake_p11_calls(const char* function);
// Sessions open now, and the most that were open at once since the last reset.
unsigned long fake_p11_open_sessions(void);
unsigned long fake_p11_peak_sessions(void);
// Whether the application is logged in as the user.
bool fake_p11_logged_in(void);
}

namespace fake_p11 {

inline constexpr std::size_t kSignatureSize = 64;

// The deterministic "signature" the fake returns for data.
inline std::vector<std::uint8_t> expected_signature(std::span<const std::uint8_t> data) {
  std::vector<std::uint8_t> signature(kSignatureSize);
  for (std::size_t i = 0; i < kSignatureSize; ++i) {
    std::uint8_t mix = data.empty() ? 0 : data[i % data.size()];
    signature[i] = static_cast<std::uint8_t>(0x5A ^ i ^ mix);
  }
  return signature;
}

// The control functions of the already loaded module at module_path.
class Control {
 public:
  explicit Control(const char* module_path) : handle_(::dlopen(module_path, RTLD_NOW | RTLD_NOLOAD)) {
    if (handle_ == nullptr) {
      throw std::runtime_error(std::string("the fake PKCS#11 module is not loaded yet: ") + module_path);
    }
    bind(reset, "fake_p11_reset");
    bind(fail_next, "fake_p11_fail_next");
    bind(set_delay_ms, "fake_p11_set_delay_ms");
    bind(set_max_sessions, "fake_p11_set_max_sessions");
    bind(set_sign_reports_short_buffer, "fake_p11_set_sign_reports_short_buffer");
    bind(set_pin_locked, "fake_p11_set_pin_locked");
    bind(renumber_objects, "fake_p11_renumber_objects");
    bind(calls, "fake_p11_calls");
    bind(open_sessions, "fake_p11_open_sessions");
    bind(peak_sessions, "fake_p11_peak_sessions");
    bind(logged_in, "fake_p11_logged_in");
  }
  ~Control() { ::dlclose(handle_); }  // drops only the reference RTLD_NOLOAD added
  Control(const Control&) = delete;
  Control& operator=(const Control&) = delete;

  decltype(&::fake_p11_reset) reset = nullptr;
  decltype(&::fake_p11_fail_next) fail_next = nullptr;
  decltype(&::fake_p11_set_delay_ms) set_delay_ms = nullptr;
  decltype(&::fake_p11_set_max_sessions) set_max_sessions = nullptr;
  decltype(&::fake_p11_set_sign_reports_short_buffer) set_sign_reports_short_buffer = nullptr;
  decltype(&::fake_p11_set_pin_locked) set_pin_locked = nullptr;
  decltype(&::fake_p11_renumber_objects) renumber_objects = nullptr;
  decltype(&::fake_p11_calls) calls = nullptr;
  decltype(&::fake_p11_open_sessions) open_sessions = nullptr;
  decltype(&::fake_p11_peak_sessions) peak_sessions = nullptr;
  decltype(&::fake_p11_logged_in) logged_in = nullptr;

 private:
  template <class F>
  void bind(F& function, const char* name) {
    void* symbol = ::dlsym(handle_, name);
    if (symbol == nullptr) throw std::runtime_error(std::string("the fake PKCS#11 module has no ") + name);
    static_assert(sizeof function == sizeof symbol);
    std::memcpy(&function, &symbol, sizeof function);  // POSIX: dlsym's object pointer is the function's address
  }

  void* handle_;
};

}  // namespace fake_p11
