// The random seed of a test: KDR_SEED from the environment (to replay a failure), else a
// fresh one. Printed so that any failure can be reproduced.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>

namespace kdr::testing {

inline uint64_t test_seed() {
  uint64_t seed;
  if (const char* env = std::getenv("KDR_SEED")) {
    seed = std::strtoull(env, nullptr, 10);
  } else {
    seed = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  }
  std::printf("[  SEED    ] KDR_SEED=%llu\n", static_cast<unsigned long long>(seed));
  ::testing::Test::RecordProperty("KDR_SEED", std::to_string(seed));
  return seed;
}

}  // namespace kdr::testing
