#include "bf16_cases.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <utility>

#include "base/dtype.h"

namespace rpa_paths {

const char* to_string(rpa::bf16::Emulation e) {
  switch (e) {
    case rpa::bf16::Emulation::kOff:
      return "real";
    case rpa::bf16::Emulation::kAvx512Bf16:
      return "emulated_avx512bf16";
    case rpa::bf16::Emulation::kAmx:
      return "emulated_amx";
  }
  return "?";
}

std::string bf16_case_name(const Bf16Case& c, size_t index) {
  std::ostringstream s;
  s << index << "_d" << c.head_dim << "_ps" << c.page_size << "_t" << c.threads << "_h" << c.hq
    << "x" << c.hkv << (c.causal ? "_causal" : "_full") << "_w" << c.window
    << (c.soft_cap > 0 ? "_cap" : "") << (c.sinks ? "_sinks" : "") << "_n" << c.num_seqs << "_"
    << rpa_test::to_string(c.mix) << (c.odd_tiles ? "_odd" : "");
  return s.str();
}

std::vector<Bf16Case> bf16_matrix(bool small) {
  const std::vector<int32_t> dims = {64, 80, 96, 128, 256};
  const std::vector<Mix> mixes = {Mix::kDecode, Mix::kPrefill, Mix::kMixed, Mix::kAll};
  std::vector<Bf16Case> cases;
  for (int32_t d : dims)
    for (Mix m : mixes) {
      Bf16Case c;
      c.dtype = rpa::KvDType::kBF16;
      c.head_dim = d;
      c.mix = m;
      cases.push_back(c);
    }
  std::mt19937 structure(20261208);
  for (int i = 0; i < (small ? 4 : 10); ++i) {  // extra cases with every range in the batch
    Bf16Case c;
    c.dtype = rpa::KvDType::kBF16;
    c.head_dim = dims[structure() % dims.size()];
    c.mix = Mix::kAll;
    cases.push_back(c);
  }
  rpa_test::AxisValues values;
  values.page_sizes = {1, 7, 16, 128, 256};
  values.heads = {{32, 8}, {12, 2}, {5, 1}, {3, 3}, {16, 4}};
  rpa_test::spread_axes(cases, values, structure);  // every case keeps its mix
  return cases;
}

void make_case(const Bf16Case& c, uint64_t seed, bool small, Bf16CaseData& out) {
  // Longer prefill chunks than the kernel matrix; shorter sequences again in `small`.
  rpa_test::CaseData data =
      rpa_test::make_case_data(c, seed, rpa_test::case_batch_spec(c, 80, small ? 3 : 1));
  out.batch = std::move(data.batch);
  out.cache = std::move(data.cache);
  out.x = std::move(data.x);
  out.sinks = std::move(data.sinks);
  out.params = rpa::AttentionParams{};
  out.params.num_q_heads = c.hq;
  out.params.sm_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  out.params.causal = c.causal;
  out.params.sliding_window = c.window;
  out.params.soft_cap = c.soft_cap;
  out.params.sinks = c.sinks ? out.sinks.data() : nullptr;
  out.tuning = rpa::Tuning{};
  if (c.odd_tiles) {
    out.tuning.prefill_q_block = 5;
    out.tuning.prefill_kv_block = 13;
    out.tuning.decode_kv_block = 23;
    out.tuning.split_kv_tokens = 48;
  }
  out.threads = c.threads;
}

namespace {

std::vector<float> rounded_to_bf16(std::vector<float> x) {
  for (float& e : x) e = kdr::bf16_to_f32(kdr::f32_to_bf16(e));
  return x;
}

// The cache with every V element's sign cleared (bf16 only).
Cache abs_v(Cache c) {
  std::vector<uint16_t> v(c.v.size() / 2);
  std::memcpy(v.data(), c.v.data(), c.v.size());
  for (uint16_t& e : v) e &= 0x7fff;
  std::memcpy(c.v.data(), v.data(), c.v.size());
  return c;
}

}  // namespace

::testing::AssertionResult within_bf16_bound(const Batch& b, const rpa::AttentionParams& p,
                                             const NewTokens& x, const Cache& before,
                                             const rpa::bf16::Route& route,
                                             const std::vector<float>& got, const Cache& after,
                                             double* worst) {
  const int32_t hq = p.num_q_heads;
  const int32_t d = before.shape.head_dim;
  Cache want_cache = before;
  const std::vector<float> want_exact = rpa_test::run_reference(b, p, x, want_cache);
  if (::testing::AssertionResult same = rpa_test::caches_equal(after, want_cache); !same)
    return same;
  NewTokens xr = x;
  xr.q = rounded_to_bf16(x.q);
  Cache scratch = before;
  const std::vector<float> want_rounded = rpa_test::run_reference(b, p, xr, scratch);
  NewTokens xa = x, xar = xr;
  for (float& e : xa.v) e = std::fabs(e);
  xar.v = xa.v;
  Cache ca = abs_v(before);
  const std::vector<float> w_exact = rpa_test::run_reference(b, p, xa, ca);
  ca = abs_v(before);
  const std::vector<float> w_rounded = rpa_test::run_reference(b, p, xar, ca);

  if (got.size() != want_exact.size())
    return ::testing::AssertionFailure()
           << "output size " << got.size() << " vs " << want_exact.size();
  const size_t row = static_cast<size_t>(hq) * d;
  double worst_ratio = 0.0;
  for (int i = 0; i < b.num_seqs(); ++i) {
    const rpa::PathKind kind = i < b.distribution[0]   ? rpa::PathKind::kDecode
                               : i < b.distribution[1] ? rpa::PathKind::kPrefill
                                                       : rpa::PathKind::kMixed;
    const bool bf16 = rpa::runs(route.bf16, kind);
    const std::vector<float>& want = bf16 ? want_rounded : want_exact;
    const std::vector<float>& w = bf16 ? w_rounded : w_exact;
    for (size_t e = b.cu_q_lens[i] * row; e < b.cu_q_lens[i + 1] * row; ++e) {
      const double bound = 1.05 * std::ldexp(static_cast<double>(w[e]), -8) + 1e-5;
      const double err = std::fabs(static_cast<double>(got[e]) - want[e]);
      if (!(err <= bound)) {
        const size_t tok = e / row;
        return ::testing::AssertionFailure()
               << "sequence " << i << " (" << (bf16 ? "bf16" : "f32") << " kernels) token " << tok
               << " head " << (e % row) / d << " dim " << e % d << ": got " << got[e]
               << ", reference " << want[e] << ", |diff| " << err << " > bound " << bound << " (W "
               << w[e] << ")";
      }
      worst_ratio = std::max(worst_ratio, err / bound);
    }
  }
  if (worst) *worst = worst_ratio;
  return ::testing::AssertionSuccess();
}

std::vector<float> run_within_bf16_bound(const Bf16CaseData& data, const rpa::bf16::Route& route) {
  Cache cache = data.cache;
  const std::vector<float> got =
      rpa_test::run_kernel(data.batch, data.params, data.x, cache, data.threads, data.tuning);
  double worst = 0.0;
  EXPECT_TRUE(
      within_bf16_bound(data.batch, data.params, data.x, data.cache, route, got, cache, &worst));
  std::printf("  worst |error| / bound: %.3f\n", worst);
  return got;
}

void expect_batch_invariance(uint64_t seed, int32_t n, const rpa::bf16::Route& route) {
  Rng rng(seed);
  const int32_t hq = 8, hkv = 2, d = 96, ps = 16;
  // Decodes (one split at the default 512), prefill chunks of 24 and mixed chunks, with a
  // window, a soft cap and sinks.
  std::vector<int32_t> q_lens, kv_lens;
  auto draw = [&](int32_t lo, int32_t hi) {
    return std::uniform_int_distribution<int32_t>(lo, hi)(rng);
  };
  for (int i = 0; i < n; ++i) {
    const int32_t q = i < n / 2 ? 1 : i < 3 * n / 4 ? 24 : draw(1, 70);
    q_lens.push_back(q);
    kv_lens.push_back(i == 3 ? 1300 : q + draw(0, 150));
  }
  const int32_t dist[3] = {n / 2, 3 * n / 4, n};
  const Batch b = rpa_test::layout_batch(q_lens, kv_lens, dist, ps, rng);
  const Cache cache = rpa_test::make_cache(rpa::KvDType::kBF16, hkv, d, b, ps, rng);
  const NewTokens x = rpa_test::random_tokens(b.num_tokens(), hq, hkv, d, rng);
  const std::vector<float> sinks = rpa_test::random_floats(hq, rng, -2.0f, 2.0f);
  rpa::AttentionParams p;
  p.num_q_heads = hq;
  p.sm_scale = 1.0f / std::sqrt(static_cast<float>(d));
  p.sliding_window = 600;  // the 1300-position decode still splits (at 1024)
  p.soft_cap = 30.0f;
  p.sinks = sinks.data();

  Cache batch_cache = cache;
  const std::vector<float> out = rpa_test::run_kernel(b, p, x, batch_cache, 2);
  EXPECT_TRUE(within_bf16_bound(b, p, x, cache, route, out, batch_cache, nullptr));
  for (int threads : {1, 4}) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    Cache other = cache;
    EXPECT_TRUE(rpa_test::bitwise_equal(rpa_test::run_kernel(b, p, x, other, threads), out));
    EXPECT_TRUE(rpa_test::caches_equal(other, batch_cache));
  }
  const size_t row = static_cast<size_t>(hq) * d;
  for (int i = 0; i < b.num_seqs(); ++i) {
    SCOPED_TRACE("sequence " + std::to_string(i) + " q_len " + std::to_string(b.q_len(i)) +
                 " kv_len " + std::to_string(b.kv_lens[i]));
    Cache single = cache;
    const std::vector<float> got = rpa_test::run_kernel(
        rpa_test::alone(b, i), p, rpa_test::tokens_of(b, x, i, hq, hkv, d), single, 1 + i % 2);
    const size_t t0 = b.cu_q_lens[i], t1 = b.cu_q_lens[i + 1];
    EXPECT_TRUE(rpa_test::bitwise_equal(
        got, std::vector<float>(out.begin() + t0 * row, out.begin() + t1 * row)));
  }
}

}  // namespace rpa_paths
