// Shared main for every test binary. Tears the throwaway token down before
// static destruction (SoftHSM must be finalised while OpenSSL is still alive).
#include <gtest/gtest.h>

#include "support/token_fixture.hpp"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  int result = RUN_ALL_TESTS();
  keyhold::testing::ThrowawayToken::tear_down();
  return result;
}
