// The GPU test program: rpa::cuda against rpa::reference on the cases the CPU tests use
// (tests/rpa/cases.h) and on what only a GPU run can show: a pool over 2^31 elements,
// decode at kv_len 131072, page sizes 1 and 256, head dims 80/96/256, batch invariance and
// run-to-run determinism. Outputs within a tolerance by dtype and path, the cache equal
// byte for byte, outputs poisoned with NaN before the run and unwritten slots NaN.
//
// No test framework (the GPU machines have no GoogleTest): prints one line per failure with
// the seed and the case, then "N passed, M failed"; exits 1 on any failure and 2 without a
// CUDA device (never passes silently).
//   rpa_cuda_gpu_test [--quick] [--list] [--filter=SUBSTRING[,SUBSTRING...]]
// KDR_SEED=<seed> replays a run.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "base/dtype.h"
#include "cases.h"
#include "rpa/rpa_cuda.h"

namespace rpa_test {
namespace {

void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw rpa::cuda::CudaError(std::string(what) + ": " + cudaGetErrorString(err));
}

// A device allocation freed at scope exit.
struct DeviceMemory {
  void* ptr = nullptr;
  explicit DeviceMemory(size_t bytes) {
    if (bytes) cuda_check(cudaMalloc(&ptr, bytes), "cudaMalloc");
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  ~DeviceMemory() {
    if (ptr) cudaFree(ptr);
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr);
  }
};

void upload(void* dst, const void* src, size_t bytes) {
  if (bytes) cuda_check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "upload");
}
void download(void* dst, const void* src, size_t bytes) {
  if (bytes) cuda_check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "download");
}

// Runs plan + run on the GPU over a device copy of `cache`; `cache` receives the device's
// cache afterwards. Outputs start as NaN (all bits set), so a row never written fails.
std::vector<float> run_gpu(const Batch& b, const rpa::AttentionParams& p, const NewTokens& x,
                           Cache& cache, const rpa::Tuning& tuning = {}) {
  const size_t pool_bytes = cache.k.size();
  DeviceMemory k_pool(pool_bytes), v_pool(pool_bytes);
  DeviceMemory k_scales(cache.k_row_scales.size() * 4), v_scales(cache.v_row_scales.size() * 4);
  upload(k_pool.ptr, cache.k.data(), pool_bytes);
  upload(v_pool.ptr, cache.v.data(), pool_bytes);
  upload(k_scales.ptr, cache.k_row_scales.data(), cache.k_row_scales.size() * 4);
  upload(v_scales.ptr, cache.v_row_scales.data(), cache.v_row_scales.size() * 4);
  DeviceMemory q(x.q.size() * 4), k(x.k.size() * 4), v(x.v.size() * 4);
  upload(q.ptr, x.q.data(), x.q.size() * 4);
  upload(k.ptr, x.k.data(), x.k.size() * 4);
  upload(v.ptr, x.v.data(), x.v.size() * 4);
  const size_t out_n = static_cast<size_t>(b.num_tokens()) * p.num_q_heads * cache.shape.head_dim;
  DeviceMemory out(out_n * 4);
  if (out_n) cuda_check(cudaMemset(out.ptr, 0xff, out_n * 4), "cudaMemset");

  rpa::KvCache view = cache.view();
  view.k = k_pool.ptr;
  view.v = v_pool.ptr;
  view.k_row_scales = cache.k_row_scales.empty() ? nullptr : k_scales.as<float>();
  view.v_row_scales = cache.v_row_scales.empty() ? nullptr : v_scales.as<float>();
  const rpa::cuda::Plan plan = rpa::cuda::make_plan(b.view(), cache.shape, p, nullptr, tuning);
  rpa::cuda::run(plan, q.as<float>(), k.as<float>(), v.as<float>(), view, out.as<float>(), nullptr);
  cuda_check(cudaDeviceSynchronize(), "kernels");
  cuda_check(cudaGetLastError(), "kernels");

  std::vector<float> got(out_n);
  download(got.data(), out.ptr, out_n * 4);
  download(cache.k.data(), k_pool.ptr, pool_bytes);
  download(cache.v.data(), v_pool.ptr, pool_bytes);
  download(cache.k_row_scales.data(), k_scales.ptr, cache.k_row_scales.size() * 4);
  download(cache.v_row_scales.data(), v_scales.ptr, cache.v_row_scales.size() * 4);
  return got;
}

