// Seeded rpa test cases shared by the CPU and GPU tests (see cases.h).
#include "cases.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <ostream>
#include <sstream>

namespace rpa_test {

const char* to_string(Mix mix) {
  switch (mix) {
    case Mix::kDecode:
      return "decode";
    case Mix::kPrefill:
      return "prefill";
    case Mix::kMixed:
      return "mixed";
    case Mix::kAll:
      return "all";
  }
  return "?";
}

rpa::RaggedBatch Batch::view() const {
  rpa::RaggedBatch b;
  b.num_seqs = num_seqs();
  b.num_tokens = num_tokens();
  b.cu_q_lens = cu_q_lens.data();
  b.kv_lens = kv_lens.data();
  b.page_indices = page_indices.data();
  b.pages_per_seq = pages_per_seq;
  std::copy(distribution, distribution + 3, b.distribution);
  return b;
}

Batch layout_batch(const std::vector<int32_t>& q_lens, const std::vector<int32_t>& kv_lens,
                   const int32_t distribution[3], int32_t page_size, Rng& rng,
                   int32_t extra_pages) {
  Batch b;
  b.kv_lens = kv_lens;
  for (int32_t q : q_lens) b.cu_q_lens.push_back(b.cu_q_lens.back() + q);
  std::copy(distribution, distribution + 3, b.distribution);
  int32_t total_pages = 0, max_pages = 1;
  for (int32_t kv : kv_lens) {
    const int32_t n = (kv + page_size - 1) / page_size;
    total_pages += n;
    max_pages = std::max(max_pages, n);
  }
  b.pages_per_seq = max_pages;
  b.num_pages = total_pages + extra_pages;
  std::vector<int32_t> perm(b.num_pages);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  b.page_indices.assign(static_cast<size_t>(b.num_seqs()) * max_pages, -1);
  size_t next = 0;
  for (int i = 0; i < b.num_seqs(); ++i) {
    const int32_t n = (kv_lens[i] + page_size - 1) / page_size;
    for (int32_t j = 0; j < n; ++j)
      b.page_indices[static_cast<size_t>(i) * max_pages + j] = perm[next++];
  }
  return b;
}

Batch random_batch(const BatchSpec& spec, Rng& rng) {
  auto draw = [&](int32_t lo, int32_t hi) {
    return std::uniform_int_distribution<int32_t>(lo, hi)(rng);
  };
  int32_t n_dec = 0, n_pre = 0;
  const int32_t n = spec.num_seqs;
  switch (spec.mix) {
    case Mix::kDecode:
      n_dec = n;
      break;
    case Mix::kPrefill:
      n_pre = n;
      break;
    case Mix::kMixed:
      break;
    case Mix::kAll:
      // At least one of each range when there is room for it.
      n_dec = n >= 3 ? draw(1, n - 2) : n;
      n_pre = n >= 3 ? draw(1, n - n_dec - 1) : 0;
      break;
  }
  std::vector<int32_t> q_lens, kv_lens;
  for (int i = 0; i < n; ++i) {
    int32_t q;
    if (i < n_dec) {
      q = 1;
    } else if (i < n_dec + n_pre) {
      q = spec.prefill_chunk;
    } else {
      q = draw(1, spec.max_mixed_q);
    }
    q_lens.push_back(q);
    kv_lens.push_back(q + draw(0, spec.max_cached));
  }
  const int32_t dist[3] = {n_dec, n_dec + n_pre, n};
  return layout_batch(q_lens, kv_lens, dist, spec.page_size, rng);
}

rpa::KvCache Cache::view() {
  rpa::KvCache c;
  c.shape = shape;
  c.k = k.data();
  c.v = v.data();
  c.k_row_scales = k_row_scales.empty() ? nullptr : k_row_scales.data();
  c.v_row_scales = v_row_scales.empty() ? nullptr : v_row_scales.data();
  c.k_scale = k_scale;
  c.v_scale = v_scale;
  return c;
}

namespace {

// Fills a pool with the dtype's NaN encoding.
void poison(std::vector<uint8_t>& pool, rpa::KvDType dtype) {
  switch (dtype) {
    case rpa::KvDType::kF32: {
      const float nan = std::numeric_limits<float>::quiet_NaN();
      for (size_t i = 0; i + 4 <= pool.size(); i += 4) std::memcpy(&pool[i], &nan, 4);
      break;
    }
    case rpa::KvDType::kBF16:
    case rpa::KvDType::kF16: {
      const uint16_t nan = dtype == rpa::KvDType::kBF16 ? 0x7fc0 : 0x7e00;
      for (size_t i = 0; i + 2 <= pool.size(); i += 2) std::memcpy(&pool[i], &nan, 2);
      break;
    }
    case rpa::KvDType::kInt8:
      std::fill(pool.begin(), pool.end(), uint8_t{0x7f});  // the NaN row scale poisons these
      break;
    case rpa::KvDType::kFp8E4M3:
      std::fill(pool.begin(), pool.end(), uint8_t{0x7f});
      break;
  }
}

}  // namespace

Cache make_cache(rpa::KvDType dtype, int32_t num_kv_heads, int32_t head_dim, const Batch& batch,
                 int32_t page_size, Rng& rng) {
  Cache c;
  c.shape.num_pages = batch.num_pages;
  c.shape.num_kv_heads = num_kv_heads;
  c.shape.page_size = page_size;
  c.shape.head_dim = head_dim;
  c.shape.dtype = dtype;
  const size_t bytes = c.shape.pool_elements() * rpa::element_size(dtype);
  c.k.resize(bytes);
  c.v.resize(bytes);
  poison(c.k, dtype);
  poison(c.v, dtype);
  if (dtype == rpa::KvDType::kInt8) {
    c.k_row_scales.assign(c.shape.scale_elements(), std::numeric_limits<float>::quiet_NaN());
    c.v_row_scales.assign(c.shape.scale_elements(), std::numeric_limits<float>::quiet_NaN());
  }
  if (dtype == rpa::KvDType::kFp8E4M3) {
    // Values in [-1, 1) divided by these land well inside e4m3's range and exercise the scale.
    c.k_scale = 0.0125f;
    c.v_scale = 0.02f;
  }
  rpa::KvCache view = c.view();
  std::vector<float> row(head_dim);
  for (int i = 0; i < batch.num_seqs(); ++i) {
    const int32_t cached = batch.kv_lens[i] - batch.q_len(i);
    for (int32_t pos = 0; pos < cached; ++pos) {
      const int32_t page =
          batch.page_indices[static_cast<size_t>(i) * batch.pages_per_seq + pos / page_size];
      for (int32_t h = 0; h < num_kv_heads; ++h) {
        row = random_floats(head_dim, rng);
        rpa::store_row(view, false, page, h, pos % page_size, row.data());
        row = random_floats(head_dim, rng);
        rpa::store_row(view, true, page, h, pos % page_size, row.data());
      }
    }
  }
  return c;
}

std::vector<float> random_floats(size_t n, Rng& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> x(n);
  for (float& e : x) e = dist(rng);
  return x;
}

NewTokens random_tokens(int32_t num_tokens, int32_t hq, int32_t hkv, int32_t d, Rng& rng) {
  NewTokens x;
  x.q = random_floats(static_cast<size_t>(num_tokens) * hq * d, rng);
  x.k = random_floats(static_cast<size_t>(num_tokens) * hkv * d, rng);
  x.v = random_floats(static_cast<size_t>(num_tokens) * hkv * d, rng);
  return x;
}

std::vector<float> run_reference(const Batch& batch, const rpa::AttentionParams& params,
                                 const NewTokens& x, Cache& cache) {
  std::vector<float> out(
      static_cast<size_t>(batch.num_tokens()) * params.num_q_heads * cache.shape.head_dim,
      std::numeric_limits<float>::quiet_NaN());
  rpa::KvCache view = cache.view();
  rpa::reference(batch.view(), params, x.q.data(), x.k.data(), x.v.data(), view, out.data());
  return out;
}

Batch alone(const Batch& b, int i) {
  Batch s;
  s.cu_q_lens = {0, b.q_len(i)};
  s.kv_lens = {b.kv_lens[i]};
  s.pages_per_seq = b.pages_per_seq;
  s.page_indices.assign(b.page_indices.begin() + static_cast<size_t>(i) * b.pages_per_seq,
                        b.page_indices.begin() + static_cast<size_t>(i + 1) * b.pages_per_seq);
  const int32_t path = i < b.distribution[0] ? 0 : i < b.distribution[1] ? 1 : 2;
  s.distribution[0] = path == 0 ? 1 : 0;
  s.distribution[1] = path <= 1 ? 1 : 0;
  s.distribution[2] = 1;
  s.num_pages = b.num_pages;
  return s;
}

NewTokens tokens_of(const Batch& b, const NewTokens& x, int i, int32_t hq, int32_t hkv, int32_t d) {
  const size_t row = static_cast<size_t>(hq) * d, kv_row = static_cast<size_t>(hkv) * d;
  const size_t t0 = b.cu_q_lens[i], t1 = b.cu_q_lens[i + 1];
  NewTokens xs;
  xs.q.assign(x.q.begin() + t0 * row, x.q.begin() + t1 * row);
  xs.k.assign(x.k.begin() + t0 * kv_row, x.k.begin() + t1 * kv_row);
  xs.v.assign(x.v.begin() + t0 * kv_row, x.v.begin() + t1 * kv_row);
  return xs;
}

std::string case_name(const Case& c, size_t index) {
  std::string s = std::to_string(index) + "_" + rpa::to_string(c.dtype) + "_d" +
                  std::to_string(c.head_dim) + "_p" + std::to_string(c.page_size) + "_t" +
                  std::to_string(c.threads) + "_h" + std::to_string(c.hq) + "x" +
                  std::to_string(c.hkv) + (c.causal ? "_causal" : "_full");
  if (c.window) s += "_w" + std::to_string(c.window);
  if (c.soft_cap > 0) s += "_cap" + std::to_string(static_cast<int>(c.soft_cap));
  if (c.sinks) s += "_sinks";
  s += "_n" + std::to_string(c.num_seqs) + "_" + to_string(c.mix);
  if (c.odd_tiles) s += "_oddtiles";
  return s;
}

void PrintTo(const Case& c, std::ostream* os) { *os << case_name(c, 0).substr(2); }

void spread_axes(std::vector<Case>& cases, const AxisValues& values, std::mt19937& structure) {
  const size_t n = cases.size();
  const auto pages = balanced_column(values.page_sizes, n, structure);
  const auto threads = balanced_column(values.threads, n, structure);
  const auto heads = balanced_column(values.heads, n, structure);
  const auto causal = balanced_column(values.causal, n, structure);
  const auto window = balanced_column(values.windows, n, structure);
  const auto cap = balanced_column(values.soft_caps, n, structure);
  const auto sinks = balanced_column(values.sinks, n, structure);
  const auto seqs = balanced_column(values.num_seqs, n, structure);
  const auto mix =
      values.mixes.empty() ? std::vector<Mix>() : balanced_column(values.mixes, n, structure);
  const auto odd = balanced_column(values.odd_tiles, n, structure);
  for (size_t i = 0; i < n; ++i) {
    Case& c = cases[i];
    c.page_size = pages[i];
    c.threads = threads[i];
    c.hq = heads[i].first;
    c.hkv = heads[i].second;
    c.causal = causal[i];
    c.window = window[i];
    c.soft_cap = cap[i];
    c.sinks = sinks[i];
    c.num_seqs = seqs[i];
    if (!mix.empty()) c.mix = mix[i];
    c.odd_tiles = odd[i];
  }
}

std::vector<Case> kernel_matrix() {
  const std::vector<rpa::KvDType> dtypes = {rpa::KvDType::kF32, rpa::KvDType::kBF16,
                                            rpa::KvDType::kF16, rpa::KvDType::kInt8,
                                            rpa::KvDType::kFp8E4M3};
  const std::vector<int32_t> dims = {64, 80, 96, 128, 256};
  std::vector<Case> cases;
  for (auto dt : dtypes)  // the full dtype x head dim cross
    for (int32_t d : dims) cases.push_back(Case{dt, d});
  std::mt19937 structure(20260415);
  for (int i = 0; i < 15; ++i)  // plus extra cases leaning on the common f32/bf16 caches
    cases.push_back(Case{i % 3 == 2 ? dtypes[structure() % 5] : dtypes[i % 3 == 0 ? 0 : 1],
                         dims[structure() % 5]});
  AxisValues values;
  values.page_sizes = {1, 16, 128};
  values.heads = {{32, 8}, {12, 2}, {5, 1}, {3, 3}};
  values.mixes = {Mix::kDecode, Mix::kPrefill, Mix::kMixed, Mix::kAll};
  spread_axes(cases, values, structure);
  return cases;
}

rpa::AttentionParams CaseData::params() const {
  rpa::AttentionParams p = base_params;
  p.sinks = has_sinks ? sinks.data() : nullptr;
  return p;
}

BatchSpec case_batch_spec(const Case& c, int32_t prefill_chunk, int32_t extra_shrink) {
  const int32_t width = c.hq * c.head_dim;
  const int32_t shrink = std::max(1, width / 512) * (c.num_seqs > 1 ? 3 : 1) * extra_shrink;
  BatchSpec spec;
  spec.num_seqs = c.num_seqs;
  spec.mix = c.mix;
  spec.page_size = c.page_size;
  spec.max_cached = std::max(8, 400 / shrink);
  spec.prefill_chunk = std::max(2, prefill_chunk / shrink);
  spec.max_mixed_q = std::max(2, 48 / shrink);
  return spec;
}

CaseData make_case_data(const Case& c, uint64_t seed) {
  return make_case_data(c, seed, case_batch_spec(c, 40));
}

CaseData make_case_data(const Case& c, uint64_t seed, const BatchSpec& spec) {
  Rng rng(seed);
  // Keep the reference's work (tokens x Hq x kv_len x D) near 10^7 multiply-adds so the
  // whole matrix stays within seconds in Release and a few minutes under ASan.
  CaseData data;
  data.batch = random_batch(spec, rng);
  data.cache = make_cache(c.dtype, c.hkv, c.head_dim, data.batch, c.page_size, rng);
  data.x = random_tokens(data.batch.num_tokens(), c.hq, c.hkv, c.head_dim, rng);
  data.sinks = random_floats(c.hq, rng, -2.0f, 2.0f);
  data.has_sinks = c.sinks;

  rpa::AttentionParams& p = data.base_params;
  p.num_q_heads = c.hq;
  // With a cap, logits are scaled up so tanh actually bends them (|s| up to ~15).
  p.sm_scale = (c.soft_cap > 0 ? 10.0f : 1.0f) / std::sqrt(static_cast<float>(c.head_dim));
  p.causal = c.causal;
  p.sliding_window = c.window;
  p.soft_cap = c.soft_cap;
  if (c.odd_tiles) data.tuning = rpa::Tuning{7, 30, 48};
  return data;
}

std::string compare_outputs(const std::vector<float>& got, const std::vector<float>& want,
                            int32_t hq, int32_t d, double atol, double rtol) {
  std::ostringstream msg;
  if (got.size() != want.size()) {
    msg << "size " << got.size() << " != " << want.size();
    return msg.str();
  }
  size_t bad = 0, worst = 0;
  double worst_excess = -1.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double tol = atol + rtol * std::fabs(static_cast<double>(want[i]));
    // NaN in either side fails: !(err <= tol).
    if (!(err <= tol)) {
      ++bad;
      const double excess = std::isnan(err) ? std::numeric_limits<double>::infinity() : err - tol;
      if (excess > worst_excess) {
        worst_excess = excess;
        worst = i;
      }
    }
  }
  if (bad == 0) return "";
  const size_t row = worst / d;
  msg << bad << " of " << got.size() << " outputs outside atol " << atol << " rtol " << rtol
      << "; worst at token " << row / hq << " head " << row % hq << " dim " << worst % d << ": got "
      << got[worst] << " want " << want[worst];
  return msg.str();
}

