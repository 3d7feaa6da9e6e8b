// Row-level access to the paged KV cache: the one definition of how a row is stored
// (quantize on write) and read back, shared by the reference and the kernels.
#include <cstring>
#include <string>

#include "base/dtype.h"
#include "rpa/rpa.h"

namespace rpa {

const char* to_string(KvDType dtype) {
  switch (dtype) {
    case KvDType::kF32:
      return "f32";
    case KvDType::kBF16:
      return "bf16";
    case KvDType::kF16:
      return "f16";
    case KvDType::kInt8:
      return "int8";
    case KvDType::kFp8E4M3:
      return "fp8e4m3";
  }
  return "unknown";
}

size_t element_size(KvDType dtype) {
  switch (dtype) {
    case KvDType::kF32:
      return 4;
    case KvDType::kBF16:
    case KvDType::kF16:
      return 2;
    case KvDType::kInt8:
    case KvDType::kFp8E4M3:
      return 1;
  }
  return 0;
}

namespace {

size_t row_index(const CacheShape& s, int32_t page, int32_t head, int32_t slot) {
  return (static_cast<size_t>(page) * s.num_kv_heads + head) * s.page_size + slot;
}

}  // namespace

void store_row(KvCache& cache, bool is_v, int32_t page, int32_t head, int32_t slot,
               const float* x) {
  const CacheShape& s = cache.shape;
  const int d = s.head_dim;
  const size_t row = row_index(s, page, head, slot);
  void* pool = is_v ? cache.v : cache.k;
  switch (s.dtype) {
    case KvDType::kF32:
      std::memcpy(static_cast<float*>(pool) + row * d, x, d * sizeof(float));
      break;
    case KvDType::kBF16: {
      uint16_t* dst = static_cast<uint16_t*>(pool) + row * d;
      for (int i = 0; i < d; ++i) dst[i] = kdr::f32_to_bf16(x[i]);
      break;
    }
    case KvDType::kF16: {
      uint16_t* dst = static_cast<uint16_t*>(pool) + row * d;
      for (int i = 0; i < d; ++i) dst[i] = kdr::f32_to_f16(x[i]);
      break;
    }
    case KvDType::kInt8: {
      int8_t* dst = static_cast<int8_t*>(pool) + row * d;
      float* scales = is_v ? cache.v_row_scales : cache.k_row_scales;
      scales[row] = kdr::quantize_row_int8(x, d, dst);
      break;
    }
    case KvDType::kFp8E4M3: {
      uint8_t* dst = static_cast<uint8_t*>(pool) + row * d;
      const float scale = is_v ? cache.v_scale : cache.k_scale;
      for (int i = 0; i < d; ++i) dst[i] = kdr::f32_to_fp8e4m3(x[i] / scale);
      break;
    }
  }
}

void load_row(const KvCache& cache, bool is_v, int32_t page, int32_t head, int32_t slot, float* x) {
  const CacheShape& s = cache.shape;
  const int d = s.head_dim;
  const size_t row = row_index(s, page, head, slot);
  const void* pool = is_v ? cache.v : cache.k;
  switch (s.dtype) {
    case KvDType::kF32:
      std::memcpy(x, static_cast<const float*>(pool) + row * d, d * sizeof(float));
      break;
    case KvDType::kBF16: {
      const uint16_t* src = static_cast<const uint16_t*>(pool) + row * d;
      for (int i = 0; i < d; ++i) x[i] = kdr::bf16_to_f32(src[i]);
      break;
    }
    case KvDType::kF16: {
      const uint16_t* src = static_cast<const uint16_t*>(pool) + row * d;
      for (int i = 0; i < d; ++i) x[i] = kdr::f16_to_f32(src[i]);
      break;
    }
    case KvDType::kInt8: {
      const int8_t* src = static_cast<const int8_t*>(pool) + row * d;
      const float scale = (is_v ? cache.v_row_scales : cache.k_row_scales)[row];
      for (int i = 0; i < d; ++i) x[i] = static_cast<float>(src[i]) * scale;
      break;
    }
    case KvDType::kFp8E4M3: {
      const uint8_t* src = static_cast<const uint8_t*>(pool) + row * d;
      const float scale = is_v ? cache.v_scale : cache.k_scale;
      for (int i = 0; i < d; ++i) x[i] = kdr::fp8e4m3_to_f32(src[i]) * scale;
      break;
    }
  }
}

void copy_page(KvCache& cache, int32_t src, int32_t dst, int32_t slots) {
  const CacheShape& s = cache.shape;
  if (src < 0 || src >= s.num_pages || dst < 0 || dst >= s.num_pages || slots < 0 ||
      slots > s.page_size)
    throw Error("copy_page: page " + std::to_string(src) + " -> " + std::to_string(dst) + ", " +
                std::to_string(slots) + " slots, outside a cache of " +
                std::to_string(s.num_pages) + " pages of " + std::to_string(s.page_size));
  if (src == dst || slots == 0) return;
  const size_t row_bytes = static_cast<size_t>(s.head_dim) * element_size(s.dtype);
  for (int32_t h = 0; h < s.num_kv_heads; ++h) {
    const size_t from = row_index(s, src, h, 0), to = row_index(s, dst, h, 0);
    for (void* pool : {cache.k, cache.v}) {
      char* base = static_cast<char*>(pool);
      std::memcpy(base + to * row_bytes, base + from * row_bytes, slots * row_bytes);
    }
    if (s.dtype == KvDType::kInt8)
      for (float* scales : {cache.k_row_scales, cache.v_row_scales})
        std::memcpy(scales + to, scales + from, slots * sizeof(float));
  }
}

}  // namespace rpa