bool uses_tensor_cores(const Batch& b, rpa::KvDType dtype) {
  return (dtype == rpa::KvDType::kBF16 || dtype == rpa::KvDType::kF16) &&
         b.distribution[0] < b.num_seqs();
}

// Output tolerance by cache dtype and path. The CUDA-core kernel (decodes; every path of
// f32, int8 and fp8 caches) works in f32 on exactly dequantised values, as the CPU kernels
// do: 1e-4. The tensor-core kernel rounds Q and the softmax weights to the cache's 16-bit
// type (f32 accumulation). Its reference is given the same rounded Q (see
// reference_queries), which leaves the weights' rounding, 2^-9 relative in bf16 and 2^-12 in
// f16, on outputs that are averages of values in [-1, 1].
double tolerance(const Batch& b, rpa::KvDType dtype) {
  if (!uses_tensor_cores(b, dtype)) return 1e-4;
  return dtype == rpa::KvDType::kBF16 ? 6e-3 : 1.5e-3;
}

// The new tokens the reference attends with: Q rounded to the cache's 16-bit type where the
// tensor-core kernel runs (it multiplies in that type), else unchanged.
NewTokens reference_queries(const Batch& b, rpa::KvDType dtype, const NewTokens& x) {
  if (!uses_tensor_cores(b, dtype)) return x;
  NewTokens r = x;
  for (float& e : r.q)
    e = dtype == rpa::KvDType::kBF16 ? kdr::bf16_to_f32(kdr::f32_to_bf16(e))
                                     : kdr::f16_to_f32(kdr::f32_to_f16(e));
  return r;
}

// Caches compared with memcmp first (pools of gigabytes), then byte by byte for the message.
std::string compare_caches_fast(const Cache& got, const Cache& want) {
  if (got.k.size() == want.k.size() && got.v.size() == want.v.size() &&
      std::memcmp(got.k.data(), want.k.data(), got.k.size()) == 0 &&
      std::memcmp(got.v.data(), want.v.data(), got.v.size()) == 0 &&
      got.k_row_scales.size() == want.k_row_scales.size() &&
      std::memcmp(got.k_row_scales.data(), want.k_row_scales.data(), got.k_row_scales.size() * 4) ==
          0 &&
      std::memcmp(got.v_row_scales.data(), want.v_row_scales.data(), got.v_row_scales.size() * 4) ==
          0)
    return "";
  return compare_caches(got, want);
}

// GPU and reference on one case: outputs close, caches identical. Returns the failures.
// `cache` is taken by value: a caller that moves its cache in (the pool of several GiB)
// holds two copies at the peak instead of three.
std::string check_against_reference(const Batch& b, const rpa::AttentionParams& p,
                                    const NewTokens& x, Cache cache,
                                    const rpa::Tuning& tuning = {}) {
  Cache want_cache = cache;
  const std::vector<float> want =
      run_reference(b, p, reference_queries(b, cache.shape.dtype, x), want_cache);
  Cache got_cache = std::move(cache);
  const std::vector<float> got = run_gpu(b, p, x, got_cache, tuning);
  std::string fail;
  const double tol = tolerance(b, cache.shape.dtype);
  if (auto r = compare_outputs(got, want, p.num_q_heads, cache.shape.head_dim, tol, tol);
      !r.empty())
    fail += "outputs: " + r;
  if (auto r = compare_caches_fast(got_cache, want_cache); !r.empty())
    fail += (fail.empty() ? "" : "; ") + std::string("cache: ") + r;
  return fail;
}

