// The bf16 kernels on the real instructions, once per kernel path (rows "<test>@<path>",
// tests/CMakeLists.txt kdr_path_tests): @amx runs tiles and dot products, @avx512bf16 the
// dot products for decodes; the other paths route bf16 caches to the f32 kernels, which these
// tests then check under the same bound. A path this CPU cannot run is skipped with the
// reason. Where the bf16 kernels run, they are also compared with their emulation.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bf16_cases.h"

namespace rpa_paths {
namespace {

using rpa::bf16::Emulation;

#ifdef KDR_SANITIZE_BUILD
constexpr bool kSmall = true;
#else
constexpr bool kSmall = false;
#endif

rpa::bf16::Route active_route() {
  return rpa::bf16::route(rpa::KvDType::kBF16, kdr::cpu::active_path(), Emulation::kOff);
}

// The emulation of the active path's bf16 kernels.
Emulation emulation_of_route(const rpa::bf16::Route& r) {
  return r.tiles ? Emulation::kAmx : Emulation::kAvx512Bf16;
}

TEST(Bf16PathRoute, TheActivePathGetsItsKernels) {
  const kdr::cpu::Path path = kdr::cpu::active_path();
  const rpa::bf16::Route r = active_route();
  std::printf("  path %s: bf16 cache items on bf16 kernels: %s\n", kdr::cpu::path_name(path),
              r.bf16 == rpa::ItemSet::kAll      ? "all (tiles + dot products)"
              : r.bf16 == rpa::ItemSet::kDecode ? "decodes (dot products)"
                                                : "none (f32 kernels)");
  EXPECT_FALSE(r.emulated);
  const bool real = rpa::bf16::x86_kernels() != nullptr;
  if (path == kdr::cpu::Path::kAmx && real) {
    EXPECT_EQ(r.bf16, rpa::ItemSet::kAll);
  } else if (path == kdr::cpu::Path::kAvx512Bf16 && real) {
    EXPECT_EQ(r.bf16, rpa::ItemSet::kDecode);
  } else {
    EXPECT_EQ(r.bf16, rpa::ItemSet::kNone);
  }
}

class PathMatrixTest : public ::testing::TestWithParam<std::pair<Bf16Case, size_t>> {};

TEST_P(PathMatrixTest, MatchesReferenceWithinTheBf16BoundAndWritesTheSameCache) {
  const Bf16Case& c = GetParam().first;
  const uint64_t seed = rpa_test::test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  Bf16CaseData data;
  make_case(c, seed, kSmall, data);
  const rpa::bf16::Route route = active_route();
  const std::vector<float> got = run_within_bf16_bound(data, route);
  if (route.bf16 == rpa::ItemSet::kNone) return;
  // The emulation of the same kernels, under the same check (tdpbf16ps may sum in another
  // order than the SDM's pseudo-code, and a P rounded the other way moves an output by up to
  // the bound). How many outputs differ in their bits from the real ones is printed, not
  // asserted.
  Cache emu_cache = data.cache;
  std::vector<float> emu;
  {
    const ScopedEmulation emulate(emulation_of_route(route));
    emu =
        rpa_test::run_kernel(data.batch, data.params, data.x, emu_cache, data.threads, data.tuning);
  }
  rpa::bf16::Route emu_route = route;
  emu_route.emulated = true;
  EXPECT_TRUE(within_bf16_bound(data.batch, data.params, data.x, data.cache, emu_route, emu,
                                emu_cache, nullptr));
  size_t differ = 0;
  for (size_t i = 0; i < got.size(); ++i) differ += std::memcmp(&got[i], &emu[i], 4) != 0;
  std::printf("  real vs emulated: %zu of %zu outputs differ in their bits\n", differ, got.size());
}

std::vector<std::pair<Bf16Case, size_t>> path_cases() {
  std::vector<std::pair<Bf16Case, size_t>> out;
  const std::vector<Bf16Case> cases = bf16_matrix(kSmall);
  for (size_t i = 0; i < cases.size(); ++i) out.push_back({cases[i], i});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Bf16, PathMatrixTest, ::testing::ValuesIn(path_cases()),
                         [](const ::testing::TestParamInfo<std::pair<Bf16Case, size_t>>& info) {
                           return bf16_case_name(info.param.first, info.param.second);
                         });

TEST(Bf16PathInvariance, EverySequenceAloneEqualsItsRowsInABatchAtAnyThreadCount) {
  const uint64_t seed = rpa_test::test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  expect_batch_invariance(seed, kSmall ? 12 : 24, active_route());
}

}  // namespace
}  // namespace rpa_paths
