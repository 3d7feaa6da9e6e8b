// The bf16 kernels of rpa (bf16 KV caches), written once over an ISA layer `Isa`
// (bf16_isa_emulated.h or bf16_isa_x86.h). Included by bf16_emulated.cc and bf16_x86.cc,
// each with its own RPA_BF16_NS, so that the two instantiations never share a symbol (the x86
// one is compiled for AVX-512 and AMX).
//
// Tile work items (prefill, mixed), one KV head, rows r = token * group + head:
//   Q^ = bf16(q) in VNNI pairs    [d32 / 2][qpad][2]   the B operand of S^T, packed once
//   K rows from the pages         [keys][d]            the A operand, 16 keys x 32 dims a tile
//   S^T = K Q^T                   [kpad][qpad] f32     (tdpbf16ps), then * sm_scale, soft cap,
//                                                      mask, online softmax down the columns
//   P^T = bf16(P) in VNNI pairs   [kpad / 2][qpad][2]  the B operand of O^T
//   V^T repacked per block        [d16][kpad]          the A operand, 16 dims x 32 keys a tile
//   O^T += V^T P^T                [d16][qpad] f32      rescaled by the softmax's alpha first
// Working transposed keeps the softmax vertical (16 query rows per vector, no horizontal
// reductions), lets K tiles load straight from the page rows and packs P in pairs of
// adjacent key rows; the one repack per block is V's (docs/rpa.md, "bf16 units").
//
// Decode items: Q^ rows [g][d32], scores by vdpbf16ps over 32 dims at a time (one horizontal
// sum per key and row), the row softmax in f32, then O[r] += P V by vdpbf16ps over key pairs:
// a broadcast pair of probabilities times two V rows interleaved.
#ifndef RPA_BF16_NS
#error "define RPA_BF16_NS before including bf16_attention-inl.h"
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "base/dtype.h"
#include "rpa/bf16_attention.h"
#include "rpa/internal.h"
#include "rpa/variants.h"

namespace rpa::bf16::RPA_BF16_NS {

inline size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

// Where a work item's sequence keeps its rows, for one KV head.
struct SeqRows {
  const Plan::Impl& p;
  const ItemArgs& a;
  int32_t head;
  int32_t d;
  int32_t first_new;  // absolute position of the sequence's first new token
  int64_t tok0;       // index of that token in the batch
  const int32_t* pages;