// As check_against_reference, for a run in which every item takes the CUDA-core kernel
// (RPA_CUDA_TENSOR_CORES=0): the reference attends with the unrounded Q, tolerance 1e-4.
std::string check_simt_only(const Batch& b, const rpa::AttentionParams& p, const NewTokens& x,
                            Cache cache) {
  Cache want_cache = cache;
  const std::vector<float> want = run_reference(b, p, x, want_cache);
  Cache got_cache = std::move(cache);
  const std::vector<float> got = run_gpu(b, p, x, got_cache);
  std::string fail;
  if (auto r = compare_outputs(got, want, p.num_q_heads, got_cache.shape.head_dim, 1e-4, 1e-4);
      !r.empty())
    fail += "outputs: " + r;
  if (auto r = compare_caches_fast(got_cache, want_cache); !r.empty())
    fail += (fail.empty() ? "" : "; ") + std::string("cache: ") + r;
  return fail;
}

// Sequence i of b alone (same range of the distribution, same pages).
Batch sequence_alone(const Batch& b, int32_t i) {
  Batch one;
  one.cu_q_lens = {0, b.q_len(i)};
  one.kv_lens = {b.kv_lens[i]};
  one.pages_per_seq = b.pages_per_seq;
  one.page_indices.assign(b.page_indices.begin() + static_cast<size_t>(i) * b.pages_per_seq,
                          b.page_indices.begin() + static_cast<size_t>(i + 1) * b.pages_per_seq);
  const bool decode = i < b.distribution[0];
  const bool prefill = !decode && i < b.distribution[1];
  one.distribution[0] = decode ? 1 : 0;
  one.distribution[1] = decode || prefill ? 1 : 0;
  one.distribution[2] = 1;
  one.num_pages = b.num_pages;
  return one;
}

// Each sequence's output alone equals its rows of the batch bit for bit, and a second run of
// the batch equals the first.
std::string check_invariance(const Batch& b, const rpa::AttentionParams& p, const NewTokens& x,
                             const Cache& cache, const rpa::Tuning& tuning = {}) {
  Cache c1 = cache, c2 = cache;
  const std::vector<float> first = run_gpu(b, p, x, c1, tuning);
  const std::vector<float> second = run_gpu(b, p, x, c2, tuning);
  if (auto r = compare_bitwise(first, second); !r.empty()) return "run to run: " + r;
  const int32_t hq = p.num_q_heads, hkv = cache.shape.num_kv_heads, d = cache.shape.head_dim;
  for (int32_t i = 0; i < b.num_seqs(); ++i) {
    const Batch one = sequence_alone(b, i);
    const size_t t0 = b.cu_q_lens[i], t1 = b.cu_q_lens[i + 1];
    NewTokens xi;
    xi.q.assign(x.q.begin() + t0 * hq * d, x.q.begin() + t1 * hq * d);
    xi.k.assign(x.k.begin() + t0 * hkv * d, x.k.begin() + t1 * hkv * d);
    xi.v.assign(x.v.begin() + t0 * hkv * d, x.v.begin() + t1 * hkv * d);
    Cache ci = cache;
    const std::vector<float> alone = run_gpu(one, p, xi, ci, tuning);
    const std::vector<float> in_batch(first.begin() + t0 * hq * d, first.begin() + t1 * hq * d);
    if (auto r = compare_bitwise(alone, in_batch); !r.empty())
      return "sequence " + std::to_string(i) + " alone vs in the batch: " + r;
  }
  return "";
}

rpa::AttentionParams params_for(int32_t hq, int32_t d) {
  rpa::AttentionParams p;
  p.num_q_heads = hq;
  p.sm_scale = 1.0f / std::sqrt(static_cast<float>(d));
  return p;
}

struct Runner {
  uint64_t seed = 0;
  std::vector<std::string> filters;  // run a check whose name contains any of these (all: empty)
  bool list_only = false;            // print the names that would run, run nothing
  int passed = 0, failed = 0;

