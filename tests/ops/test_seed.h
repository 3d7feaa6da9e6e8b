// Random seeds for ops tests: tests/base/seed.h (KDR_SEED when set, else fresh each run).
#pragma once

#include <random>

#include "../base/seed.h"

namespace kdr::ops::testing {

using kdr_test::test_seed;

// A generator on a fresh (printed and recorded) seed.
inline std::mt19937_64 seeded_rng() { return std::mt19937_64(test_seed()); }

}  // namespace kdr::ops::testing
