// Scalar reference codecs for the ggml block formats. Compiled with -ffp-contract=off so each
// multiply and add rounds separately, exactly like ggml's C code and numpy.
#include "ops/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <string>
#include <utility>

#include "base/dtype.h"
#include "ops/block_layout.h"

namespace kdr::ops {
namespace {

float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}
void put_f16(uint8_t* p, float x) {
  const uint16_t h = f32_to_f16(x);
  std::memcpy(p, &h, 2);
}

// ggml's nearest_int / roundf: round half away from zero.
int round_away(float x) { return static_cast<int>(std::round(x)); }

void pack_scale_min_k4(const int* sc, const int* m, uint8_t* q) {
  std::memset(q, 0, 12);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      q[j] |= sc[j] & 63;
      q[j + 4] |= m[j] & 63;
    } else {
      q[j + 4] = static_cast<uint8_t>((sc[j] & 0xF) | ((m[j] & 0xF) << 4));
      q[j - 4] |= (sc[j] >> 4) << 6;
      q[j] |= (m[j] >> 4) << 6;
    }
  }
}
// --- dequantizers, one block each ---------------------------------------------------------

void deq_q4_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>((b[2 + j] & 0xF) - 8);
    y[j + 16] = d * static_cast<float>((b[2 + j] >> 4) - 8);
  }
}
void deq_q4_1(const uint8_t* b, float* y) {
  const float d = f16_at(b), m = f16_at(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(b[4 + j] & 0xF) + m;
    y[j + 16] = d * static_cast<float>(b[4 + j] >> 4) + m;
  }
}
void deq_q5_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  for (int j = 0; j < 16; ++j) {
    const int q0 = (b[6 + j] & 0xF) | (((qh >> j) & 1) << 4);
    const int q1 = (b[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    y[j] = d * static_cast<float>(q0 - 16);
    y[j + 16] = d * static_cast<float>(q1 - 16);
  }
}
void deq_q5_1(const uint8_t* b, float* y) {
  const float d = f16_at(b), m = f16_at(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  for (int j = 0; j < 16; ++j) {
    const int q0 = (b[8 + j] & 0xF) | (((qh >> j) & 1) << 4);
    const int q1 = (b[8 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    y[j] = d * static_cast<float>(q0) + m;
    y[j + 16] = d * static_cast<float>(q1) + m;
  }
}
void deq_q8_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}
void deq_q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = f16_at(b + 80), dmin = f16_at(b + 82);
  for (int e = 0; e < 256; ++e) {
    const int n = e / 128, j = (e / 32) % 4, l = e % 32;
    const int q = (qs[n * 32 + l] >> (2 * j)) & 3;
    const float dl = d * static_cast<float>(scales[e / 16] & 0xF);
    const float ml = dmin * static_cast<float>(scales[e / 16] >> 4);
    y[e] = dl * static_cast<float>(q) - ml;
  }
}
void deq_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* scales = b + 96;
  const float d = f16_at(b + 108);
  for (int e = 0; e < 256; ++e) {
    const int n = e / 128, j = (e / 32) % 4, l = e % 32;
    const int lo = (qs[n * 32 + l] >> (2 * j)) & 3;
    const int q = lo - (((hmask[l] >> (n * 4 + j)) & 1) ? 0 : 4);
    const float dl = d * static_cast<float>(scale_q3k(e / 16, scales));
    y[e] = dl * static_cast<float>(q);
  }
}
void deq_q4_k(const uint8_t* b, float* y) {
  const float d = f16_at(b), dmin = f16_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int s = 0; s < 8; ++s) {
    int sc, m;
    scale_min_k4(s, scales, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    const uint8_t* q = qs + (s / 2) * 32;
    const int shift = (s % 2) * 4;
    for (int l = 0; l < 32; ++l)
      y[s * 32 + l] = d1 * static_cast<float>((q[l] >> shift) & 0xF) - m1;
  }
}
void deq_q5_k(const uint8_t* b, float* y) {
  const float d = f16_at(b), dmin = f16_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int s = 0; s < 8; ++s) {
    int sc, m;
    scale_min_k4(s, scales, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    const uint8_t* q = qs + (s / 2) * 32;
    const int shift = (s % 2) * 4;
    for (int l = 0; l < 32; ++l) {
      const int v = ((q[l] >> shift) & 0xF) | (((qh[l] >> s) & 1) << 4);
      y[s * 32 + l] = d1 * static_cast<float>(v) - m1;
    }
  }
}
void deq_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16_at(b + 208);
  for (int e = 0; e < 256; ++e) {
    const int n = e / 128, t = (e / 32) % 4, l = e % 32;
    const int lo = (ql[n * 64 + (t % 2) * 32 + l] >> (4 * (t / 2))) & 0xF;
    const int hi = (qh[n * 32 + l] >> (2 * t)) & 3;
    const float dl = d * static_cast<float>(scales[e / 16]);
    y[e] = dl * static_cast<float>((lo | (hi << 4)) - 32);
  }
}
void deq_q8_k(const uint8_t* b, float* y) {
  BlockQ8K blk;
  std::memcpy(&blk, b, sizeof blk);
  for (int j = 0; j < 256; ++j) y[j] = blk.d * static_cast<float>(blk.qs[j]);
}