  // Runs one named check; an exception counts as a failure with its message.
  void check(const std::string& name, const std::function<std::string(uint64_t)>& body) {
    if (!filters.empty() && std::none_of(filters.begin(), filters.end(), [&](const std::string& f) {
          return name.find(f) != std::string::npos;
        }))
      return;
    if (list_only) {
      std::printf("%s\n", name.c_str());
      return;
    }
    const uint64_t case_seed = seed ^ std::hash<std::string>{}(name);
    const auto t0 = std::chrono::steady_clock::now();
    std::string fail;
    try {
      fail = body(case_seed);
    } catch (const std::exception& e) {
      fail = std::string("exception: ") + e.what();
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (fail.empty()) {
      ++passed;
      std::printf("ok   %-60s %.2fs\n", name.c_str(), s);
    } else {
      ++failed;
      std::printf("FAIL %s (KDR_SEED=%llu --filter=%s): %s\n", name.c_str(),
                  static_cast<unsigned long long>(seed), name.c_str(), fail.c_str());
    }
    std::fflush(stdout);
  }
};

// A batch of the given sequences with a filled cache and new tokens.
struct Built {
  Batch b;
  Cache cache;
  NewTokens x;
};
Built build(const std::vector<int32_t>& q_lens, const std::vector<int32_t>& kv_lens,
            const int32_t dist[3], rpa::KvDType dtype, int32_t hq, int32_t hkv, int32_t d,
            int32_t page, uint64_t seed) {
  Rng rng(seed);
  Built w;
  w.b = layout_batch(q_lens, kv_lens, dist, page, rng);
  w.cache = make_cache(dtype, hkv, d, w.b, page, rng);
  w.x = random_tokens(w.b.num_tokens(), hq, hkv, d, rng);
  return w;
}

void run_all(Runner& run, bool quick) {
  // 1. The CPU kernel matrix, case for case (the CPU tile sizes do not apply on the GPU).
  const std::vector<Case> matrix = kernel_matrix();
  for (size_t i = 0; i < matrix.size(); ++i) {
    if (quick && i % 10 != 0) continue;
    const Case c = matrix[i];
    run.check("matrix/" + case_name(c, i), [&](uint64_t seed) {
      const CaseData data = make_case_data(c, seed);
      return check_against_reference(data.batch, data.params(), data.x, data.cache);
    });
  }

  // 2. Each path alone and together on both 16-bit caches, every head dim.
  for (auto dt : {rpa::KvDType::kBF16, rpa::KvDType::kF16}) {
    for (int32_t d : {64, 80, 96, 128, 256}) {
      if (quick && d != 80) continue;
      for (Mix mix : {Mix::kDecode, Mix::kPrefill, Mix::kMixed, Mix::kAll}) {
        const std::string name = std::string("paths/") + rpa::to_string(dt) + "_d" +
                                 std::to_string(d) + "_" + to_string(mix);
        run.check(name, [&](uint64_t seed) {
          Rng rng(seed);
          BatchSpec spec;
          spec.num_seqs = 9;
          spec.mix = mix;
          spec.page_size = 16;
          spec.max_cached = 300;
          spec.prefill_chunk = 37;
          spec.max_mixed_q = 70;
          const Batch b = random_batch(spec, rng);
          const Cache cache = make_cache(dt, 2, d, b, 16, rng);
          const NewTokens x = random_tokens(b.num_tokens(), 8, 2, d, rng);
          rpa::AttentionParams p = params_for(8, d);
          return check_against_reference(b, p, x, cache);
        });
      }
    }
  }

  // 3. Page sizes 1 and 256 (pages smaller than a 64-position block; one page per block).
  for (int32_t page : {1, 256}) {
    for (auto dt : {rpa::KvDType::kBF16, rpa::KvDType::kInt8}) {
      const std::string name = "pages/p" + std::to_string(page) + "_" + rpa::to_string(dt);
      run.check(name, [&](uint64_t seed) {
        const int32_t dist[3] = {2, 3, 4};
        const Built w = build({1, 1, 70, 5}, {300, 1, 600, 257}, dist, dt, 12, 2, 96, page, seed);
        return check_against_reference(w.b, params_for(12, 96), w.x, w.cache);
      });
    }
  }

  // 4. Masks and head configurations on the tensor-core path: sliding window, soft cap,
  // sinks, non-causal, GQA ratios 1, 3, 4, 6 and 16.
  for (auto [hq, hkv] : {std::pair{8, 8}, {9, 3}, {32, 8}, {12, 2}, {16, 1}}) {
    for (int variant = 0; variant < 4; ++variant) {
      if (quick && variant != 3) continue;
      const std::string name = "masks/h" + std::to_string(hq) + "x" + std::to_string(hkv) + "_v" +
                               std::to_string(variant);
      run.check(name, [&, hq = hq, hkv = hkv](uint64_t seed) {
        const int32_t dist[3] = {2, 3, 5};
        const Built w = build({1, 1, 40, 3, 90}, {700, 90, 140, 33, 90}, dist, rpa::KvDType::kBF16,
                              hq, hkv, 128, 16, seed);
        rpa::AttentionParams p = params_for(hq, 128);
        Rng rng(seed + 1);
        const std::vector<float> sinks = random_floats(hq, rng, -2.0f, 2.0f);
        if (variant == 0) p.sliding_window = 37;
        if (variant == 1) {
          p.soft_cap = 30.0f;
          p.sm_scale *= 10.0f;
        }
        if (variant == 2) p.sinks = sinks.data();
        if (variant == 3) {
          p.causal = false;
          p.sliding_window = 100;
          p.sinks = sinks.data();
        }
        return check_against_reference(w.b, p, w.x, w.cache);
      });
    }
  }

  // 5. Split-KV decode: long decodes at the default split and at an odd one.
  for (int32_t split : {0, 100}) {
    run.check("splits/split" + std::to_string(split), [&](uint64_t seed) {
      const int32_t dist[3] = {3, 3, 4};
      const Built w = build({1, 1, 1, 9}, {5000, 2049, 17, 4100}, dist, rpa::KvDType::kBF16, 4, 2,
                            64, 64, seed);
      rpa::Tuning t;
      t.split_kv_tokens = split;
      return check_against_reference(w.b, params_for(4, 64), w.x, w.cache, t);
    });
  }

  // 6. Batch invariance and determinism, decode splits and tensor-core tiles included.
  for (auto dt : {rpa::KvDType::kBF16, rpa::KvDType::kF32}) {
    run.check(std::string("invariance/") + rpa::to_string(dt), [&](uint64_t seed) {
      const int32_t dist[3] = {3, 4, 6};
      const Built w = build({1, 1, 1, 100, 7, 65}, {3000, 40, 513, 300, 7, 1000}, dist, dt, 32, 8,
                            128, 16, seed);
      return check_invariance(w.b, params_for(32, 128), w.x, w.cache);
    });
  }
  // 7. Diagnosis: the first version of the CUDA-core kernel (RPA_CUDA_SIMT_KERNEL=v1),
  // 16-bit prefill on the CUDA-core kernel instead of tensor cores (RPA_CUDA_TENSOR_CORES=0)
  // and every KV row stored by the write kernel (RPA_CUDA_FUSED_WRITE=0), on a few of the
  // same shapes: if the default fails where one of these passes, the fault is in
  // simt_kernel.cu, mma_kernel.cu or the fused decode write.
  struct Variant {
    const char* name;
    const char* env;
    const char* value;
  };
  for (const Variant& var : {Variant{"simt_v1", "RPA_CUDA_SIMT_KERNEL", "v1"},
                             Variant{"no_tensor_cores", "RPA_CUDA_TENSOR_CORES", "0"},
                             Variant{"no_fused_write", "RPA_CUDA_FUSED_WRITE", "0"}}) {
    for (auto dt : {rpa::KvDType::kBF16, rpa::KvDType::kF16, rpa::KvDType::kInt8}) {
      run.check(std::string(var.name) + "/" + rpa::to_string(dt), [&](uint64_t seed) {
        const int32_t dist[3] = {3, 4, 5};
        const Built w =
            build({1, 1, 1, 20, 9}, {1500, 3, 600, 60, 200}, dist, dt, 12, 2, 80, 16, seed);
        setenv(var.env, var.value, 1);
        std::string fail;
        try {
          // Through the CUDA-core kernel the 16-bit prefill is f32 math: the reference gets
          // the unrounded Q and the 1e-4 tolerance (decided by the plan, not by the dtype).
          fail = std::string(var.env) == "RPA_CUDA_TENSOR_CORES"
                     ? check_simt_only(w.b, params_for(12, 80), w.x, w.cache)
                     : check_against_reference(w.b, params_for(12, 80), w.x, w.cache);
        } catch (...) {
          unsetenv(var.env);
          throw;
        }
        unsetenv(var.env);
        return fail;
      });
    }
  }
  if (quick) return;

  // 8. Decode at kv_len 131072 (Llama-3-8B heads): 256 split pieces per KV head.
  run.check("large/decode_kv131072_bf16", [&](uint64_t seed) {
    const int32_t dist[3] = {1, 1, 1};
    const Built w = build({1}, {131072}, dist, rpa::KvDType::kBF16, 32, 8, 128, 16, seed);
    return check_against_reference(w.b, params_for(32, 128), w.x, w.cache);
  });

  // 9. A pool over 2^31 elements, the sequences on its last pages: any 32-bit offset
  // product wraps and reads or writes the wrong rows.
  run.check("large/pool_over_2pow31_elements_bf16", [&](uint64_t seed) {
    Rng rng(seed);
    const int32_t hkv = 2, d = 128, page = 16, hq = 8;
    const int64_t per_page = static_cast<int64_t>(hkv) * page * d;
    const int32_t num_pages = static_cast<int32_t>((int64_t{1} << 31) / per_page + 64);
    const int32_t dist[3] = {2, 3, 3};
    Batch b = layout_batch({1, 1, 100}, {900, 33, 260}, dist, page, rng, 0);
    // Move every page the batch uses to the top of a pool of num_pages pages.
    int32_t next = num_pages - 1;
    for (int32_t& pg : b.page_indices)
      if (pg >= 0) pg = next--;
    b.num_pages = num_pages;
    Cache cache = make_cache(rpa::KvDType::kBF16, hkv, d, b, page, rng);
    if (cache.shape.pool_elements() <= (size_t{1} << 31)) return std::string("pool too small");
    const NewTokens x = random_tokens(b.num_tokens(), hq, hkv, d, rng);
    return check_against_reference(b, params_for(hq, d), x, std::move(cache));
  });
}

}  // namespace
}  // namespace rpa_test

