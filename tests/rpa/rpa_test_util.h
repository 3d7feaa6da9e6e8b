// GoogleTest glue over the shared rpa cases (cases.h): the printed seed of a test, the
// optimised CPU kernel as the tests call it, and the comparisons as assertions. Every helper
// that draws randomness takes the test's Rng, whose seed is printed (rerun a failure with
// KDR_SEED=<seed> and the same --gtest_filter).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "cases.h"
#include "rpa/rpa.h"

namespace rpa_test {

// The seed of this test: KDR_SEED if set, else a fresh random one. Printed to stdout.
uint64_t test_seed();

// Runs the optimised kernel (plan + run) on a copy of `cache`, returning out; `cache` is
// updated in place.
std::vector<float> run_kernel(const Batch& batch, const rpa::AttentionParams& params,
                              const NewTokens& x, Cache& cache, int num_threads,
                              const rpa::Tuning& tuning = {});

// The comparisons of cases.h as assertions.
::testing::AssertionResult outputs_close(const std::vector<float>& got,
                                         const std::vector<float>& want, int32_t hq, int32_t d,
                                         double atol, double rtol);
::testing::AssertionResult bitwise_equal(const std::vector<float>& a, const std::vector<float>& b);
::testing::AssertionResult caches_equal(const Cache& got, const Cache& want);

}  // namespace rpa_test
