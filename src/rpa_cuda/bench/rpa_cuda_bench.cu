// rpa_cuda_bench: the card's ceilings and rpa::cuda on the Llama-3-8B attention shapes of
// `kdr bench attention` (src/cli/bench_attention.cc: Hq 32, Hkv 8, D 128, page 16), one JSON
// object per line:
//   {"kind":"ceiling","name":"read_bandwidth",...}   a streaming read kernel, GB/s
//   {"kind":"ceiling","name":"cublas_bf16_gemm",...}  cublasGemmEx 8192^3 bf16, TFLOP/s
//   {"kind":"case","case":"decode-32seq",...}          ms (median), GB/s, MBU, TFLOP/s
// MBU is the case's compulsory bytes over the measured read bandwidth, as on the CPU.
//   rpa_cuda_bench [--reps N] [--case NAME]
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/dtype_portable.h"
#include "rpa/rpa_cuda.h"

namespace {

constexpr int32_t kQHeads = 32, kKvHeads = 8, kHeadDim = 128, kPageSize = 16;

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}
void check_blas(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string(st));
}

struct DeviceMemory {
  void* ptr = nullptr;
  explicit DeviceMemory(size_t bytes) {
    check(cudaMalloc(&ptr, std::max<size_t>(bytes, 256)), "cudaMalloc");
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  ~DeviceMemory() { cudaFree(ptr); }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Times `body` (enqueueing work on stream 0) `reps` times after one warm-up; returns the
// median milliseconds.
template <typename F>
double time_ms(int reps, F&& body) {
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  body();
  check(cudaDeviceSynchronize(), "warm-up");
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    check(cudaEventRecord(a), "record");
    body();
    check(cudaEventRecord(b), "record");
    check(cudaEventSynchronize(b), "sync");
    float t = 0;
    check(cudaEventElapsedTime(&t, a, b), "elapsed");
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return median(ms);
}

__global__ void read_kernel(const int4* __restrict__ src, size_t n, int* sink) {
  int acc = 0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int4 v = __ldcs(src + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678) *sink = acc;  // keeps the loads
}

double read_bandwidth_gbs(int reps) {
  const size_t bytes = size_t{4} << 30;
  DeviceMemory buf(bytes), sink(4);
  check(cudaMemset(buf.ptr, 1, bytes), "memset");
  int sms = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "attr");
  const double ms = time_ms(reps, [&] {
    read_kernel<<<sms * 8, 512>>>(static_cast<const int4*>(buf.ptr), bytes / 16,
                                  static_cast<int*>(sink.ptr));
  });
  return bytes / (ms * 1e-3) / 1e9;
}

double cublas_bf16_tflops(int reps) {
  const int n = 8192;
  DeviceMemory a(size_t{2} * n * n), b(size_t{2} * n * n), c(size_t{2} * n * n);
  check(cudaMemset(a.ptr, 0, size_t{2} * n * n), "memset");
  check(cudaMemset(b.ptr, 0, size_t{2} * n * n), "memset");
  cublasHandle_t h;
  check_blas(cublasCreate(&h), "cublasCreate");
  const float alpha = 1.0f, beta = 0.0f;
  const double ms = time_ms(reps, [&] {
    check_blas(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a.ptr, CUDA_R_16BF, n,
                            b.ptr, CUDA_R_16BF, n, &beta, c.ptr, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
  });
  cublasDestroy(h);
  return 2.0 * n * n * static_cast<double>(n) / (ms * 1e-3) / 1e12;
}

struct Sequence {
  int32_t q_len = 1;
  int32_t kv_len = 1;
};
struct BenchCase {
  std::string name;
  rpa::KvDType dtype;
  std::vector<Sequence> seqs;
};

// kv lengths spread deterministically over [lo, hi], as decode_spread in
// src/cli/bench_attention.cc (the same cases as the CPU benchmark).
std::vector<Sequence> decode_spread(int32_t count, int32_t lo, int32_t hi) {
  std::vector<Sequence> seqs(count);
  for (int32_t i = 0; i < count; ++i) {
    const int32_t k = (i * 13) % count;
    const int32_t len =
        count == 1 ? lo : lo + static_cast<int32_t>((int64_t{hi - lo} * k) / (count - 1));
    seqs[i] = {1, std::max(lo, len - k % 7)};
  }
  return seqs;
}

std::vector<BenchCase> all_cases() {
  std::vector<BenchCase> cases;
  const auto spread = decode_spread(32, 512, 8192);
  for (rpa::KvDType dt : {rpa::KvDType::kBF16, rpa::KvDType::kInt8, rpa::KvDType::kFp8E4M3,
                          rpa::KvDType::kF16, rpa::KvDType::kF32})
    cases.push_back({"decode-32seq", dt, spread});
  cases.push_back({"decode-4096", rpa::KvDType::kF16, {{1, 4096}}});
  cases.push_back({"decode-16384", rpa::KvDType::kF16, {{1, 16384}}});
  cases.push_back({"prefill-2048", rpa::KvDType::kBF16, {{2048, 2048}}});
  const auto decodes = decode_spread(24, 512, 8192);
  const std::vector<Sequence> chunks = {{512, 1024 + 512}, {512, 4096 + 512}};
  std::vector<Sequence> mixed = decodes;
  mixed.insert(mixed.end(), chunks.begin(), chunks.end());
  cases.push_back({"mixed", rpa::KvDType::kBF16, mixed});
  cases.push_back({"mixed-decode-part", rpa::KvDType::kBF16, decodes});
  cases.push_back({"mixed-prefill-part", rpa::KvDType::kBF16, chunks});
  return cases;
}

// As useful_flops and bytes_moved in src/cli/bench_attention.cc (causal, no window).
double useful_flops(const std::vector<Sequence>& seqs) {
  double attended = 0;
  for (const Sequence& s : seqs)
    for (int32_t j = 0; j < s.q_len; ++j) attended += s.kv_len - s.q_len + j + 1;
  return attended * kQHeads * 4.0 * kHeadDim;
}
double bytes_moved(const std::vector<Sequence>& seqs, rpa::KvDType dtype) {
  double kv_positions = 0, tokens = 0;
  for (const Sequence& s : seqs) {
    kv_positions += s.kv_len;
    tokens += s.q_len;
  }
  double per_position = 2.0 * kKvHeads * kHeadDim * static_cast<double>(rpa::element_size(dtype));
  if (dtype == rpa::KvDType::kInt8) per_position += 2.0 * kKvHeads * sizeof(float);
  return kv_positions * per_position + tokens * 4.0 * (2.0 * kQHeads + 2.0 * kKvHeads) * kHeadDim;
}

// Fills a pool with valid random values of the dtype (a hash of the index: no host copy).
__global__ void fill_pool(uint8_t* pool, size_t elems, int dtype, uint32_t salt) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < elems;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ salt ^ static_cast<uint32_t>(i >> 32);
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    const float x = (h & 0xffffff) / 8388608.0f - 1.0f;  // [-1, 1)
    switch (static_cast<rpa::KvDType>(dtype)) {
      case rpa::KvDType::kF32:
        reinterpret_cast<float*>(pool)[i] = x;
        break;
      case rpa::KvDType::kBF16:
        reinterpret_cast<uint16_t*>(pool)[i] = kdr::portable::f32_to_bf16(x);
        break;
      case rpa::KvDType::kF16:
        reinterpret_cast<uint16_t*>(pool)[i] = kdr::portable::f32_to_f16(x);
        break;
      case rpa::KvDType::kInt8:
        reinterpret_cast<int8_t*>(pool)[i] = static_cast<int8_t>(x * 127.0f);
        break;
      case rpa::KvDType::kFp8E4M3:
        pool[i] = kdr::portable::f32_to_fp8e4m3(x);
        break;
    }
  }
}
__global__ void fill_value(float* p, size_t n, float v) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    p[i] = v;
}

