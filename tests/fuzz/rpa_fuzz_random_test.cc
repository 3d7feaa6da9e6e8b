// The fuzz check of rpa_fuzz_check.cc on seeded random inputs, so every CI build (GCC, and
// the ASan/UBSan one) covers it without clang's libFuzzer.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "../base/seed.h"
#include "rpa_fuzz_check.h"

namespace {

using kdr_test::test_seed;

TEST(RpaFuzzRandom, TwoThousandRandomBatchesAreRejectedCleanlyOrMatchTheReference) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  int rejected = 0, matched = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    std::vector<uint8_t> bytes(std::uniform_int_distribution<size_t>(0, 96)(rng));
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    rpa_fuzz::Outcome outcome;
    std::string failure;
    if (!rpa_fuzz::check_bytes(bytes.data(), bytes.size(), &outcome, &failure)) {
      std::string hex;
      char buf[4];
      for (uint8_t b : bytes) {
        std::snprintf(buf, sizeof(buf), "%02x", b);
        hex += buf;
      }
      // The hex bytes replay in the libFuzzer harness: echo <hex> | xxd -r -p > crash.bin
      FAIL() << "iteration " << iter << ": " << failure << "\ninput (hex): " << hex;
    }
    (outcome == rpa_fuzz::Outcome::kRejected ? rejected : matched)++;
  }
  std::printf("rejected %d, matched the reference %d\n", rejected, matched);
  // Both sides of the check must actually be exercised.
  EXPECT_GT(rejected, 200);
  EXPECT_GT(matched, 200);
}

}  // namespace