  SeqRows(const ItemArgs& args, const WorkItem& w)
      : p(*args.plan), a(args), head(w.kv_head), d(args.plan->shape.head_dim) {
    const int32_t q_len = p.cu_q_lens[w.seq + 1] - p.cu_q_lens[w.seq];
    first_new = p.kv_lens[w.seq] - q_len;
    tok0 = p.cu_q_lens[w.seq];
    pages = p.page_indices.data() + static_cast<size_t>(w.seq) * p.pages_per_seq;
  }
  bool cached(int32_t pos) const { return pos < first_new; }
  // The bf16 row of a cached position in its page.
  const uint16_t* page_row(bool is_v, int32_t pos) const {
    const CacheShape& sh = p.shape;
    const size_t row =
        (static_cast<size_t>(pages[pos / sh.page_size]) * sh.num_kv_heads + head) * sh.page_size +
        pos % sh.page_size;
    return static_cast<const uint16_t*>(is_v ? a.cache->v : a.cache->k) + row * d;
  }
  // The f32 input row of a new position.
  const float* input_row(bool is_v, int32_t pos) const {
    const int64_t tok = tok0 + (pos - first_new);
    return (is_v ? a.v : a.k) + (tok * p.shape.num_kv_heads + head) * d;
  }
  // Row `pos` in bf16: a pointer into its page, or the new row rounded into `buf` (exactly
  // what store_row writes).
  const uint16_t* row(bool is_v, int32_t pos, uint16_t* buf) const {
    if (cached(pos)) return page_row(is_v, pos);
    const float* x = input_row(is_v, pos);
    for (int32_t i = 0; i < d; ++i) buf[i] = kdr::f32_to_bf16(x[i]);
    return buf;
  }
  // The fused KV write: the item's own new tokens in [pos0, pos0 + n) go into their pages.
  void write_new_rows(const WorkItem& w, int32_t pos0, int32_t n) const {
    const int32_t lo = std::max(pos0, first_new + w.q_begin);
    const int32_t hi = std::min(pos0 + n, first_new + w.q_end);
    for (int32_t pos = lo; pos < hi; ++pos) {
      const int32_t page = pages[pos / p.shape.page_size];
      const int32_t slot = pos % p.shape.page_size;
      store_row(*a.cache, false, page, head, slot, input_row(false, pos));
      store_row(*a.cache, true, page, head, slot, input_row(true, pos));
    }
  }
};

// The work item `w` narrowed to its KV head `w.kv_head + j` (its own partial slot).
inline WorkItem head_item(const WorkItem& w, int32_t j) {
  WorkItem h = w;
  h.kv_head = w.kv_head + j;
  h.num_heads = 1;
  if (w.partial >= 0) h.partial = w.partial + j * w.partial_stride;
  return h;
}

// Query row r of item w (r = token * g + head within the group): its query head and the
// offset of its row in q and out ([T][Hq][D]).
inline void query_row(const Plan::Impl& p, const WorkItem& w, size_t r, int32_t& head,
                      int64_t& offset) {
  const int32_t g = p.group;
  const int64_t token = p.cu_q_lens[w.seq] + w.q_begin + static_cast<int64_t>(r) / g;
  head = w.kv_head * g + static_cast<int32_t>(r % g);
  offset = (token * p.params.num_q_heads + head) * p.shape.head_dim;
}

// exp(x) for one x <= 0, through the vector formula (so every instantiation agrees).
template <class Isa>
float exp1(float x) {
  float lanes[16];
  Isa::store(Isa::exp_non_positive(Isa::set1(x)), lanes);
  return lanes[0];
}

// ---------------------------------------------------------------------------------------
// Tiles.

// C (+)= A B over a grid of 16 x 16 f32 tiles: C tile (i, j) at c + 16 i ldc + 16 j (ldc in
// floats); A tile (i, kk) at a_tiles[i] + 32 kk, rows lda bytes apart (16 rows x 32 bf16); B
// tile (kk, j) at b + 16 kk ldb + 32 j (ldb in bf16 elements; 16 rows of 16 column pairs).
// Blocks of 2 x 2 C tiles (tiles 0-3), their two A tiles (4, 5) and two B tiles (6, 7).
template <class Isa, int MI, int NJ>
void tile_block(const uint16_t* a0, const uint16_t* a1, size_t lda, const uint16_t* b, size_t ldb,
                float* c, size_t ldc, int kt, bool accumulate) {
  float* c00 = c;
  float* c01 = c + 16;
  float* c10 = c + 16 * ldc;
  float* c11 = c10 + 16;
  const size_t ldc_bytes = ldc * sizeof(float);
  if (accumulate) {
    Isa::template tile_load<0>(c00, ldc_bytes);
    if constexpr (NJ == 2) Isa::template tile_load<1>(c01, ldc_bytes);
    if constexpr (MI == 2) Isa::template tile_load<2>(c10, ldc_bytes);
    if constexpr (MI == 2 && NJ == 2) Isa::template tile_load<3>(c11, ldc_bytes);
  } else {
    Isa::template tile_zero<0>();
    if constexpr (NJ == 2) Isa::template tile_zero<1>();
    if constexpr (MI == 2) Isa::template tile_zero<2>();
    if constexpr (MI == 2 && NJ == 2) Isa::template tile_zero<3>();
  }
  const size_t ldb_bytes = ldb * sizeof(uint16_t);
  for (int kk = 0; kk < kt; ++kk) {
    const uint16_t* bk = b + static_cast<size_t>(kk) * 16 * ldb;
    Isa::template tile_load<4>(a0 + 32 * kk, lda);
    if constexpr (MI == 2) Isa::template tile_load<5>(a1 + 32 * kk, lda);
    Isa::template tile_load<6>(bk, ldb_bytes);
    if constexpr (NJ == 2) Isa::template tile_load<7>(bk + 32, ldb_bytes);
    Isa::template tile_dp_bf16<0, 4, 6>();
    if constexpr (NJ == 2) Isa::template tile_dp_bf16<1, 4, 7>();
    if constexpr (MI == 2) Isa::template tile_dp_bf16<2, 5, 6>();
    if constexpr (MI == 2 && NJ == 2) Isa::template tile_dp_bf16<3, 5, 7>();
  }
  Isa::template tile_store<0>(c00, ldc_bytes);
  if constexpr (NJ == 2) Isa::template tile_store<1>(c01, ldc_bytes);
  if constexpr (MI == 2) Isa::template tile_store<2>(c10, ldc_bytes);
  if constexpr (MI == 2 && NJ == 2) Isa::template tile_store<3>(c11, ldc_bytes);
}

template <class Isa>
void tile_matmul(const uint16_t* const* a_tiles, size_t lda, const uint16_t* b, size_t ldb,
                 float* c, size_t ldc, int mt, int nt, int kt, bool accumulate) {
  for (int i = 0; i < mt; i += 2) {
    const uint16_t* a0 = a_tiles[i];
    const uint16_t* a1 = i + 1 < mt ? a_tiles[i + 1] : nullptr;
    for (int j = 0; j < nt; j += 2) {
      const uint16_t* bj = b + 32 * static_cast<size_t>(j);
      float* cij = c + 16 * (static_cast<size_t>(i) * ldc + j);
      if (a1 && j + 1 < nt) {
        tile_block<Isa, 2, 2>(a0, a1, lda, bj, ldb, cij, ldc, kt, accumulate);
      } else if (a1) {
        tile_block<Isa, 2, 1>(a0, a1, lda, bj, ldb, cij, ldc, kt, accumulate);
      } else if (j + 1 < nt) {
        tile_block<Isa, 1, 2>(a0, a1, lda, bj, ldb, cij, ldc, kt, accumulate);
      } else {
        tile_block<Isa, 1, 1>(a0, a1, lda, bj, ldb, cij, ldc, kt, accumulate);
      }
    }
  }
}

// out + c ld (32 bf16) = u32 lane c of r[0..16), for c < 16: a 16 x 16 transpose of 32-bit
// elements (bf16 pairs) in four rounds of shuffles.
template <class Isa>
void transpose_u32_16x16(const typename Isa::Bf16x32 (&r)[16], uint16_t* out, size_t ld) {
  using B = typename Isa::Bf16x32;
  B t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = Isa::unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = Isa::unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int k = 0; k < 16; k += 4) {
    u[k] = Isa::unpacklo_epi64(t[k], t[k + 2]);
    u[k + 1] = Isa::unpackhi_epi64(t[k], t[k + 2]);
    u[k + 2] = Isa::unpacklo_epi64(t[k + 1], t[k + 3]);
    u[k + 3] = Isa::unpackhi_epi64(t[k + 1], t[k + 3]);
  }
  // Now u[4k + j], 128-bit lane L, holds rows 4k..4k+3 of column 4L + j.
  for (int j = 0; j < 4; ++j) {
    const B v0 = Isa::template shuffle_i32x4<0x88>(u[j], u[4 + j]);  // lanes 0, 2
    const B w0 = Isa::template shuffle_i32x4<0xdd>(u[j], u[4 + j]);  // lanes 1, 3
    const B v1 = Isa::template shuffle_i32x4<0x88>(u[8 + j], u[12 + j]);
    const B w1 = Isa::template shuffle_i32x4<0xdd>(u[8 + j], u[12 + j]);
    Isa::store_bits(Isa::template shuffle_i32x4<0x88>(v0, v1), out + j * ld);
    Isa::store_bits(Isa::template shuffle_i32x4<0x88>(w0, w1), out + (4 + j) * ld);
    Isa::store_bits(Isa::template shuffle_i32x4<0xdd>(v0, v1), out + (8 + j) * ld);
    Isa::store_bits(Isa::template shuffle_i32x4<0xdd>(w0, w1), out + (12 + j) * ld);
  }
}

