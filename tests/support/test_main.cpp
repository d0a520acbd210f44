// Shared main for every test binary (fixtures register themselves as
// GoogleTest environments).
#include <gtest/gtest.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