int main(int argc, char** argv) {
  bool quick = false, list = false;
  std::string filter;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--list") {
      list = true;
    } else if (arg.rfind("--filter=", 0) == 0) {
      filter = arg.substr(9);
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--list] [--filter=SUBSTRING[,SUBSTRING...]]\n",
                   argv[0]);
      return 2;
    }
  }
  rpa_test::Runner run;
  for (size_t at = 0; !filter.empty() && at <= filter.size();) {
    const size_t comma = std::min(filter.find(',', at), filter.size());
    if (comma > at) run.filters.push_back(filter.substr(at, comma - at));
    at = comma + 1;
  }
  if (list) {  // no device needed
    run.list_only = true;
    rpa_test::run_all(run, quick);
    return 0;
  }
  std::string why;
  if (!rpa::cuda::device_available(&why)) {
    std::printf("rpa_cuda_gpu_test: %s\n0 passed, 1 failed\n", why.c_str());
    return 2;
  }
  if (const char* env = std::getenv("KDR_SEED"); env && *env) {
    run.seed = std::strtoull(env, nullptr, 10);
  } else {
    std::random_device rd;
    run.seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  std::printf("rpa_cuda_gpu_test on %s, KDR_SEED=%llu%s\n", rpa::cuda::device_name().c_str(),
              static_cast<unsigned long long>(run.seed), quick ? " (quick)" : "");
  rpa_test::run_all(run, quick);
  std::printf("%d passed, %d failed\n", run.passed, run.failed);
  return run.failed == 0 && run.passed > 0 ? 0 : 1;
}
