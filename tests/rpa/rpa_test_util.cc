#include "rpa_test_util.h"

#include "../base/seed.h"

namespace rpa_test {

uint64_t test_seed() { return kdr_test::test_seed(); }

namespace {

::testing::AssertionResult as_assertion(const std::string& failure) {
  if (failure.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << failure;
}

}  // namespace

::testing::AssertionResult outputs_close(const std::vector<float>& got,
                                         const std::vector<float>& want, int32_t hq, int32_t d,
                                         double atol, double rtol) {
  return as_assertion(compare_outputs(got, want, hq, d, atol, rtol));
}

::testing::AssertionResult bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return as_assertion(compare_bitwise(a, b));
}

::testing::AssertionResult caches_equal(const Cache& got, const Cache& want) {
  return as_assertion(compare_caches(got, want));
}

}  // namespace rpa_test