// A prefill or mixed work item (one KV head) on tiles.
template <class Isa>
void tile_item(const ItemArgs& a, const WorkItem& w, const Buffers& b) {
  using F = typename Isa::F32x16;
  const Plan::Impl& p = *a.plan;
  const SeqRows seq(a, w);
  const int32_t d = p.shape.head_dim;
  const int32_t g = p.group;
  const size_t rows = static_cast<size_t>(w.q_end - w.q_begin) * g;
  const size_t qpad = round_up(rows, 16);
  const int nqt = static_cast<int>(qpad / 16);
  const size_t d16 = round_up(d, 16), d32 = round_up(d, 32);
  const float sm_scale = p.params.sm_scale;
  const SoftCap cap{p.params.soft_cap};
  const KeyMask mask = KeyMask::of(p.params, p.kv_lens[w.seq]);

  // Q^ in VNNI pairs: element (dim 2i + e, row r) at q[(i qpad + r) 2 + e], zero padded. A
  // row's bf16 pairs are its u32 lanes, so 16 rows x 16 pairs transpose into place at a time.
  for (size_t r0 = 0; r0 < qpad; r0 += 16) {
    for (size_t x0 = 0; x0 < d32; x0 += 32) {
      typename Isa::Bf16x32 qrows[16];
      for (size_t i = 0; i < 16; ++i) {
        if (r0 + i >= rows) {
          qrows[i] = Isa::zero_bits();
          continue;
        }
        int32_t head;
        int64_t off;
        query_row(p, w, r0 + i, head, off);
        qrows[i] = Isa::round_bf16(a.q + off + x0, std::min<size_t>(32, d - x0));
      }
      transpose_u32_16x16<Isa>(qrows, b.q + ((x0 / 2) * qpad + r0) * 2, 2 * qpad);
    }
  }
  int32_t max_lo = INT32_MIN, min_hi = INT32_MAX;  // over the real rows: blocks inside need no mask
  for (size_t r = 0; r < qpad; ++r) {
    b.m[r] = -INFINITY;
    b.l[r] = 0.0f;
    if (r < rows) {
      b.vis[r] = mask.range(seq.first_new + w.q_begin + static_cast<int32_t>(r / g));
      max_lo = std::max(max_lo, b.vis[r].lo);
      min_hi = std::min(min_hi, b.vis[r].hi);
    } else {
      b.vis[r] = VisibleRange{};  // padding rows see nothing
    }
  }
  std::fill(b.o, b.o + d16 * qpad, 0.0f);

  const int32_t block = p.tuning.prefill_kv_block;
  const int32_t ps = p.shape.page_size;
  const bool k_from_pages = d % 32 == 0;  // else rows are gathered with zeros to d32
  const size_t ldk = k_from_pages ? d : d32;
  const uint16_t* k_tiles[1024 / 16 + 2];
  const uint16_t* v_tiles[256 / 16];
  Isa::tile_config();
  for (int32_t kb = w.kv_begin; kb < w.kv_end; kb += block) {
    const int32_t n = std::min(block, w.kv_end - kb);
    const size_t kpad = round_up(n, 32);
    const int mt = static_cast<int>(kpad / 16);

    // K: 16 keys a tile, from the page where they are 16 cached rows of one page.
    for (int i = 0; i < mt; ++i) {
      const int32_t t0 = 16 * i;
      const int32_t pos0 = kb + t0;
      if (k_from_pages && t0 + 16 <= n && seq.cached(pos0 + 15) && pos0 % ps + 16 <= ps) {
        k_tiles[i] = seq.page_row(false, pos0);
        continue;
      }
      uint16_t* dst = b.k + static_cast<size_t>(t0) * ldk;
      for (int32_t t = t0; t < t0 + 16; ++t, dst += ldk) {
        if (t < n) {
          const uint16_t* src = seq.row(false, kb + t, dst);
          if (src != dst) std::memcpy(dst, src, d * sizeof(uint16_t));
          std::fill(dst + d, dst + ldk, uint16_t{0});
        } else {
          std::fill(dst, dst + ldk, uint16_t{0});
        }
      }
      k_tiles[i] = b.k + static_cast<size_t>(t0) * ldk;
    }
    // S^T = K Q^T.
    float* s = b.s;
    tile_matmul<Isa>(k_tiles, ldk * sizeof(uint16_t), b.q, 2 * qpad, s, qpad, mt, nqt,
                     static_cast<int>(d32 / 32), false);

    // Scale, soft cap, mask; keys past n are -inf.
    const bool full = max_lo <= kb && kb + n - 1 <= min_hi;
    const F vscale = Isa::set1(sm_scale);
    for (int32_t t = 0; t < n; ++t) {
      float* row = s + t * qpad;
      for (size_t c = 0; c < qpad; c += 16)
        Isa::store(Isa::mul(Isa::load(row + c), vscale), row + c);
      if (cap.active())
        for (size_t r = 0; r < rows; ++r) row[r] = cap(row[r]);
      if (!full) {
        for (size_t r = 0; r < qpad; ++r)
          if (!b.vis[r].sees(kb + t)) row[r] = -INFINITY;
      }
    }
    // Online softmax down each column block of 16 rows; P overwrites S.
    for (size_t c = 0; c < qpad; c += 16) {
      const F m_old = Isa::load(b.m + c);
      F vmax = m_old;
      for (int32_t t = 0; t < n; ++t) vmax = Isa::max(vmax, Isa::load(s + t * qpad + c));
      const F m_use = Isa::replace_neg_inf(vmax, 0.0f);  // rows that see nothing yet stay 0
      const F alpha = Isa::exp_non_positive(Isa::sub(m_old, m_use));
      F sum = Isa::zero();
      for (int32_t t = 0; t < n; ++t) {
        float* sc = s + t * qpad + c;
        const F e = Isa::exp_non_positive(Isa::sub(Isa::load(sc), m_use));
        sum = Isa::add(sum, e);
        Isa::store(e, sc);
      }
      Isa::store(Isa::fmadd(Isa::load(b.l + c), alpha, sum), b.l + c);
      Isa::store(vmax, b.m + c);
      Isa::store(alpha, b.alpha + c);
    }
    for (size_t t = n; t < kpad; ++t) std::fill(s + t * qpad, s + (t + 1) * qpad, 0.0f);
    // P^T in VNNI pairs of adjacent keys.
    for (size_t tp = 0; tp < kpad / 2; ++tp) {
      const float* s0 = s + 2 * tp * qpad;
      for (size_t c = 0; c < qpad; c += 16)
        Isa::store_bf16_pairs(Isa::load(s0 + c), Isa::load(s0 + qpad + c),
                              b.p + (tp * qpad + c) * 2);
    }
    // O^T *= alpha, for the column blocks whose maximum moved (x 1 would change no bit).
    for (size_t c = 0; c < qpad; c += 16) {
      if (std::all_of(b.alpha + c, b.alpha + c + 16, [](float f) { return f == 1.0f; })) continue;
      const F alpha = Isa::load(b.alpha + c);
      for (size_t x = 0; x < d16; ++x) {
        float* o = b.o + x * qpad + c;
        Isa::store(Isa::mul(Isa::load(o), alpha), o);
      }
    }
    // V^T, zero past n keys and d dims: per 32 keys and 16 dims, the key pairs interleaved
    // (16 u32 lanes = dims) and transposed 16 x 16 (lanes = key pairs). New rows are rounded
    // into the K buffer, free once S^T is computed.
    for (size_t t0 = 0; t0 < kpad; t0 += 32) {
      const uint16_t* vrows[32];
      for (size_t i = 0; i < 32; ++i) {
        const size_t t = t0 + i;
        vrows[i] = t < static_cast<size_t>(n)
                       ? seq.row(true, kb + static_cast<int32_t>(t), b.k + t * d32)
                       : b.zeros;
      }
      for (size_t x0 = 0; x0 < d16; x0 += 16) {
        const size_t cnt = std::min<size_t>(16, d - x0);
        typename Isa::Bf16x32 pairs[16];
        for (size_t tp = 0; tp < 16; ++tp)
          pairs[tp] = Isa::interleave_bf16(vrows[2 * tp] + x0, vrows[2 * tp + 1] + x0, cnt);
        transpose_u32_16x16<Isa>(pairs, b.vt + x0 * kpad + t0, kpad);
      }
    }
    for (size_t i = 0; i < d16 / 16; ++i) v_tiles[i] = b.vt + 16 * i * kpad;
    // O^T += V^T P^T.
    tile_matmul<Isa>(v_tiles, kpad * sizeof(uint16_t), b.p, 2 * qpad, b.o, qpad,
                     static_cast<int>(d16 / 16), nqt, static_cast<int>(kpad / 32), true);
    seq.write_new_rows(w, kb, n);
  }
  Isa::tile_release();

  const Sinks sinks{p.params.sinks};
  for (size_t r = 0; r < rows; ++r) {
    int32_t head;
    int64_t off;
    query_row(p, w, r, head, off);
    const float f = sinks.output_factor(head, b.m[r], b.l[r]);
    float* dst = a.out + off;
    for (int32_t x = 0; x < d; ++x) dst[x] = b.o[x * qpad + r] * f;
  }
}

