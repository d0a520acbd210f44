#include "keyhold/hsm/module.hpp"

#include <p11-kit/p11-kit.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/process.hpp"
#include "keyhold/hsm/uri.hpp"

namespace keyhold::hsm {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, std::weak_ptr<Module>> by_path;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: modules may outlive static destruction
  return *r;
}

std::string version_string(const CK_VERSION& v) {
  return std::to_string(v.major) + "." + std::to_string(v.minor);
}

using CString = CPtr<char, &std::free>;

// p11-kit's registry: the registered module of that name, or Unavailable
// naming the modules that are registered.
std::pair<CK_FUNCTION_LIST*, std::string> load_registered(const std::string& name) {
  CK_FUNCTION_LIST** modules = p11_kit_modules_load(nullptr, P11_KIT_MODULE_UNMANAGED);
  if (modules == nullptr) {
    throw Error(ErrorCode::Unavailable, "cannot read p11-kit's module registry to find PKCS#11 module '" + name + "'");
  }
  CK_FUNCTION_LIST* found = nullptr;
  std::string path;
  std::string registered;
  for (CK_FUNCTION_LIST** m = modules; *m != nullptr; ++m) {
    CString module_name(p11_kit_module_get_name(*m));
    std::string this_name = module_name ? module_name.get() : "";
    if (this_name == name && found == nullptr) {
      found = *m;
      CString filename(p11_kit_module_get_filename(*m));
      if (filename) path = filename.get();
      continue;
    }
    if (!registered.empty()) registered += ", ";
    registered += this_name;
    p11_kit_module_release(*m);
  }
  std::free(modules);
  if (found == nullptr) {
    throw Error(ErrorCode::Unavailable, "no PKCS#11 module named '" + name +
                                            "' is registered with p11-kit (registered: " +
                                            (registered.empty() ? "none" : registered) +
                                            "); install it or give the module's path");
  }
  return {found, path};
}

CK_FUNCTION_LIST* load_path(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    throw Error(ErrorCode::Unavailable, "PKCS#11 module '" + path + "' does not exist");
  }
  CK_FUNCTION_LIST* functions = p11_kit_module_load(path.c_str(), P11_KIT_MODULE_UNMANAGED);
  if (functions == nullptr) {
    throw Error(ErrorCode::Unavailable,
                "'" + path + "' could not be loaded as a PKCS#11 module (no C_GetFunctionList, or a missing dependency)");
  }
  return functions;
}

}  // namespace

std::shared_ptr<Module> Module::load(std::string_view name_or_path) {
  if (name_or_path.empty()) throw Error(ErrorCode::InvalidArgument, "no PKCS#11 module configured");
  p11_kit_be_quiet();  // our errors say what failed; p11-kit's own lines would repeat it

  std::string requested(name_or_path);
  bool is_path = requested.find('/') != std::string::npos;

  Registry& reg = registry();
  std::lock_guard lock(reg.mutex);
  auto existing = [&reg](const std::string& key) -> std::shared_ptr<Module> {
    auto it = reg.by_path.find(key);
    return it == reg.by_path.end() ? nullptr : it->second.lock();
  };

  ModuleInfo info;
  CK_FUNCTION_LIST* functions = nullptr;
  if (is_path) {
    // p11-kit looks relative paths up in its own module directory; keyhold
    // means them relative to the working directory, as a user would.
    info.path = std::filesystem::weakly_canonical(std::filesystem::absolute(requested)).string();
    if (auto loaded = existing(info.path)) return loaded;
    functions = load_path(info.path);
  } else {
    auto [f, path] = load_registered(requested);
    functions = f;
    info.path = std::filesystem::weakly_canonical(path).string();
    info.name = requested;
    if (auto loaded = existing(info.path)) {
      p11_kit_module_release(functions);
      return loaded;
    }
  }
  std::string key = info.path;
  std::shared_ptr<Module> module(new Module(functions, std::move(info)));
  module->initialize();
  reg.by_path[key] = module;
  return module;
}

Module::Module(CK_FUNCTION_LIST* functions, ModuleInfo info) : functions_(functions), info_(std::move(info)) {}

Module::~Module() {
  finalize();
  // The library stays mapped: unloading SoftHSM while OpenSSL still holds its
  // atexit handlers and thread-local state is what crashes at exit.
}

void Module::initialize() {
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  CK_RV rv = functions_->C_Initialize(&args);
  if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    we_initialized_ = false;  // someone else in this process owns the initialisation
  } else {
    check(rv, "initialising PKCS#11 module " + info_.path);
    we_initialized_ = true;
  }
  initialized_in_fork_generation_.store(fork_generation());
  generation_.fetch_add(1);

  CK_INFO ck_info{};
  if (functions_->C_GetInfo(&ck_info) == CKR_OK) {
    info_.library_description = trim_padded(ck_info.libraryDescription, sizeof ck_info.libraryDescription);
    info_.manufacturer = trim_padded(ck_info.manufacturerID, sizeof ck_info.manufacturerID);
    info_.library_version = version_string(ck_info.libraryVersion);
    info_.cryptoki_version = version_string(ck_info.cryptokiVersion);
  }
  log::debug("loaded PKCS#11 module " + info_.path + " (" + info_.library_description + ")");
}

void Module::ensure_initialized_in_this_process() const {
  std::uint64_t current = fork_generation();
  if (initialized_in_fork_generation_.load(std::memory_order_acquire) == current) return;
  std::lock_guard lock(init_mutex_);
  if (initialized_in_fork_generation_.load() == current) return;
  // In a forked child. The parent's sessions are not ours; C_Initialize gives
  // this process its own state (or says it is already initialised when the
  // module kept the parent's, which we then share as a copy).
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  CK_RV rv = functions_->C_Initialize(&args);
  if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    check(rv, "re-initialising PKCS#11 module " + info_.path + " after fork");
  }
  initialized_in_fork_generation_.store(current, std::memory_order_release);
  generation_.fetch_add(1);
}

std::uint64_t Module::generation() const noexcept {
  std::uint64_t current = fork_generation();
  if (initialized_in_fork_generation_.load(std::memory_order_acquire) != current) {
    try {
      ensure_initialized_in_this_process();
    } catch (...) {
      // The next call() reports the failure.
    }
  }
  return generation_.load(std::memory_order_acquire);
}

std::vector<CK_SLOT_ID> Module::slots_with_token() const {
  CK_ULONG count = 0;
  check(KH_P11(*this, C_GetSlotList, CK_TRUE, nullptr, &count), "listing the module's slots");
  std::vector<CK_SLOT_ID> slots(count);
  if (count > 0) {
    check(KH_P11(*this, C_GetSlotList, CK_TRUE, slots.data(), &count), "listing the module's slots");
  }
  slots.resize(count);
  return slots;
}

void Module::finalize() noexcept {
  std::lock_guard lock(init_mutex_);
  if (finalized_ || !we_initialized_) return;
  finalized_ = true;
  // Only in the process that initialised it: a child must not finalise the
  // parent's state through a shared connection.
  if (initialized_in_fork_generation_.load() == fork_generation()) {
    functions_->C_Finalize(nullptr);
  }
}

void Module::report(const char* name, CK_RV rv) const {
  if (log::enabled(log::Level::Trace)) {
    log::write(log::Level::Trace, std::string("pkcs11 ") + name + " -> " + rv_name(rv));
  }
  if (const CallObserver* observer = observer_.load(std::memory_order_acquire)) (*observer)(name, rv);
}

}  // namespace keyhold::hsm
