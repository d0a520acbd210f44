#include <gtest/gtest.h>

TEST(Placeholder, ServiceWorkInProgress) { SUCCEED(); }
