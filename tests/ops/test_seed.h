// Random seeds for ops tests: KDR_SEED when set (to replay a failure), else fresh each run.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <random>

namespace kdr::ops::testing {

inline uint64_t test_seed() {
  if (const char* s = std::getenv("KDR_SEED")) return std::strtoull(s, nullptr, 10);
  return std::random_device{}();
}

// Draws the seed and records it with the test (printed on failure and in the XML output).
inline std::mt19937_64 seeded_rng() {
  const uint64_t seed = test_seed();
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  std::printf("[   SEED   ] KDR_SEED=%llu\n", static_cast<unsigned long long>(seed));
  return std::mt19937_64(seed);
}

}  // namespace kdr::ops::testing