// --- quantizers, one block each -------------------------------------------------------------

void q_q8_0(const float* x, uint8_t* b) {
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  put_f16(b, d);
  for (int j = 0; j < 32; ++j)
    b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(round_away(x[j] * id)));
}
// Q4_0 / Q5_0: the signed value of largest magnitude maps to -2^(bits-1).
void q_sym(const float* x, uint8_t* b, int bits) {
  float amax = 0, max = 0;
  for (int j = 0; j < 32; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const int half = 1 << (bits - 1);
  const float d = max / static_cast<float>(-half);
  const float id = d != 0 ? 1.0f / d : 0.0f;
  put_f16(b, d);
  int q[32];
  for (int j = 0; j < 32; ++j) {
    q[j] = std::min(2 * half - 1, static_cast<int>(x[j] * id + (static_cast<float>(half) + 0.5f)));
  }
  uint8_t* qs = b + (bits == 4 ? 2 : 6);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
    qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    qh |= static_cast<uint32_t>((q[j + 16] >> 4) & 1) << (j + 16);
  }
  if (bits == 5) std::memcpy(b + 2, &qh, 4);
}
// Q4_1 / Q5_1: min and step.
void q_affine(const float* x, uint8_t* b, int bits) {
  float min = x[0], max = x[0];
  for (int j = 1; j < 32; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
  const int levels = (1 << bits) - 1;
  const float d = (max - min) / static_cast<float>(levels);
  const float id = d != 0 ? 1.0f / d : 0.0f;
  put_f16(b, d);
  put_f16(b + 2, min);
  int q[32];
  for (int j = 0; j < 32; ++j) q[j] = std::min(levels, static_cast<int>((x[j] - min) * id + 0.5f));
  uint8_t* qs = b + (bits == 4 ? 4 : 8);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
    qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    qh |= static_cast<uint32_t>((q[j + 16] >> 4) & 1) << (j + 16);
  }
  if (bits == 5) std::memcpy(b + 4, &qh, 4);
}
void q_q8_k(const float* x, uint8_t* b) {
  BlockQ8K blk{};
  float amax = 0, max = 0;
  for (int j = 0; j < 256; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  if (amax == 0) {
    blk.d = 0;
  } else {
    const float iscale = -127.f / max;
    // ggml's nearest_int rounds half to even (the 1.5*2^23 trick), unlike roundf.
    for (int j = 0; j < 256; ++j) {
      blk.qs[j] =
          static_cast<int8_t>(std::min(127, static_cast<int>(std::nearbyint(iscale * x[j]))));
    }
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += blk.qs[g * 16 + l];
      blk.bsums[g] = static_cast<int16_t>(s);
    }
    blk.d = 1 / iscale;
  }
  std::memcpy(b, &blk, sizeof blk);
}

int clampi(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }

// K-quants with a min (Q2_K, Q4_K, Q5_K): per sub-block, x ~= d*sc*q - dmin*m, q in [0, levels].
// Picks each sub-block's range from its min (clamped to <= 0) and max.
void affine_k(const float* x, int sub, int levels, int scale_max, float* d_out, float* dmin_out,
              int* sc, int* m, int* q) {
  const int nsub = 256 / sub;
  float scale[16], mn[16];
  float max_scale = 0, max_min = 0;
  for (int s = 0; s < nsub; ++s) {
    float lo = 0, hi = 0;
    for (int l = 0; l < sub; ++l) {
      lo = std::min(lo, x[s * sub + l]);
      hi = std::max(hi, x[s * sub + l]);
    }
    scale[s] = (hi - lo) / static_cast<float>(levels);
    mn[s] = -lo;
    max_scale = std::max(max_scale, scale[s]);
    max_min = std::max(max_min, mn[s]);
  }
  const float d = f16_to_f32(f32_to_f16(max_scale / static_cast<float>(scale_max)));
  const float dmin = f16_to_f32(f32_to_f16(max_min / static_cast<float>(scale_max)));
  for (int s = 0; s < nsub; ++s) {
    sc[s] = d > 0 ? clampi(round_away(scale[s] / d), 0, scale_max) : 0;
    m[s] = dmin > 0 ? clampi(round_away(mn[s] / dmin), 0, scale_max) : 0;
    const float step = d * static_cast<float>(sc[s]);
    const float off = dmin * static_cast<float>(m[s]);
    for (int l = 0; l < sub; ++l) {
      q[s * sub + l] = step > 0 ? clampi(round_away((x[s * sub + l] + off) / step), 0, levels) : 0;
    }
  }
  *d_out = d;
  *dmin_out = dmin;
}
// Symmetric K-quants (Q3_K, Q6_K): x ~= d*sc*q, q in [-half, half-1], sc signed.
void sym_k(const float* x, int half, int scale_max, float* d_out, int* sc, int* q) {
  float scale[16], max_scale = 0;
  for (int s = 0; s < 16; ++s) {
    float amax = 0;
    for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(x[s * 16 + l]));
    scale[s] = amax / static_cast<float>(half - 1);
    max_scale = std::max(max_scale, scale[s]);
  }
  const float d = f16_to_f32(f32_to_f16(max_scale / static_cast<float>(scale_max)));
  for (int s = 0; s < 16; ++s) {
    sc[s] = d > 0 ? clampi(round_away(scale[s] / d), 0, scale_max) : 0;
    const float step = d * static_cast<float>(sc[s]);
    for (int l = 0; l < 16; ++l) {
      q[s * 16 + l] = step > 0 ? clampi(round_away(x[s * 16 + l] / step), -half, half - 1) : 0;
    }
  }
  *d_out = d;
}

