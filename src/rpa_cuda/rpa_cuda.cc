// The host side of rpa::cuda: plans once per step (plan_on_host, then one upload of the
// metadata), and enqueues the kernels of a layer on a stream.
#include "rpa/rpa_cuda.h"

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "rpa_cuda/host_plan.h"
#include "rpa_cuda/kernels.cuh"

namespace rpa::cuda {
namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw CudaError(std::string("rpa::cuda: ") + what + ": " + cudaGetErrorName(err) + " (" +
                    cudaGetErrorString(err) + ")");
}

// Device memory freed with the owning object.
struct DeviceBuffer {
  void* ptr = nullptr;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
  void allocate(size_t bytes, const char* what) {
    if (bytes > 0) check(cudaMalloc(&ptr, bytes), what);
  }
};

size_t align_up(size_t x) { return (x + 255) / 256 * 256; }

}  // namespace

bool device_available(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (why) *why = std::string("no CUDA device: ") + cudaGetErrorString(err);
    return false;
  }
  if (count == 0) {
    if (why) *why = "no CUDA device: cudaGetDeviceCount found 0 devices";
    return false;
  }
  return true;
}

std::string device_name() {
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  cudaDeviceProp prop;
  check(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
         std::to_string(prop.minor) + ")";
}

struct Plan::Impl {
  detail::HostPlan host;
  // One device blob: the step metadata, the item lists, the splits and the sinks (offsets in
  // bytes), then the split-KV workspace.
  DeviceBuffer blob;
  DeviceBuffer partials;
  size_t off_cu = 0, off_kv = 0, off_pages = 0, off_tok = 0, off_simt = 0, off_mma = 0,
         off_splits = 0, off_sinks = 0;
  std::vector<unsigned char> staging;  // host copy kept alive until the upload completes

  template <typename T>
  const T* at(size_t off) const {
    return reinterpret_cast<const T*>(static_cast<const unsigned char*>(blob.ptr) + off);
  }
};

Plan::Plan() = default;
Plan::~Plan() = default;
Plan::Plan(Plan&&) noexcept = default;
Plan& Plan::operator=(Plan&&) noexcept = default;

namespace {
const Plan::Impl& checked(const std::unique_ptr<Plan::Impl>& impl) {
  if (!impl) throw Error("rpa::cuda: Plan is empty (use make_plan)");
  return *impl;
}
}  // namespace

int32_t Plan::num_seqs() const { return checked(impl_).host.num_seqs; }
int32_t Plan::num_tokens() const { return checked(impl_).host.num_tokens; }
int32_t Plan::num_work_items() const {
  const auto& h = checked(impl_).host;
  return static_cast<int32_t>(h.simt_items.size() + h.mma_items.size());
}
int32_t Plan::num_tensor_core_items() const {
  return static_cast<int32_t>(checked(impl_).host.mma_items.size());
}
int32_t Plan::num_kv_splits() const { return checked(impl_).host.num_partials; }
const CacheShape& Plan::shape() const { return checked(impl_).host.shape; }
const AttentionParams& Plan::params() const { return checked(impl_).host.params; }

Plan make_plan(const RaggedBatch& batch, const CacheShape& shape, const AttentionParams& params,
               void* stream, const Tuning& tuning) {
  auto impl = std::make_unique<Plan::Impl>();
  Plan::Impl& p = *impl;
  // RPA_CUDA_TENSOR_CORES=0 runs prefill/mixed tiles of 16-bit caches on the CUDA-core kernel
  // too (the tensor-core kernel's results against everything else).
  // RPA_CUDA_FUSED_WRITE=0 leaves every KV write to the write kernel (the decode CTAs then
  // only read). Both switches exist for diagnosis; the defaults are on.
  auto env_off = [](const char* name) {
    const char* v = std::getenv(name);
    return v && std::strcmp(v, "0") == 0;
  };
  p.host = detail::plan_on_host(batch, shape, params, tuning, !env_off("RPA_CUDA_TENSOR_CORES"),
                                !env_off("RPA_CUDA_FUSED_WRITE"));
  const detail::HostPlan& h = p.host;

  size_t size = 0;
  auto place = [&](size_t bytes) {
    const size_t off = size;
    size = align_up(size + bytes);
    return off;
  };
  p.off_cu = place(h.cu_q_lens.size() * 4);
  p.off_kv = place(h.kv_lens.size() * 4);
  p.off_pages = place(h.page_indices.size() * 4);
  p.off_tok = place(h.token_seq.size() * 4);
  p.off_simt = place(h.simt_items.size() * sizeof(detail::GpuItem));
  p.off_mma = place(h.mma_items.size() * sizeof(detail::GpuItem));
  p.off_splits = place(h.splits.size() * sizeof(detail::GpuSplit));
  p.off_sinks = place(h.sinks.size() * 4);
  p.staging.assign(size, 0);
  auto put = [&](size_t off, const void* src, size_t bytes) {
    if (bytes) std::memcpy(p.staging.data() + off, src, bytes);
  };
  put(p.off_cu, h.cu_q_lens.data(), h.cu_q_lens.size() * 4);
  put(p.off_kv, h.kv_lens.data(), h.kv_lens.size() * 4);
  put(p.off_pages, h.page_indices.data(), h.page_indices.size() * 4);
  put(p.off_tok, h.token_seq.data(), h.token_seq.size() * 4);
  put(p.off_simt, h.simt_items.data(), h.simt_items.size() * sizeof(detail::GpuItem));
  put(p.off_mma, h.mma_items.data(), h.mma_items.size() * sizeof(detail::GpuItem));
  put(p.off_splits, h.splits.data(), h.splits.size() * sizeof(detail::GpuSplit));
  put(p.off_sinks, h.sinks.data(), h.sinks.size() * 4);

  p.blob.allocate(size, "cudaMalloc (plan)");
  const size_t partial_floats =
      static_cast<size_t>(h.num_partials) * h.group * (static_cast<size_t>(shape.head_dim) + 2);
  p.partials.allocate(partial_floats * sizeof(float), "cudaMalloc (split-KV workspace)");
  const auto s = static_cast<cudaStream_t>(stream);
  if (size > 0) {
    check(cudaMemcpyAsync(p.blob.ptr, p.staging.data(), size, cudaMemcpyHostToDevice, s),
          "cudaMemcpyAsync (plan)");
    // Pageable memory: the copy is staged before cudaMemcpyAsync returns, but wait anyway so
    // the plan never depends on that detail.
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize (plan upload)");
  }
  Plan plan;
  plan.impl_ = std::move(impl);
  return plan;
}

void run(const Plan& plan, const float* q, const float* k, const float* v, KvCache& cache,
         float* out, void* stream) {
  const Plan::Impl& p = plan.impl();
  const detail::HostPlan& h = p.host;
  const CacheShape& s = cache.shape;
  if (s.num_pages != h.shape.num_pages || s.num_kv_heads != h.shape.num_kv_heads ||
      s.page_size != h.shape.page_size || s.head_dim != h.shape.head_dim ||
      s.dtype != h.shape.dtype)
    throw Error("rpa::cuda::run: the cache's shape differs from the plan's");
  if (h.num_tokens > 0 && (!q || !k || !v || !out || !cache.k || !cache.v))
    throw Error("rpa::cuda::run: null q, k, v, out or cache pool");
  if (s.dtype == KvDType::kInt8 && (!cache.k_row_scales || !cache.v_row_scales))
    throw Error("rpa::cuda::run: int8 cache needs k_row_scales and v_row_scales");
  if (h.num_tokens == 0) return;

  detail::StepArgs a;
  a.cu_q_lens = p.at<int32_t>(p.off_cu);
  a.kv_lens = p.at<int32_t>(p.off_kv);
  a.page_indices = p.at<int32_t>(p.off_pages);
  a.token_seq = p.at<int32_t>(p.off_tok);
  a.sinks = h.sinks.empty() ? nullptr : p.at<float>(p.off_sinks);
  a.pages_per_seq = h.pages_per_seq;
  a.num_tokens = h.num_tokens;
  a.q = q;
  a.k = k;
  a.v = v;
  a.out = out;
  a.k_pool = cache.k;
  a.v_pool = cache.v;
  a.k_row_scales = cache.k_row_scales;
  a.v_row_scales = cache.v_row_scales;
  a.k_scale = cache.k_scale;
  a.v_scale = cache.v_scale;
  a.partials = static_cast<float*>(p.partials.ptr);
  a.dtype = static_cast<int32_t>(s.dtype);
  a.num_kv_heads = s.num_kv_heads;
  a.num_q_heads = h.params.num_q_heads;
  a.group = h.group;
  a.page_size = s.page_size;
  a.head_dim = s.head_dim;
  a.sm_scale = h.params.sm_scale;
  a.soft_cap = h.params.soft_cap;
  a.causal = h.params.causal ? 1 : 0;
  a.sliding_window = h.params.sliding_window;

  const auto st = static_cast<cudaStream_t>(stream);
  // RPA_CUDA_SIMT_KERNEL=v1 runs the first version of the CUDA-core kernel (for diagnosis); it
  // has no fused write, so the write kernel then stores every new row.
  const char* simt_version = std::getenv("RPA_CUDA_SIMT_KERNEL");
  const bool v1 = simt_version && std::strcmp(simt_version, "v1") == 0;
  a.first_written_token = v1 ? 0 : h.first_written_token;
  // Stream order is the synchronisation for the rows the write kernel stores: they are written
  // before any attention CTA starts. A decode-only step launches no write kernel.
  detail::launch_write(a, st);
  check(cudaGetLastError(), "KV write kernel launch");
  (v1 ? detail::launch_simt_v1 : detail::launch_simt)(
      a, p.at<detail::GpuItem>(p.off_simt), static_cast<int32_t>(h.simt_items.size()), st);
  check(cudaGetLastError(), "CUDA-core attention kernel launch");
  detail::launch_mma(a, p.at<detail::GpuItem>(p.off_mma), static_cast<int32_t>(h.mma_items.size()),
                     st);
  check(cudaGetLastError(), "tensor-core attention kernel launch");
  detail::launch_merge(a, p.at<detail::GpuSplit>(p.off_splits),
                       static_cast<int32_t>(h.splits.size()), st);
  check(cudaGetLastError(), "split-KV merge kernel launch");
}

}  // namespace rpa::cuda
