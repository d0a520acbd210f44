#include <gtest/gtest.h>

TEST(Placeholder, ServerWorkInProgress) { SUCCEED(); }