void q_q2_k(const float* x, uint8_t* b) {
  float d, dmin;
  int sc[16], m[16], q[256];
  affine_k(x, 16, 3, 15, &d, &dmin, sc, m, q);
  for (int s = 0; s < 16; ++s) b[s] = static_cast<uint8_t>(sc[s] | (m[s] << 4));
  uint8_t* qs = b + 16;
  std::memset(qs, 0, 64);
  for (int e = 0; e < 256; ++e) {
    const int n = e / 128, j = (e / 32) % 4, l = e % 32;
    qs[n * 32 + l] |= static_cast<uint8_t>(q[e] << (2 * j));
  }
  put_f16(b + 80, d);
  put_f16(b + 82, dmin);
}
void q_q3_k(const float* x, uint8_t* b) {
  float d;
  int sc[16], q[256];
  sym_k(x, 4, 31, &d, sc, q);
  uint8_t* hmask = b;
  uint8_t* qs = b + 32;
  uint8_t* scales = b + 96;
  std::memset(b, 0, 108);
  for (int i = 0; i < 16; ++i) {
    const int l = sc[i] + 32;
    scales[i % 8] |= static_cast<uint8_t>((l & 0xF) << (i < 8 ? 0 : 4));
    scales[8 + i % 4] |= static_cast<uint8_t>(((l >> 4) & 3) << (2 * (i / 4)));
  }
  for (int e = 0; e < 256; ++e) {
    const int n = e / 128, j = (e / 32) % 4, l = e % 32;
    const int u = q[e] + 4;  // 0..7: bit 2 set means "no -4 offset"
    qs[n * 32 + l] |= static_cast<uint8_t>((u & 3) << (2 * j));
    if (u & 4) hmask[l] |= static_cast<uint8_t>(1 << (n * 4 + j));
  }
  put_f16(b + 108, d);
}
void q_q45_k(const float* x, uint8_t* b, int bits) {
  float d, dmin;
  int sc[8], m[8], q[256];
  affine_k(x, 32, (1 << bits) - 1, 63, &d, &dmin, sc, m, q);
  put_f16(b, d);
  put_f16(b + 2, dmin);
  pack_scale_min_k4(sc, m, b + 4);
  uint8_t* qh = b + 16;
  uint8_t* qs = b + (bits == 4 ? 16 : 48);
  std::memset(qs, 0, 128);
  if (bits == 5) std::memset(qh, 0, 32);
  for (int s = 0; s < 8; ++s) {
    for (int l = 0; l < 32; ++l) {
      const int v = q[s * 32 + l];
      qs[(s / 2) * 32 + l] |= static_cast<uint8_t>((v & 0xF) << ((s % 2) * 4));
      if (bits == 5) qh[l] |= static_cast<uint8_t>(((v >> 4) & 1) << s);
    }
  }
}
void q_q6_k(const float* x, uint8_t* b) {
  float d;
  int sc[16], q[256];
  sym_k(x, 32, 127, &d, sc, q);
  uint8_t* ql = b;
  uint8_t* qh = b + 128;
  std::memset(b, 0, 192);
  for (int s = 0; s < 16; ++s) b[192 + s] = static_cast<uint8_t>(static_cast<int8_t>(sc[s]));
  for (int e = 0; e < 256; ++e) {
    const int n = e / 128, t = (e / 32) % 4, l = e % 32;
    const int u = q[e] + 32;
    ql[n * 64 + (t % 2) * 32 + l] |= static_cast<uint8_t>((u & 0xF) << (4 * (t / 2)));
    qh[n * 32 + l] |= static_cast<uint8_t>((u >> 4) << (2 * t));
  }
  put_f16(b + 208, d);
}