std::string compare_bitwise(const std::vector<float>& a, const std::vector<float>& b) {
  std::ostringstream msg;
  if (a.size() != b.size()) {
    msg << "size " << a.size() << " != " << b.size();
    return msg.str();
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      msg << "first difference at element " << i << ": " << a[i] << " vs " << b[i];
      return msg.str();
    }
  }
  return "";
}

namespace {

template <typename T>
std::string same_bytes(const std::vector<T>& got, const std::vector<T>& want, const char* what,
                       const rpa::CacheShape& s, size_t elem_bytes, size_t row_elems) {
  std::ostringstream msg;
  if (got.size() != want.size()) {
    msg << what << " size differs";
    return msg.str();
  }
  const size_t n = got.size() * sizeof(T);
  const auto* a = reinterpret_cast<const uint8_t*>(got.data());
  const auto* b = reinterpret_cast<const uint8_t*>(want.data());
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) {
      const size_t row = i / elem_bytes / row_elems;
      msg << what << " differs at byte " << i << " (page " << row / s.page_size / s.num_kv_heads
          << " head " << row / s.page_size % s.num_kv_heads << " slot " << row % s.page_size
          << "): " << int{a[i]} << " vs " << int{b[i]};
      return msg.str();
    }
  }
  return "";
}

}  // namespace

std::string compare_caches(const Cache& got, const Cache& want) {
  const size_t es = rpa::element_size(got.shape.dtype);
  const size_t d = got.shape.head_dim;
  if (auto r = same_bytes(got.k, want.k, "K pool", got.shape, es, d); !r.empty()) return r;
  if (auto r = same_bytes(got.v, want.v, "V pool", got.shape, es, d); !r.empty()) return r;
  if (auto r = same_bytes(got.k_row_scales, want.k_row_scales, "K row scales", got.shape, 4, 1);
      !r.empty())
    return r;
  return same_bytes(got.v_row_scales, want.v_row_scales, "V row scales", got.shape, 4, 1);
}

}  // namespace rpa_test
