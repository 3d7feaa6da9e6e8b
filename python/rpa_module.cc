// Python module `rpa`: ragged paged attention on NumPy arrays (see docs/python.md).
// Arrays are checked strictly (dtype, ndim, shape, C order) and never copied or converted,
// so the caches are updated in place; every problem is a ValueError naming the argument.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/dtype_registry.h"
#include "base/thread_pool.h"
#include "rpa/rpa.h"

namespace py = pybind11;

namespace {

[[noreturn]] void bad(const std::string& what) { throw py::value_error("rpa: " + what); }

std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Checks that `a` is a C-contiguous array of T with `ndim` dimensions (and writeable when the
// kernel writes it); names the argument otherwise.
template <typename T>
void check_array(const py::array& a, const char* name, py::ssize_t ndim, const char* dtype_name,
                 bool writeable = false) {
  if (!py::dtype::of<T>().is(a.dtype()))
    bad(std::string(name) + " must have dtype " + dtype_name + ", got " +
        std::string(py::str(a.dtype())));
  if (a.ndim() != ndim)
    bad(std::string(name) + " must have " + std::to_string(ndim) + " dimensions, got shape " +
        shape_of(a));
  if (!(a.flags() & py::array::c_style))
    bad(std::string(name) + " must be C-contiguous (use numpy.ascontiguousarray)");
  if (writeable && !a.writeable()) bad(std::string(name) + " must be writeable");
}

void check_dim(const py::array& a, const char* name, py::ssize_t axis, py::ssize_t want,
               const char* what) {
  if (a.shape(axis) != want)
    bad(std::string(name) + " has shape " + shape_of(a) + " but dimension " + std::to_string(axis) +
        " must be " + what + " = " + std::to_string(want));
}

rpa::KvDType parse_kv_dtype(const std::optional<std::string>& name, const py::array& k_cache) {
  if (!name) {
    if (py::dtype::of<float>().is(k_cache.dtype())) return rpa::KvDType::kF32;
    if (py::dtype::of<int8_t>().is(k_cache.dtype())) return rpa::KvDType::kInt8;
    if (py::dtype::of<uint8_t>().is(k_cache.dtype())) return rpa::KvDType::kFp8E4M3;
    if (py::dtype::of<uint16_t>().is(k_cache.dtype()))
      bad("kv_dtype must be given for uint16 caches: 'bf16' or 'f16'");
    bad("k_cache dtype " + std::string(py::str(k_cache.dtype())) +
        " is not a cache dtype (float32, uint16 with kv_dtype, int8, uint8)");
  }
  // Names are the dtype registry's (aliases such as bfloat16 and float8_e4m3fn included).
  if (const kdr::DTypeTraits* t = kdr::find_dtype(*name)) {
    switch (t->id) {
      case kdr::DType::F32:
        return rpa::KvDType::kF32;
      case kdr::DType::BF16:
        return rpa::KvDType::kBF16;
      case kdr::DType::F16:
        return rpa::KvDType::kF16;
      case kdr::DType::INT8_ROW:
        return rpa::KvDType::kInt8;
      case kdr::DType::FP8_E4M3:
        return rpa::KvDType::kFp8E4M3;
      default:
        break;
    }
  }
  bad("unknown kv_dtype '" + *name + "' (f32, bf16, f16, int8, fp8e4m3)");
}

template <typename T>
void check_cache_array(const py::array& a, const char* name, const char* dtype_name) {
  check_array<T>(a, name, 4, dtype_name, /*writeable=*/true);
}

// One pool shared by the calls of a process; the mutex serialises calls because the pool is
// not re-entrant and the GIL is released while the kernel runs.
std::mutex& pool_mutex() {
  static std::mutex mu;
  return mu;
}
kdr::ThreadPool& pool_with(int num_threads) {
  static std::unique_ptr<kdr::ThreadPool> pool;
  if (!pool || pool->num_threads() != num_threads)
    pool = std::make_unique<kdr::ThreadPool>(num_threads);
  return *pool;
}

struct Call {
  rpa::RaggedBatch batch;
  rpa::AttentionParams params;
  rpa::KvCache cache;
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  py::array_t<float> out;
};

// Checks every array against the others and builds the C++ call; throws ValueError.
Call prepare(const py::array& q, const py::array& k, const py::array& v, const py::array& k_cache,
             const py::array& v_cache, const py::array& kv_lens, const py::array& page_indices,
             const py::array& cu_q_lens, const py::array& distribution, float sm_scale, bool causal,
             std::optional<int32_t> sliding_window, std::optional<float> soft_cap,
             const std::optional<py::array>& sinks, const std::optional<std::string>& kv_dtype,
             const std::optional<py::array>& k_scales, const std::optional<py::array>& v_scales,
             float k_scale, float v_scale) {
  check_array<float>(q, "q", 3, "float32");
  check_array<float>(k, "k", 3, "float32");
  check_array<float>(v, "v", 3, "float32");
  const py::ssize_t t = q.shape(0), hq = q.shape(1), d = q.shape(2);
  check_dim(k, "k", 0, t, "num_tokens (q.shape[0])");
  check_dim(k, "k", 2, d, "head_dim (q.shape[2])");
  if (v.shape(0) != k.shape(0) || v.shape(1) != k.shape(1) || v.shape(2) != k.shape(2))
    bad("v has shape " + shape_of(v) + " but k has " + shape_of(k));
  const py::ssize_t hkv = k.shape(1);

  const rpa::KvDType dtype = parse_kv_dtype(kv_dtype, k_cache);
  for (const auto& [arr, name] : {std::pair{&k_cache, "k_cache"}, std::pair{&v_cache, "v_cache"}}) {
    switch (dtype) {
      case rpa::KvDType::kF32:
        check_cache_array<float>(*arr, name, "float32 (kv_dtype 'f32')");
        break;
      case rpa::KvDType::kBF16:
      case rpa::KvDType::kF16:
        check_cache_array<uint16_t>(*arr, name, "uint16 (bf16/f16 bits)");
        break;
      case rpa::KvDType::kInt8:
        check_cache_array<int8_t>(*arr, name, "int8 (kv_dtype 'int8')");
        break;
      case rpa::KvDType::kFp8E4M3:
        check_cache_array<uint8_t>(*arr, name, "uint8 (fp8 e4m3 bits)");
        break;
    }
  }
  check_dim(k_cache, "k_cache", 1, hkv, "num_kv_heads (k.shape[1])");
  check_dim(k_cache, "k_cache", 3, d, "head_dim (q.shape[2])");
  for (int axis = 0; axis < 4; ++axis)
    if (v_cache.shape(axis) != k_cache.shape(axis))
      bad("v_cache has shape " + shape_of(v_cache) + " but k_cache has " + shape_of(k_cache));

  check_array<int32_t>(kv_lens, "kv_lens", 1, "int32");
  check_array<int32_t>(page_indices, "page_indices", 2, "int32");
  check_array<int32_t>(cu_q_lens, "cu_q_lens", 1, "int32");
  check_array<int32_t>(distribution, "distribution", 1, "int32");
  const py::ssize_t s = kv_lens.shape(0);
  check_dim(page_indices, "page_indices", 0, s, "num_seqs (len(kv_lens))");
  check_dim(cu_q_lens, "cu_q_lens", 0, s + 1, "num_seqs + 1");
  check_dim(distribution, "distribution", 0, 3, "3");
  if (s > 0 && page_indices.shape(1) == 0) bad("page_indices has no columns");

  Call c;
  c.cache.shape.num_pages = static_cast<int32_t>(k_cache.shape(0));
  c.cache.shape.num_kv_heads = static_cast<int32_t>(hkv);
  c.cache.shape.page_size = static_cast<int32_t>(k_cache.shape(2));
  c.cache.shape.head_dim = static_cast<int32_t>(d);
  c.cache.shape.dtype = dtype;
  c.cache.k = const_cast<void*>(k_cache.data());
  c.cache.v = const_cast<void*>(v_cache.data());
  c.cache.k_scale = k_scale;
  c.cache.v_scale = v_scale;
  if (dtype == rpa::KvDType::kInt8) {
    if (!k_scales || !v_scales) bad("int8 caches need k_scales and v_scales");
    for (const auto& [arr, name] :
         {std::pair{&*k_scales, "k_scales"}, std::pair{&*v_scales, "v_scales"}}) {
      check_array<float>(*arr, name, 3, "float32", /*writeable=*/true);
      for (int axis = 0; axis < 3; ++axis)
        if (arr->shape(axis) != k_cache.shape(axis))
          bad(std::string(name) + " has shape " + shape_of(*arr) +
              " but must be [num_pages, num_kv_heads, page_size] of k_cache " + shape_of(k_cache));
    }
    c.cache.k_row_scales = static_cast<float*>(const_cast<void*>(k_scales->data()));
    c.cache.v_row_scales = static_cast<float*>(const_cast<void*>(v_scales->data()));
  } else if (k_scales || v_scales) {
    bad("k_scales/v_scales are only for int8 caches (fp8 takes the floats k_scale/v_scale)");
  }
  if (dtype == rpa::KvDType::kFp8E4M3 && !(k_scale > 0.0f && v_scale > 0.0f))
    bad("k_scale and v_scale must be > 0");

  c.batch.num_seqs = static_cast<int32_t>(s);
  c.batch.num_tokens = static_cast<int32_t>(t);
  c.batch.cu_q_lens = static_cast<const int32_t*>(cu_q_lens.data());
  c.batch.kv_lens = static_cast<const int32_t*>(kv_lens.data());
  c.batch.page_indices = static_cast<const int32_t*>(page_indices.data());
  c.batch.pages_per_seq = static_cast<int32_t>(page_indices.shape(1));
  const auto* dist = static_cast<const int32_t*>(distribution.data());
  std::copy(dist, dist + 3, c.batch.distribution);

  c.params.num_q_heads = static_cast<int32_t>(hq);
  c.params.sm_scale = sm_scale;
  c.params.causal = causal;
  // None and 0 both mean "off"; negative values are named by rpa's validation.
  c.params.sliding_window = sliding_window.value_or(0);
  c.params.soft_cap = soft_cap.value_or(0.0f);
  if (sinks) {
    check_array<float>(*sinks, "sinks", 1, "float32");
    check_dim(*sinks, "sinks", 0, hq, "num_q_heads (q.shape[1])");
    c.params.sinks = static_cast<const float*>(sinks->data());
  }
  c.q = static_cast<const float*>(q.data());
  c.k = static_cast<const float*>(k.data());
  c.v = static_cast<const float*>(v.data());
  c.out = py::array_t<float>({t, hq, d});
  return c;
}

// The kernel (make_plan + run on the shared pool) or, for kReference, rpa::reference.
template <bool kReference>
py::array_t<float> attend(const py::array& q, const py::array& k, const py::array& v,
                          const py::array& k_cache, const py::array& v_cache,
                          const py::array& kv_lens, const py::array& page_indices,
                          const py::array& cu_q_lens, const py::array& distribution, float sm_scale,
                          bool causal, std::optional<int32_t> sliding_window,
                          std::optional<float> soft_cap, const std::optional<py::array>& sinks,
                          std::optional<int> num_threads,
                          const std::optional<std::string>& kv_dtype,
                          const std::optional<py::array>& k_scales,
                          const std::optional<py::array>& v_scales, float k_scale, float v_scale) {
  Call c = prepare(q, k, v, k_cache, v_cache, kv_lens, page_indices, cu_q_lens, distribution,
                   sm_scale, causal, sliding_window, soft_cap, sinks, kv_dtype, k_scales, v_scales,
                   k_scale, v_scale);
  const int threads = num_threads.value_or(kdr::ThreadPool::hardware_threads());
  if (threads < 1) bad("num_threads must be >= 1, got " + std::to_string(threads));
  float* out = c.out.mutable_data();
  try {
    py::gil_scoped_release release;
    if constexpr (kReference) {
      rpa::reference(c.batch, c.params, c.q, c.k, c.v, c.cache, out);
    } else {
      const rpa::Plan plan = rpa::make_plan(c.batch, c.cache.shape, c.params, threads);
      std::lock_guard<std::mutex> lock(pool_mutex());
      rpa::run(plan, c.q, c.k, c.v, c.cache, out, &pool_with(threads));
    }
  } catch (const rpa::Error& e) {
    throw py::value_error(e.what());
  }
  return c.out;
}

}  // namespace

PYBIND11_MODULE(rpa, m) {
  m.doc() =
      "Ragged paged attention on CPU: one call attends a whole ragged batch of decoding and "
      "prefilling sequences straight from a paged KV cache, writing the new tokens' K/V into "
      "their pages. See docs/python.md.";
  const char* doc =
      "ragged_paged_attention(q, k, v, k_cache, v_cache, kv_lens, page_indices, cu_q_lens, "
      "distribution, *, sm_scale, causal=True, sliding_window=None, soft_cap=None, sinks=None, "
      "num_threads=None, kv_dtype=None, k_scales=None, v_scales=None, k_scale=1.0, "
      "v_scale=1.0) -> out\n\n"
      "q [T,Hq,D], k/v [T,Hkv,D] float32; caches [num_pages,Hkv,page_size,D] updated in place "
      "(float32, uint16 bits for kv_dtype 'bf16'/'f16', int8 with float32 k_scales/v_scales "
      "[num_pages,Hkv,page_size], uint8 fp8 e4m3 bits with k_scale/v_scale); int32 kv_lens "
      "[S], page_indices [S,pages_per_seq], cu_q_lens [S+1], distribution [3] = (decode_end, "
      "prefill_end, S). Returns out [T,Hq,D] float32. Raises ValueError on bad input.";
  auto args = [] {
    return std::make_tuple(
        py::arg("q"), py::arg("k"), py::arg("v"), py::arg("k_cache"), py::arg("v_cache"),
        py::arg("kv_lens"), py::arg("page_indices"), py::arg("cu_q_lens"), py::arg("distribution"),
        py::kw_only(), py::arg("sm_scale"), py::arg("causal") = true,
        py::arg("sliding_window") = py::none(), py::arg("soft_cap") = py::none(),
        py::arg("sinks") = py::none(), py::arg("num_threads") = py::none(),
        py::arg("kv_dtype") = py::none(), py::arg("k_scales") = py::none(),
        py::arg("v_scales") = py::none(), py::arg("k_scale") = 1.0f, py::arg("v_scale") = 1.0f);
  };
  std::apply([&](auto&&... a) { m.def("ragged_paged_attention", &attend<false>, doc, a...); },
             args());
  std::apply(
      [&](auto&&... a) {
        m.def("reference", &attend<true>,
              "reference(...): the scalar double-precision reference, same signature and "
              "semantics as ragged_paged_attention (num_threads is ignored).",
              a...);
      },
      args());
}
