// The arithmetic `kdr bench` reports against its ceilings (src/cli/machine_ceilings.h):
// utilisation, the roofline, the compute unit a case can use on each path, the error
// tolerances; and the compute-ceiling probes on this CPU.
#include "cli/machine_ceilings.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "base/cpu_features.h"
#include "base/seed.h"
#include "base/thread_pool.h"

namespace kdr::cli {
namespace {

TEST(Utilisation, IsAchievedRateOverCeiling) {
  // 2e9 FLOP in 10 ms = 200 GFLOP/s; against 400 GFLOP/s: 0.5.
  EXPECT_DOUBLE_EQ(utilisation(2e9, 10.0, 400.0), 0.5);
  EXPECT_EQ(utilisation(2e9, 10.0, 0.0), 0.0);  // no ceiling measured: no number
  EXPECT_EQ(utilisation(2e9, 0.0, 400.0), 0.0);
}

TEST(Roofline, MemoryBoundCaseIsBytesOverBandwidth) {
  // 100 MB at 20 GB/s = 5 ms; 1 GFLOP at 500 GFLOP/s = 2 ms: memory bound at 5 ms.
  const Roofline r = roofline(100e6, 1e9, 6.25, 20.0, 500.0);
  EXPECT_DOUBLE_EQ(r.bound_ms, 5.0);
  EXPECT_FALSE(r.compute_bound);
  EXPECT_DOUBLE_EQ(r.fraction, 0.8);
}

TEST(Roofline, ComputeBoundCaseIsFlopsOverCeiling) {
  // 10 MB at 20 GB/s = 0.5 ms; 3 GFLOP at 100 GFLOP/s = 30 ms: compute bound.
  const Roofline r = roofline(10e6, 3e9, 60.0, 20.0, 100.0);
  EXPECT_DOUBLE_EQ(r.bound_ms, 30.0);
  EXPECT_TRUE(r.compute_bound);
  EXPECT_DOUBLE_EQ(r.fraction, 0.5);
}

TEST(Roofline, RandomCasesMatchTheDefinition) {
  const uint64_t seed = kdr_test::test_seed();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> log_u(-3, 3);
  for (int i = 0; i < 1000; ++i) {
    const double bytes = 1e6 * std::pow(10, log_u(rng)), flops = 1e9 * std::pow(10, log_u(rng));
    const double gbps = 20 * std::pow(10, log_u(rng) / 3),
                 gops = 100 * std::pow(10, log_u(rng) / 3);
    const double ms = std::pow(10, log_u(rng));
    const Roofline r = roofline(bytes, flops, ms, gbps, gops);
    const double want = std::max(bytes / gbps / 1e9, flops / gops / 1e9) * 1e3;
    EXPECT_NEAR(r.bound_ms, want, 1e-12 * want);
    EXPECT_NEAR(r.fraction, want / ms, 1e-12 * want / ms);
    EXPECT_EQ(r.compute_bound, flops / gops > bytes / gbps);
  }
}

TEST(AttentionUnit, TodaysPathsUseTheirF32Width) {
  for (auto kind : {AttentionKind::kDecode, AttentionKind::kPrefill, AttentionKind::kMixed}) {
    for (auto kv : {rpa::KvDType::kF32, rpa::KvDType::kBF16, rpa::KvDType::kF16,
                    rpa::KvDType::kInt8, rpa::KvDType::kFp8E4M3}) {
      EXPECT_EQ(attention_unit(cpu::Path::kScalar, kind, kv), ComputeUnit::kF32Sse);
      EXPECT_EQ(attention_unit(cpu::Path::kAvx2, kind, kv), ComputeUnit::kF32Avx2);
      EXPECT_EQ(attention_unit(cpu::Path::kAvx512, kind, kv), ComputeUnit::kF32Avx512);
    }
  }
}

TEST(AttentionUnit, Bf16AndAmxPathsUseDotProductsAndTiles) {
  using K = AttentionKind;
  using D = rpa::KvDType;
  EXPECT_EQ(attention_unit(cpu::Path::kAvx512Bf16, K::kPrefill, D::kBF16), ComputeUnit::kBf16Dot);
  EXPECT_EQ(attention_unit(cpu::Path::kAvx512Bf16, K::kDecode, D::kInt8), ComputeUnit::kInt8Dot);
  EXPECT_EQ(attention_unit(cpu::Path::kAmx, K::kPrefill, D::kBF16), ComputeUnit::kAmxBf16);
  EXPECT_EQ(attention_unit(cpu::Path::kAmx, K::kMixed, D::kBF16), ComputeUnit::kAmxBf16);
  EXPECT_EQ(attention_unit(cpu::Path::kAmx, K::kDecode, D::kBF16), ComputeUnit::kBf16Dot);
  EXPECT_EQ(attention_unit(cpu::Path::kAmx, K::kPrefill, D::kInt8), ComputeUnit::kAmxInt8);
  EXPECT_EQ(attention_unit(cpu::Path::kAmx, K::kDecode, D::kInt8), ComputeUnit::kInt8Dot);
  // Caches without a kernel of their own on these paths fall back to f32 FMA on zmm.
  for (auto p : {cpu::Path::kAvx512Bf16, cpu::Path::kAmx})
    for (auto kv : {D::kF32, D::kF16, D::kFp8E4M3})
      EXPECT_EQ(attention_unit(p, K::kPrefill, kv), ComputeUnit::kF32Avx512);
}

TEST(ComputeUnits, NamesAndPathsAreDistinctAndOrdered) {
  std::set<std::string> names;
  for (int i = 0; i < kNumComputeUnits; ++i) {
    const auto u = static_cast<ComputeUnit>(i);
    names.insert(unit_name(u));
    // A unit's path is one that can use it: the f32 units of each width, the bf16/int8 dot
    // products from avx512bf16 on, the tiles on amx.
    EXPECT_LE(static_cast<int>(unit_path(u)), static_cast<int>(cpu::Path::kAmx));
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(kNumComputeUnits));
  EXPECT_EQ(unit_path(ComputeUnit::kAmxBf16), cpu::Path::kAmx);
  EXPECT_EQ(unit_path(ComputeUnit::kBf16Dot), cpu::Path::kAvx512Bf16);
  EXPECT_EQ(unit_path(ComputeUnit::kF32Avx2), cpu::Path::kAvx2);
}

TEST(Tolerance, ByTheUnitsInputPrecision) {
  EXPECT_EQ(error_tolerance(ComputeUnit::kF32Avx2).atol, 1e-4);
  EXPECT_EQ(error_tolerance(ComputeUnit::kF32Sse).rtol, 1e-4);
  EXPECT_EQ(error_tolerance(ComputeUnit::kAmxBf16).atol, 1e-2);
  EXPECT_EQ(error_tolerance(ComputeUnit::kBf16Dot).atol, 1e-2);
  EXPECT_EQ(error_tolerance(ComputeUnit::kAmxInt8).atol, 2e-2);
  EXPECT_EQ(error_tolerance(ComputeUnit::kInt8Dot).rtol, 2e-2);
}

TEST(Tolerance, RatioIsTheWorstElementOverItsAllowance) {
  const uint64_t seed = kdr_test::test_seed();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  const Tolerance tol{1e-4, 1e-4};
  std::vector<float> want(4096), got(4096);
  for (float& x : want) x = unit(rng);
  // Every element off by half its allowance: ratio 0.5 (to float rounding).
  for (size_t i = 0; i < want.size(); ++i)
    got[i] = want[i] + 0.5f * static_cast<float>(tol.atol + tol.rtol * std::fabs(want[i]));
  EXPECT_NEAR(tolerance_ratio(got.data(), want.data(), got.size(), tol), 0.5, 0.01);
  // One element off by three times its allowance: that element sets the ratio.
  const size_t k = std::uniform_int_distribution<size_t>(0, want.size() - 1)(rng);
  got[k] = want[k] + 3.0f * static_cast<float>(tol.atol + tol.rtol * std::fabs(want[k]));
  EXPECT_NEAR(tolerance_ratio(got.data(), want.data(), got.size(), tol), 3.0, 0.01);
  got[k] = NAN;
  EXPECT_TRUE(std::isinf(tolerance_ratio(got.data(), want.data(), got.size(), tol)));
  EXPECT_EQ(tolerance_ratio(want.data(), want.data(), want.size(), tol), 0.0);
}

TEST(ComputeCeilings, EveryUnitOfTheActivePathsIsMeasuredTheRestSayWhyNot) {
  ThreadPool pool(2);
  const ComputeCeilings c = measure_compute_ceilings(pool, 0.005);
  for (int i = 0; i < kNumComputeUnits; ++i) {
    const auto u = static_cast<ComputeUnit>(i);
    const std::string why = u == ComputeUnit::kF32Sse ? "" : cpu::hardware_reason(unit_path(u));
    SCOPED_TRACE(unit_name(u));
    if (why.empty()) {
      EXPECT_TRUE(c[u].unavailable.empty());
      // Positive and finite: what it is depends on the moment on a shared machine.
      EXPECT_GT(c[u].gops, 0.0);
      EXPECT_TRUE(std::isfinite(c[u].gops));
    } else {
      EXPECT_EQ(c[u].unavailable, "not on this CPU: " + why);
      EXPECT_EQ(c[u].gops, 0.0);
      EXPECT_EQ(measure_unit_gops(pool, u, 0.001), 0.0);
      EXPECT_EQ(unit_unavailable_reason(u), c[u].unavailable);
    }
  }
}

}  // namespace
}  // namespace kdr::cli
