#include "keyhold/hsm/provision.hpp"

#include <cstring>

#include "keyhold/hsm/uri.hpp"

namespace keyhold::hsm {
namespace {

std::vector<CK_SLOT_ID> all_slots(const Module& module) {
  CK_ULONG count = 0;
  check(KH_P11(module, C_GetSlotList, CK_FALSE, nullptr, &count), "listing slots");
  std::vector<CK_SLOT_ID> slots(count);
  if (count > 0) check(KH_P11(module, C_GetSlotList, CK_FALSE, slots.data(), &count), "listing slots");
  slots.resize(count);
  return slots;
}

}  // namespace

std::string initialize_token(Module& module, const std::string& label, const SecretBytes& so_pin,
                             const SecretBytes& user_pin) {
  if (label.empty() || label.size() > 32) {
    throw Error(ErrorCode::InvalidArgument, "a token label has 1 to 32 characters");
  }
  std::optional<CK_SLOT_ID> free_slot;
  for (CK_SLOT_ID slot : module.slots_with_token()) {
    CK_TOKEN_INFO info{};
    if (KH_P11(module, C_GetTokenInfo, slot, &info) != CKR_OK) continue;
    if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) {
      if (!free_slot) free_slot = slot;
    } else if (trim_padded(info.label, sizeof info.label) == label) {
      throw Error(ErrorCode::AlreadyExists, "a token labelled '" + label + "' exists already");
    }
  }
  if (!free_slot) throw Error(ErrorCode::Unavailable, "the PKCS#11 module has no free slot for a new token");

  unsigned char padded[32];
  std::memset(padded, ' ', sizeof padded);
  std::memcpy(padded, label.data(), label.size());
  check(KH_P11(module, C_InitToken, *free_slot, const_cast<std::uint8_t*>(so_pin.data()),
               static_cast<CK_ULONG>(so_pin.size()), padded),
        "initialising token '" + label + "'");

  // SoftHSM moves a newly initialised token to a new slot id: find it again by label.
  for (CK_SLOT_ID slot : all_slots(module)) {
    CK_TOKEN_INFO info{};
    if (KH_P11(module, C_GetTokenInfo, slot, &info) != CKR_OK) continue;
    if ((info.flags & CKF_TOKEN_INITIALIZED) == 0 || trim_padded(info.label, sizeof info.label) != label) continue;

    CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
    check(KH_P11(module, C_OpenSession, slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session),
          "opening a session on the new token");
    CK_RV rv = KH_P11(module, C_Login, session, CKU_SO, const_cast<std::uint8_t*>(so_pin.data()),
                      static_cast<CK_ULONG>(so_pin.size()));
    if (rv == CKR_OK) {
      rv = KH_P11(module, C_InitPIN, session, const_cast<std::uint8_t*>(user_pin.data()),
                  static_cast<CK_ULONG>(user_pin.size()));
      (void)KH_P11(module, C_Logout, session);
    }
    (void)KH_P11(module, C_CloseSession, session);
    check(rv, "setting the user PIN of token '" + label + "'");
    return Uri::for_token(info);
  }
  throw Error(ErrorCode::Internal, "token '" + label + "' was initialised but cannot be found again");
}

}  // namespace keyhold::hsm