// ---------------------------------------------------------------------------------------
// Decode.

// One KV head of a decode item: g query rows over the item's KV range.
template <class Isa>
void decode_head(const ItemArgs& a, const WorkItem& w, const Buffers& b) {
  using F = typename Isa::F32x16;
  using B = typename Isa::Bf16x32;
  const Plan::Impl& p = *a.plan;
  const SeqRows seq(a, w);
  const int32_t d = p.shape.head_dim;
  const size_t g = static_cast<size_t>(p.group);
  const size_t d16 = round_up(d, 16), d32 = round_up(d, 32);
  const float sm_scale = p.params.sm_scale;
  const SoftCap cap{p.params.soft_cap};
  const VisibleRange vis = KeyMask::of(p.params, p.kv_lens[w.seq]).range(p.kv_lens[w.seq] - 1);
  const int32_t block = p.tuning.decode_kv_block;
  const size_t kpad = round_up(block, 32);  // S row stride

  for (size_t r = 0; r < g; ++r) {  // Q^ rows, rounded once per step
    int32_t head;
    int64_t off;
    query_row(p, w, r, head, off);
    uint16_t* dst = b.q + r * d32;
    for (int32_t x = 0; x < d; ++x) dst[x] = kdr::f32_to_bf16(a.q[off + x]);
    std::fill(dst + d, dst + d32, uint16_t{0});
    b.m[r] = -INFINITY;
    b.l[r] = 0.0f;
  }
  std::fill(b.o, b.o + g * d16, 0.0f);

  for (int32_t kb = w.kv_begin; kb < w.kv_end; kb += block) {
    const int32_t n = std::min(block, w.kv_end - kb);
    const size_t n16 = round_up(n, 16);
    uint16_t* new_k = b.new_rows;
    uint16_t* new_v = b.new_rows + d32;
    for (int32_t t = 0; t < n; ++t) {
      b.krows[t] = seq.row(false, kb + t, new_k);
      b.vrows[t] = seq.row(true, kb + t, new_v);
    }
    if (n % 2) b.krows[n] = b.vrows[n] = b.zeros;  // the pair of the last key
    // The next block's cached rows, into the caches while this one computes: pages are
    // scattered, so the hardware prefetcher cannot guess them (a hint: never faults).
    const int32_t next_end = std::min(kb + 2 * block, w.kv_end);
    for (int32_t pos = kb + block; pos < next_end && seq.cached(pos); ++pos) {
      const char* kr = reinterpret_cast<const char*>(seq.page_row(false, pos));
      const char* vr = reinterpret_cast<const char*>(seq.page_row(true, pos));
      for (size_t off = 0; off < static_cast<size_t>(d) * 2; off += 64) {
        __builtin_prefetch(kr + off, 0, 3);
        __builtin_prefetch(vr + off, 0, 3);
      }
    }
    // S[r][t] = (Q^[r] . K[t]) * sm_scale, 32 dims a step.
    for (int32_t t = 0; t < n; ++t) {
      B kc[8];
      for (size_t c = 0; c < d32 / 32; ++c)
        kc[c] = Isa::load_bf16(b.krows[t] + 32 * c, std::min<size_t>(32, d - 32 * c));
      for (size_t r = 0; r < g; ++r) {
        F acc = Isa::zero();
        const uint16_t* qr = b.q + r * d32;
        for (size_t c = 0; c < d32 / 32; ++c)
          acc = Isa::dot_bf16(acc, Isa::load_bf16(qr + 32 * c, 32), kc[c]);
        const float x = Isa::reduce_add(acc) * sm_scale;
        b.s[r * kpad + t] = vis.sees(kb + t) ? (cap.active() ? cap(x) : x) : -INFINITY;
      }
    }
    // Row softmax; P overwrites S, alpha rescales O.
    for (size_t r = 0; r < g; ++r) {
      float* sr = b.s + r * kpad;
      std::fill(sr + n, sr + n16, -INFINITY);
      F vmax = Isa::set1(-INFINITY);
      for (size_t c = 0; c < n16; c += 16) vmax = Isa::max(vmax, Isa::load(sr + c));
      const float m_new = std::fmax(b.m[r], Isa::reduce_max(vmax));
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      F sum = Isa::zero();
      for (size_t c = 0; c < n16; c += 16) {
        const F e = Isa::exp_non_positive(Isa::sub(Isa::load(sr + c), Isa::set1(m_use)));
        sum = Isa::add(sum, e);
        Isa::store(e, sr + c);
      }
      const float alpha = exp1<Isa>(b.m[r] - m_use);
      b.l[r] = std::fma(b.l[r], alpha, Isa::reduce_add(sum));
      b.m[r] = m_new;
      if (alpha != 1.0f) {
        float* orow = b.o + r * d16;
        for (size_t c = 0; c < d16; c += 16)
          Isa::store(Isa::mul(Isa::load(orow + c), Isa::set1(alpha)), orow + c);
      }
    }
    // O[r] += P[r] V by key pairs: pairs of probabilities (bf16) against two V rows
    // interleaved, 16 dims a step, up to 8 rows per pass over V.
    const size_t pairs = (static_cast<size_t>(n) + 1) / 2;
    uint32_t* pp = reinterpret_cast<uint32_t*>(b.p);  // [g][pairs]
    for (size_t r = 0; r < g; ++r) {
      const float* sr = b.s + r * kpad;
      for (size_t tp = 0; tp < pairs; ++tp)
        pp[r * pairs + tp] = kdr::f32_to_bf16(sr[2 * tp]) |
                             static_cast<uint32_t>(kdr::f32_to_bf16(sr[2 * tp + 1])) << 16;
    }
    for (size_t r0 = 0; r0 < g; r0 += 8) {
      const size_t nr = std::min<size_t>(8, g - r0);
      for (size_t c = 0; c < d16; c += 16) {
        const size_t cnt = std::min<size_t>(16, d - c);
        F acc[8];
        for (size_t i = 0; i < nr; ++i) acc[i] = Isa::load(b.o + (r0 + i) * d16 + c);
        for (size_t tp = 0; tp < pairs; ++tp) {
          const B vv = Isa::interleave_bf16(b.vrows[2 * tp] + c, b.vrows[2 * tp + 1] + c, cnt);
          for (size_t i = 0; i < nr; ++i) {
            const uint32_t pr = pp[(r0 + i) * pairs + tp];
            acc[i] = Isa::dot_bf16(
                acc[i],
                Isa::broadcast_pair(static_cast<uint16_t>(pr), static_cast<uint16_t>(pr >> 16)),
                vv);
          }
        }
        for (size_t i = 0; i < nr; ++i) Isa::store(acc[i], b.o + (r0 + i) * d16 + c);
      }
    }
    seq.write_new_rows(w, kb, n);
  }

  if (w.partial >= 0) {  // split decode: (m, l, O) for the merge
    float* part = a.partials + static_cast<size_t>(w.partial) * g * a.partial_stride;
    for (size_t r = 0; r < g; ++r) {
      float* slot = part + r * a.partial_stride;
      slot[0] = b.m[r];
      slot[1] = b.l[r];
      std::memcpy(slot + 2, b.o + r * d16, d16 * sizeof(float));
    }
    return;
  }
  const Sinks sinks{p.params.sinks};
  for (size_t r = 0; r < g; ++r) {
    int32_t head;
    int64_t off;
    query_row(p, w, r, head, off);
    const float f = sinks.output_factor(head, b.m[r], b.l[r]);
    for (int32_t x = 0; x < d; ++x) a.out[off + x] = b.o[r * d16 + x] * f;
  }
}

// A decode item: each of its KV heads in turn (the same arithmetic as an item of one head).
template <class Isa>
void decode_item(const ItemArgs& a, const WorkItem& w, const Buffers& b) {
  for (int32_t j = 0; j < w.num_heads; ++j) decode_head<Isa>(a, head_item(w, j), b);
}

template <class Isa>
const Kernels& kernels() {
  static const Kernels k{&decode_item<Isa>, &tile_item<Isa>};
  return k;
}

}  // namespace rpa::bf16::RPA_BF16_NS