void q_q4_0(const float* x, uint8_t* b) { q_sym(x, b, 4); }
void q_q5_0(const float* x, uint8_t* b) { q_sym(x, b, 5); }
void q_q4_1(const float* x, uint8_t* b) { q_affine(x, b, 4); }
void q_q5_1(const float* x, uint8_t* b) { q_affine(x, b, 5); }
void q_q4_k(const float* x, uint8_t* b) { q_q45_k(x, b, 4); }
void q_q5_k(const float* x, uint8_t* b) { q_q45_k(x, b, 5); }

// The block types ops reads and writes, one block's codec each.
struct BlockCodec {
  DType type;
  int block_elems, block_bytes;  // checked against the registry when registering
  void (*dequantize)(const uint8_t* block, float* y);
  void (*quantize)(const float* x, uint8_t* block);
};
constexpr BlockCodec kBlockCodecs[] = {
    {DType::Q4_0, 32, 18, deq_q4_0, q_q4_0},   {DType::Q4_1, 32, 20, deq_q4_1, q_q4_1},
    {DType::Q5_0, 32, 22, deq_q5_0, q_q5_0},   {DType::Q5_1, 32, 24, deq_q5_1, q_q5_1},
    {DType::Q8_0, 32, 34, deq_q8_0, q_q8_0},   {DType::Q2_K, 256, 84, deq_q2_k, q_q2_k},
    {DType::Q3_K, 256, 110, deq_q3_k, q_q3_k}, {DType::Q4_K, 256, 144, deq_q4_k, q_q4_k},
    {DType::Q5_K, 256, 176, deq_q5_k, q_q5_k}, {DType::Q6_K, 256, 210, deq_q6_k, q_q6_k},
    {DType::Q8_K, 256, 292, deq_q8_k, q_q8_k},
};

// Row conversions for the registry: codec I walked over a row block by block.
template <size_t I>
void dequantize_blocks(const void* src, float* dst, int64_t n) {
  constexpr BlockCodec c = kBlockCodecs[I];
  const auto* p = static_cast<const uint8_t*>(src);
  for (int64_t b = 0; b < n / c.block_elems; ++b)
    c.dequantize(p + b * c.block_bytes, dst + b * c.block_elems);
}
template <size_t I>
void quantize_blocks(const float* src, void* dst, int64_t n) {
  constexpr BlockCodec c = kBlockCodecs[I];
  auto* p = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < n / c.block_elems; ++b)
    c.quantize(src + b * c.block_elems, p + b * c.block_bytes);
}

template <size_t... I>
bool register_block_codecs(std::index_sequence<I...>) {
  for (const BlockCodec& c : kBlockCodecs) {
    const DTypeTraits& t = dtype_traits(c.type);
    if (t.block_elems != c.block_elems || t.block_bytes != c.block_bytes)
      throw std::logic_error(std::string("ops codec of ") + t.name +
                             " disagrees with the registry's block geometry");
  }
  (register_row_conversions(kBlockCodecs[I].type, dequantize_blocks<I>, quantize_blocks<I>), ...);
  return true;
}

// Once, on first use; the namespace-scope call below makes it happen before main whenever
// this file is linked, so the registry is complete for code that reads it directly.
void ensure_block_codecs() {
  static const bool registered =
      register_block_codecs(std::make_index_sequence<std::size(kBlockCodecs)>());
  (void)registered;
}
[[maybe_unused]] const bool kBlockCodecsRegistered = (ensure_block_codecs(), true);

const DTypeTraits& codec_of(DType type, int64_t n, const char* what) {
  ensure_block_codecs();
  row_bytes(type, n);  // validates n
  const DTypeTraits& t = dtype_traits(type);
  if (!is_supported_type(type))
    throw std::invalid_argument(std::string(what) + ": no " + t.name + " row codec in ops");
  return t;
}

}  // namespace

bool is_supported_type(DType type) {
  if (type == DType::F32 || type == DType::F16 || type == DType::BF16) return true;
  for (const BlockCodec& c : kBlockCodecs)
    if (c.type == type) return true;
  return false;
}

void dequantize_row(DType type, const void* src, float* dst, int64_t n) {
  codec_of(type, n, "dequantize_row").to_f32(src, dst, n);
}

void quantize_row(DType type, const float* src, void* dst, int64_t n) {
  codec_of(type, n, "quantize_row").from_f32(src, dst, n);
}

}  // namespace kdr::ops
