// The random seed of a test: KDR_SEED from the environment (to replay a failure), else a
// fresh one. Printed with the running test's name so that any failure can be reproduced.
// Every test that draws random inputs takes its seed here.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

namespace kdr_test {

inline uint64_t test_seed() {
  uint64_t seed;
  if (const char* env = std::getenv("KDR_SEED"); env && *env) {
    seed = std::strtoull(env, nullptr, 10);
  } else {
    std::random_device rd;
    seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  if (info) {
    std::printf("[ seed     ] KDR_SEED=%llu (%s.%s)\n", static_cast<unsigned long long>(seed),
                info->test_suite_name(), info->name());
    ::testing::Test::RecordProperty("KDR_SEED", std::to_string(seed));
  } else {
    std::printf("[ seed     ] KDR_SEED=%llu\n", static_cast<unsigned long long>(seed));
  }
  std::fflush(stdout);
  return seed;
}

}  // namespace kdr_test