void run_case(const BenchCase& c, int reps, double read_gbs, double gemm_tflops,
              const std::string& device) {
  const int32_t n = static_cast<int32_t>(c.seqs.size());
  std::vector<int32_t> cu{0}, kv;
  int32_t pages_per_seq = 1, total_pages = 0;
  for (const Sequence& s : c.seqs) {
    cu.push_back(cu.back() + s.q_len);
    kv.push_back(s.kv_len);
    const int32_t pages = (s.kv_len + kPageSize - 1) / kPageSize;
    pages_per_seq = std::max(pages_per_seq, pages);
    total_pages += pages;
  }
  // Pages shuffled over the pool, as a serving engine's allocator leaves them.
  std::vector<int32_t> order(total_pages);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937 rng(7);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<int32_t> pages(static_cast<size_t>(n) * pages_per_seq, 0);
  for (int32_t i = 0, next = 0; i < n; ++i)
    for (int32_t j = 0; j < (kv[i] + kPageSize - 1) / kPageSize; ++j)
      pages[static_cast<size_t>(i) * pages_per_seq + j] = order[next++];
  int32_t decode_end = 0;
  while (decode_end < n && c.seqs[decode_end].q_len == 1) ++decode_end;
  int32_t prefill_end = decode_end;
  while (prefill_end < n && c.seqs[prefill_end].q_len == c.seqs[decode_end].q_len) ++prefill_end;

  rpa::RaggedBatch batch;
  batch.num_seqs = n;
  batch.num_tokens = cu.back();
  batch.cu_q_lens = cu.data();
  batch.kv_lens = kv.data();
  batch.page_indices = pages.data();
  batch.pages_per_seq = pages_per_seq;
  batch.distribution[0] = decode_end;
  batch.distribution[1] = prefill_end;
  batch.distribution[2] = n;
  rpa::CacheShape shape{total_pages, kKvHeads, kPageSize, kHeadDim, c.dtype};
  rpa::AttentionParams params;
  params.num_q_heads = kQHeads;
  params.sm_scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));

  const size_t pool_bytes = shape.pool_elements() * rpa::element_size(c.dtype);
  DeviceMemory k_pool(pool_bytes), v_pool(pool_bytes);
  DeviceMemory k_scales(shape.scale_elements() * 4), v_scales(shape.scale_elements() * 4);
  fill_pool<<<1024, 256>>>(static_cast<uint8_t*>(k_pool.ptr), shape.pool_elements(),
                           static_cast<int>(c.dtype), 1);
  fill_pool<<<1024, 256>>>(static_cast<uint8_t*>(v_pool.ptr), shape.pool_elements(),
                           static_cast<int>(c.dtype), 2);
  fill_value<<<256, 256>>>(static_cast<float*>(k_scales.ptr), shape.scale_elements(), 1.0f / 127);
  fill_value<<<256, 256>>>(static_cast<float*>(v_scales.ptr), shape.scale_elements(), 1.0f / 127);
  const size_t t = batch.num_tokens;
  DeviceMemory q(t * kQHeads * kHeadDim * 4), k(t * kKvHeads * kHeadDim * 4),
      v(t * kKvHeads * kHeadDim * 4), out(t * kQHeads * kHeadDim * 4);
  fill_pool<<<256, 256>>>(static_cast<uint8_t*>(q.ptr), t * kQHeads * kHeadDim, 0, 3);
  fill_pool<<<256, 256>>>(static_cast<uint8_t*>(k.ptr), t * kKvHeads * kHeadDim, 0, 4);
  fill_pool<<<256, 256>>>(static_cast<uint8_t*>(v.ptr), t * kKvHeads * kHeadDim, 0, 5);
  check(cudaDeviceSynchronize(), "fill");

  rpa::KvCache cache;
  cache.shape = shape;
  cache.k = k_pool.ptr;
  cache.v = v_pool.ptr;
  cache.k_row_scales = static_cast<float*>(k_scales.ptr);
  cache.v_row_scales = static_cast<float*>(v_scales.ptr);
  cache.k_scale = 0.0125f;
  cache.v_scale = 0.02f;

  rpa::cuda::Plan plan;
  const double plan_ms = time_ms(1, [&] { plan = rpa::cuda::make_plan(batch, shape, params); });
  const double ms = time_ms(reps, [&] {
    rpa::cuda::run(plan, static_cast<const float*>(q.ptr), static_cast<const float*>(k.ptr),
                   static_cast<const float*>(v.ptr), cache, static_cast<float*>(out.ptr));
  });
  const double bytes = bytes_moved(c.seqs, c.dtype), flops = useful_flops(c.seqs);
  const double gbs = bytes / (ms * 1e-3) / 1e9, tflops = flops / (ms * 1e-3) / 1e12;
  std::printf(
      "{\"kind\":\"case\",\"case\":\"%s\",\"dtype\":\"%s\",\"device\":\"%s\",\"ms\":%.4f,"
      "\"plan_ms\":%.3f,\"work_items\":%d,\"tensor_core_items\":%d,\"kv_splits\":%d,"
      "\"GB_per_s\":%.1f,\"mbu\":%.3f,\"tflops\":%.2f,\"of_cublas_bf16\":%.3f}\n",
      c.name.c_str(), rpa::to_string(c.dtype), device.c_str(), ms, plan_ms, plan.num_work_items(),
      plan.num_tensor_core_items(), plan.num_kv_splits(), gbs, gbs / read_gbs, tflops,
      tflops / gemm_tflops);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 20;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else if (arg == "--case" && i + 1 < argc) {
      only = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--reps N] [--case NAME]\n", argv[0]);
      return 2;
    }
  }
  std::string why;
  if (!rpa::cuda::device_available(&why)) {
    std::printf("rpa_cuda_bench: %s\n", why.c_str());
    return 2;
  }
  try {
    const std::string device = rpa::cuda::device_name();
    const double read_gbs = read_bandwidth_gbs(reps);
    std::printf(
        "{\"kind\":\"ceiling\",\"name\":\"read_bandwidth\",\"device\":\"%s\",\"GB_per_s\":%.1f}\n",
        device.c_str(), read_gbs);
    const double gemm = cublas_bf16_tflops(std::max(3, reps / 4));
    std::printf(
        "{\"kind\":\"ceiling\",\"name\":\"cublas_bf16_gemm\",\"device\":\"%s\",\"n\":8192,"
        "\"tflops\":%.1f}\n",
        device.c_str(), gemm);
    std::fflush(stdout);
    int failures = 0;
    for (const BenchCase& c : all_cases()) {
      if (!only.empty() && c.name != only) continue;
      try {
        run_case(c, reps, read_gbs, gemm, device);
      } catch (const std::exception& e) {
        ++failures;
        std::printf("{\"kind\":\"error\",\"case\":\"%s\",\"dtype\":\"%s\",\"error\":\"%s\"}\n",
                    c.name.c_str(), rpa::to_string(c.dtype), e.what());
        std::fflush(stdout);
        cudaGetLastError();  // clear a sticky launch error where possible
      }
    }
    return failures ? 1 : 0;
  } catch (const std::exception& e) {
    std::printf("rpa_cuda_bench: %s\n", e.what());
    return 1;
  }
}
