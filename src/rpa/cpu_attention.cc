// rpa::run on the CPU: executes a Plan's work items on the thread pool, then merges the
// split-KV partials. Compiled once per Highway target; run() dispatches to the best one.
//
// A work item (sequence, KV head, q tile, KV split) runs flash-attention style over KV
// blocks: convert the block's K and V to f32 tiles (cached positions from the pages, new
// positions from the k/v inputs quantized exactly as the cache holds them), S = Q K^T for
// all query rows of the tile (q tokens x the Hq/Hkv heads sharing the KV head), soft cap,
// mask, online softmax, O += P V. The new rows the item owns (its own q tokens) are written
// into their pages from the same pass; nothing reads them back from the pages.
// Decode items on bf16/f16/f32/int8 caches skip the f32 tiles and read rows in place.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <vector>

#include "base/dtype.h"
#include "base/thread_pool.h"
#include "rpa/bf16_attention.h"
#include "rpa/internal.h"
#include "rpa/variants.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "rpa/cpu_attention.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "rpa/attention-inl.h"

HWY_BEFORE_NAMESPACE();
namespace rpa {
namespace HWY_NAMESPACE {

namespace {

size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

// Allocates on 64-byte boundaries: the kernels load Q, O and S rows as whole vectors, and
// malloc's 16-byte alignment made every other 32-byte load span two cache lines.
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) {
    return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{64}));
  }
  void deallocate(T* p, size_t) { ::operator delete (p, std::align_val_t{64}); }
  template <typename U>
  bool operator==(const CacheLineAllocator<U>&) const {
    return true;
  }
};
using AlignedFloats = std::vector<float, CacheLineAllocator<float>>;

// Per-thread tiles, grown on demand and kept across calls (no allocation per layer).
struct Scratch {
  AlignedFloats q, o, m, l, s, k, v, kt;  // kt: K transposed [dp][sp]
  std::vector<const void*> krows, vrows;  // decode: row pointers into the pages
  std::vector<PrefetchRun> pf;            // decode: K/V runs of a later block
  std::vector<float> kscale, vscale;      // decode on int8: the rows' scales
  std::vector<uint16_t> new_rows;         // decode: new tokens' rows in the cache dtype (fp8: all
                                          // rows, as f16; point_rows_fp8)
  std::vector<uint8_t> fp8_row;           // decode on fp8: a new token's row encoded
  // Decode on int8: Q rounded to int16, with a scale per row (QuantizeRowsI16).
  std::vector<int16_t, CacheLineAllocator<int16_t>> q16;
  AlignedFloats qscale;
  void ensure(size_t rows4, size_t dp, size_t sp) {
    auto grow = [](AlignedFloats& x, size_t n) {
      if (x.size() < n) x.resize(n);
    };
    grow(q, rows4 * dp);
    grow(qscale, rows4);
    if (q16.size() < rows4 * dp) q16.resize(rows4 * dp);
    grow(o, rows4 * dp);
    grow(m, rows4);
    grow(l, rows4);
    grow(s, rows4 * sp);
    grow(k, sp * dp);
    grow(kt, sp * dp);
    grow(v, sp * dp);
    if (krows.size() < sp) krows.resize(sp);
    if (vrows.size() < sp) vrows.resize(sp);
    if (pf.size() < 4 * sp) pf.resize(4 * sp);  // K, V and int8 scale runs of sp rows
    if (kscale.size() < sp) kscale.resize(sp);
    if (vscale.size() < sp) vscale.resize(sp);
    if (new_rows.size() < 2 * sp * dp) new_rows.resize(2 * sp * dp);
    if (fp8_row.size() < dp) fp8_row.resize(dp);
  }
};

struct RunArgs : ItemArgs {  // partial_stride = 2 + dp
  size_t dp;                 // head_dim rounded up to the vector length
  size_t sp;                 // S row stride: the largest KV block rounded up to the vector length
  // The new tokens' K and V rows as the cache will hold them, in f32, head-major
  // ([Hkv][T][D]: a head's rows contiguous), when some sequence has more new tokens than one
  // prefill tile: every later tile of it reads them again. Null: load_tile requantizes from
  // k and v.
  const float* k_stored = nullptr;
  const float* v_stored = nullptr;
};

// Offset of the stored row of new token `tok` (index into the batch's T tokens) of KV head
// `head` in k_stored / v_stored.
size_t stored_row(const Plan::Impl& p, int64_t head, int64_t tok) {
  return (static_cast<size_t>(head) * p.num_tokens + tok) * p.shape.head_dim;
}

// Converts `n` rows starting at absolute position `pos0` of (seq, head) to f32 tile rows.
// Cached positions come from the pages; new ones from the input, requantized.
void load_tile(const RunArgs& a, const WorkItem& w, int32_t pos0, int32_t n, bool is_v,
               float* tile) {
  const Plan::Impl& p = *a.plan;
  const CacheShape& sh = p.shape;
  const int32_t d = sh.head_dim;
  const int32_t ps = sh.page_size;
  const int32_t q_len = p.cu_q_lens[w.seq + 1] - p.cu_q_lens[w.seq];
  const int32_t first_new = p.kv_lens[w.seq] - q_len;
  const int32_t* pages = p.page_indices.data() + static_cast<size_t>(w.seq) * p.pages_per_seq;
  const float* input = is_v ? a.v : a.k;
  const KvCache& c = *a.cache;
  const void* pool = is_v ? c.v : c.k;
  for (int32_t t = 0; t < n; ++t) {
    const int32_t pos = pos0 + t;
    float* dst = tile + static_cast<size_t>(t) * a.dp;
    if (pos >= first_new) {
      const int64_t tok = p.cu_q_lens[w.seq] + (pos - first_new);
      const size_t off = (tok * sh.num_kv_heads + w.kv_head) * d;
      const float* stored = is_v ? a.v_stored : a.k_stored;
      if (stored) {
        std::memcpy(dst, stored + stored_row(p, w.kv_head, tok), d * sizeof(float));
      } else if (!RequantizeRowSimd(sh.dtype, input + off, d, dst)) {
        requantize_row(c, is_v, input + off, dst);
      }
    } else {
      const size_t row =
          (static_cast<size_t>(pages[pos / ps]) * sh.num_kv_heads + w.kv_head) * ps + pos % ps;
      const size_t off = row * d;
      switch (sh.dtype) {
        case KvDType::kF32:
          RowToF32(static_cast<const float*>(pool) + off, d, dst);
          break;
        case KvDType::kBF16:
          RowToF32(static_cast<const hwy::bfloat16_t*>(pool) + off, d, dst);
          break;
        case KvDType::kF16:
          RowToF32(static_cast<const hwy::float16_t*>(pool) + off, d, dst);
          break;
        case KvDType::kInt8:
          RowToF32(static_cast<const int8_t*>(pool) + off, d,
                   (is_v ? c.v_row_scales : c.k_row_scales)[row], dst);
          break;
        case KvDType::kFp8E4M3:
          Fp8RowToF32(static_cast<const uint8_t*>(pool) + off, d, is_v ? c.v_scale : c.k_scale,
                      dst);
          break;
      }
    }
    for (size_t x = d; x < a.dp; ++x) dst[x] = 0.0f;
  }
}

// Calls fn(t, run, row) for each run of cached rows of the block [pos0, pos0 + n) of item w
// that lie in one page: t is the run's offset in the block, run its length, row the pool
// index (in rows of head_dim elements) of its first row. Returns the number of cached rows.
template <class Fn>
inline int32_t for_each_cached_run(const Plan::Impl& p, const WorkItem& w, int32_t pos0, int32_t n,
                                   Fn&& fn) {
  const CacheShape& sh = p.shape;
  const int32_t ps = sh.page_size;
  const int32_t q_len = p.cu_q_lens[w.seq + 1] - p.cu_q_lens[w.seq];
  const int32_t first_new = p.kv_lens[w.seq] - q_len;
  const int32_t* pages = p.page_indices.data() + static_cast<size_t>(w.seq) * p.pages_per_seq;
  const int32_t cached = std::clamp(first_new - pos0, 0, n);
  for (int32_t t = 0; t < cached;) {
    const int32_t pos = pos0 + t;
    const int32_t run = std::min(ps - pos % ps, cached - t);
    fn(t, run,
       (static_cast<size_t>(pages[pos / ps]) * sh.num_kv_heads + w.kv_head) * ps + pos % ps);
    t += run;
  }
  return cached;
}

// Rows [n, round_up(n, 4)) of a decode block: pointed at zeros (a row of head_dim <= 256
// elements of any cache dtype), with scale 0.
void pad_rows(int32_t n, Scratch& sc) {
  alignas(64) static const uint8_t kZeros[256 * 4] = {};
  for (int32_t z = n; z % 4 != 0; ++z) {
    sc.krows[z] = sc.vrows[z] = kZeros;
    sc.kscale[z] = sc.vscale[z] = 0.0f;
  }
}

// point_rows on an fp8 cache: K row t converted into sc.new_rows at t * d, V row t at
// (sp + t) * d, both as f16 (Fp8RowToF16Scaled); the new token's rows first encoded to fp8
// by store_row, into a one-row cache over sc.fp8_row.
void point_rows_fp8(const RunArgs& a, const WorkItem& w, int32_t pos0, int32_t n, Scratch& sc) {
  const Plan::Impl& p = *a.plan;
  const CacheShape& sh = p.shape;
  const size_t d = static_cast<size_t>(sh.head_dim);
  const int32_t q_len = p.cu_q_lens[w.seq + 1] - p.cu_q_lens[w.seq];
  const int32_t first_new = p.kv_lens[w.seq] - q_len;
  const uint8_t* kpool = static_cast<const uint8_t*>(a.cache->k);
  const uint8_t* vpool = static_cast<const uint8_t*>(a.cache->v);
  uint16_t* kdst = sc.new_rows.data();
  uint16_t* vdst = kdst + a.sp * d;
  int32_t t = for_each_cached_run(p, w, pos0, n, [&](int32_t t0, int32_t run, size_t row) {
    for (int32_t i = 0; i < run; ++i) {
      const size_t r = static_cast<size_t>(t0 + i);
      Fp8RowToF16Scaled(kpool + (row + i) * d, d, kdst + r * d);
      Fp8RowToF16Scaled(vpool + (row + i) * d, d, vdst + r * d);
      sc.krows[r] = kdst + r * d;
      sc.vrows[r] = vdst + r * d;
    }
  });
  KvCache one;  // one row, one head: where store_row encodes a new token's row
  one.shape = {1, 1, 1, sh.head_dim, KvDType::kFp8E4M3};
  one.k = one.v = sc.fp8_row.data();
  one.k_scale = a.cache->k_scale;
  one.v_scale = a.cache->v_scale;
  for (; t < n; ++t) {
    const int64_t tok = p.cu_q_lens[w.seq] + (pos0 + t - first_new);
    const size_t off = (tok * sh.num_kv_heads + w.kv_head) * d;
    for (bool is_v : {false, true}) {
      store_row(one, is_v, 0, 0, 0, (is_v ? a.v : a.k) + off);
      uint16_t* dst = (is_v ? vdst : kdst) + static_cast<size_t>(t) * d;
      Fp8RowToF16Scaled(sc.fp8_row.data(), d, dst);
      (is_v ? sc.vrows : sc.krows)[t] = dst;
    }
  }
  std::fill(sc.kscale.begin(), sc.kscale.begin() + n, a.cache->k_scale * 256.0f);
  std::fill(sc.vscale.begin(), sc.vscale.begin() + n, a.cache->v_scale * 256.0f);
}

// Decode on a bf16/f16/f32/int8 cache: points krows/vrows at the block's rows in their pages
// (the new token's row is stored in the cache dtype into scratch, exactly what the page will
// hold, and pointed at there; int8 row scales go to kscale/vscale). On fp8 every row is first
// converted to f16 in scratch (its value times 2^-8, exactly: Fp8RowToF16Scaled) and the f16
// kernels read it there, with kscale/vscale = the tensor scales times 2^8. Rows
// [n, round_up(n, 4)) point at zeros, with scale 0.
void point_rows(const RunArgs& a, const WorkItem& w, int32_t pos0, int32_t n, Scratch& sc) {
  const Plan::Impl& p = *a.plan;
  const CacheShape& sh = p.shape;
  const int32_t d = sh.head_dim;
  const int32_t q_len = p.cu_q_lens[w.seq + 1] - p.cu_q_lens[w.seq];
  const int32_t first_new = p.kv_lens[w.seq] - q_len;
  const size_t row_bytes = static_cast<size_t>(d) * element_size(sh.dtype);
  const char* kpool = static_cast<const char*>(a.cache->k);
  const char* vpool = static_cast<const char*>(a.cache->v);
  const bool int8 = sh.dtype == KvDType::kInt8;
  if (sh.dtype == KvDType::kFp8E4M3) {
    point_rows_fp8(a, w, pos0, n, sc);
    pad_rows(n, sc);
    return;
  }
  int32_t t = for_each_cached_run(p, w, pos0, n, [&](int32_t t0, int32_t run, size_t row) {
    const char* kr = kpool + row * row_bytes;
    const char* vr = vpool + row * row_bytes;
    const void** kdst = sc.krows.data() + t0;  // raw pointers: no reload per store
    const void** vdst = sc.vrows.data() + t0;
    for (int32_t i = 0; i < run; ++i) {
      kdst[i] = kr + i * row_bytes;
      vdst[i] = vr + i * row_bytes;
    }
    if (int8) {
      std::memcpy(&sc.kscale[t0], a.cache->k_row_scales + row, run * sizeof(float));
      std::memcpy(&sc.vscale[t0], a.cache->v_row_scales + row, run * sizeof(float));
    }
  });
  size_t next_new = 0;  // in uint16 units of new_rows
  for (; t < n; ++t) {
    const int32_t pos = pos0 + t;
    const int64_t tok = p.cu_q_lens[w.seq] + (pos - first_new);
    const float* kin = a.k + (tok * sh.num_kv_heads + w.kv_head) * d;
    const float* vin = a.v + (tok * sh.num_kv_heads + w.kv_head) * d;
    if (sh.dtype == KvDType::kF32) {
      sc.krows[t] = kin;
      sc.vrows[t] = vin;
      continue;
    }
    uint16_t* kq = sc.new_rows.data() + next_new;
    uint16_t* vq = kq + d;
    next_new += 2 * static_cast<size_t>(d);
    if (int8) {  // exactly what store_row writes
      int8_t* k8 = reinterpret_cast<int8_t*>(kq);
      int8_t* v8 = reinterpret_cast<int8_t*>(vq);
      sc.kscale[t] = kdr::quantize_row_int8(kin, d, k8);
      sc.vscale[t] = kdr::quantize_row_int8(vin, d, v8);
      sc.krows[t] = k8;
      sc.vrows[t] = v8;
      continue;
    }
    for (int32_t x = 0; x < d; ++x) {
      kq[x] = sh.dtype == KvDType::kBF16 ? kdr::f32_to_bf16(kin[x]) : kdr::f32_to_f16(kin[x]);
      vq[x] = sh.dtype == KvDType::kBF16 ? kdr::f32_to_bf16(vin[x]) : kdr::f32_to_f16(vin[x]);
    }
    sc.krows[t] = kq;
    sc.vrows[t] = vq;
  }
  pad_rows(n, sc);
}

// Decode: the cached K and V rows (and int8 row scales) of the block at [pos0, pos0 + n) as
// line-aligned ranges in sc.pf, row by row (K row t, then V row t: the two streams advance
// together, which measured 3-5% faster than a page's K run followed by its V run), for the QK
// and the PV of an earlier block to prefetch while they compute. Returns a cursor over them
// and, in `lines`, how many cache lines they span.
LineCursor list_prefetch_runs(const RunArgs& a, const WorkItem& w, int32_t pos0, int32_t n,
                              Scratch& sc, size_t& lines) {
  const CacheShape& sh = a.plan->shape;
  const size_t row_bytes = static_cast<size_t>(sh.head_dim) * element_size(sh.dtype);
  const char* kpool = static_cast<const char*>(a.cache->k);
  const char* vpool = static_cast<const char*>(a.cache->v);
  const bool int8 = sh.dtype == KvDType::kInt8;
  PrefetchRun* dst = sc.pf.data();
  size_t count = 0;
  lines = 0;
  const auto add = [&](const void* begin, size_t bytes) {
    const uintptr_t b = reinterpret_cast<uintptr_t>(begin);
    const uintptr_t first = b & ~uintptr_t{63};
    const size_t span = b + bytes - first;
    dst[count++] = {reinterpret_cast<const char*>(first), span};
    lines += (span + 63) / 64;
  };
  for_each_cached_run(*a.plan, w, pos0, n, [&](int32_t, int32_t run, size_t row) {
    for (int32_t i = 0; i < run; ++i) {
      add(kpool + (row + i) * row_bytes, row_bytes);
      add(vpool + (row + i) * row_bytes, row_bytes);
    }
    if (int8) {
      add(a.cache->k_row_scales + row, run * sizeof(float));
      add(a.cache->v_row_scales + row, run * sizeof(float));
    }
  });
  return {dst, dst + count, 0};
}

// Decode on int8: asks for the K and V row scales of the block at [pos0, pos0 + n).
void prefetch_row_scales(const RunArgs& a, const WorkItem& w, int32_t pos0, int32_t n) {
  for_each_cached_run(*a.plan, w, pos0, n, [&](int32_t, int32_t run, size_t row) {
    PrefetchLines(a.cache->k_row_scales + row, run * sizeof(float));
    PrefetchLines(a.cache->v_row_scales + row, run * sizeof(float));
  });
}

// Whether item w runs the decode kernels that read K/V rows in place (no f32 tiles): every
// decode, on every cache dtype (fp8 through f16 copies of its rows, point_rows_fp8).
bool reads_rows_in_place(const WorkItem& w) { return w.path == PathKind::kDecode; }

// Asks for the rows of the KV block at [pos0, pos0 + n) to be brought into L2 while the
// current block is computed: pages are scattered and input rows of one head are strided,
// so the hardware prefetcher cannot guess them.
void prefetch_block(const RunArgs& a, const WorkItem& w, int32_t pos0, int32_t n) {
  const Plan::Impl& p = *a.plan;
  const CacheShape& sh = p.shape;
  const int32_t d = sh.head_dim;
  const int32_t q_len = p.cu_q_lens[w.seq + 1] - p.cu_q_lens[w.seq];
  const int32_t first_new = p.kv_lens[w.seq] - q_len;
  const size_t esize = element_size(sh.dtype);
  const size_t row_bytes = static_cast<size_t>(d) * esize;
  int32_t t = for_each_cached_run(p, w, pos0, n, [&](int32_t, int32_t run, size_t row) {
    PrefetchLines(static_cast<const char*>(a.cache->k) + row * row_bytes, run * row_bytes);
    PrefetchLines(static_cast<const char*>(a.cache->v) + row * row_bytes, run * row_bytes);
  });
  // New rows: the tile path reads them from their stored copies (contiguous per head) where
  // there are some; the decode kernels read the inputs.
  if (t < n && a.k_stored && !reads_rows_in_place(w)) {
    const size_t off = stored_row(p, w.kv_head, p.cu_q_lens[w.seq] + (pos0 + t - first_new));
    PrefetchLines(a.k_stored + off, static_cast<size_t>(n - t) * d * sizeof(float));
    PrefetchLines(a.v_stored + off, static_cast<size_t>(n - t) * d * sizeof(float));
    return;
  }
  for (; t < n; ++t) {  // new rows from the inputs
    const int64_t tok = p.cu_q_lens[w.seq] + (pos0 + t - first_new);
    const int64_t off = (tok * sh.num_kv_heads + w.kv_head) * d;
    PrefetchLines(a.k + off, d * sizeof(float));
    PrefetchLines(a.v + off, d * sizeof(float));
  }
}

// Writes the item's own new tokens that fall in [pos0, pos0 + n) into their pages.
void write_new_rows(const RunArgs& a, const WorkItem& w, int32_t pos0, int32_t n) {
  const Plan::Impl& p = *a.plan;
  const CacheShape& sh = p.shape;
  const int32_t q_len = p.cu_q_lens[w.seq + 1] - p.cu_q_lens[w.seq];
  const int32_t first_new = p.kv_lens[w.seq] - q_len;
  const int32_t lo = std::max(pos0, first_new + w.q_begin);
  const int32_t hi = std::min(pos0 + n, first_new + w.q_end);
  const int32_t* pages = p.page_indices.data() + static_cast<size_t>(w.seq) * p.pages_per_seq;
  for (int32_t pos = lo; pos < hi; ++pos) {
    const int64_t tok = p.cu_q_lens[w.seq] + (pos - first_new);
    const int64_t off = (tok * sh.num_kv_heads + w.kv_head) * sh.head_dim;
    const int32_t page = pages[pos / sh.page_size];
    const int32_t slot = pos % sh.page_size;
    store_row(*a.cache, false, page, w.kv_head, slot, a.k + off);
    store_row(*a.cache, true, page, w.kv_head, slot, a.v + off);
  }
}

// out = O / l for one query row, with the head's sink logit joining the denominator.
void finalize_row(const Plan::Impl& p, int32_t head, float m, float l, const float* o, float* dst) {
  const float inv = Sinks{p.params.sinks}.output_factor(head, m, l);
  for (int32_t x = 0; x < p.shape.head_dim; ++x) dst[x] = o[x] * inv;
}

// The query rows of one KV head of a work item and their online-softmax state, in the
// per-thread scratch: Q [rows4][dp] (pre-scaled; on bf16 decode in the widened-chunk order),
// O [rows4][dp], m and l [rows4].
struct HeadRows {
  float* q;
  float* o;
  float* m;
  float* l;
  size_t rows;             // q tokens x group
  size_t rows4;            // rounded up to 4 (scratch rows: the tile blocks may run past `rows`)
  int16_t* q16 = nullptr;  // decode on int8: Q rounded to int16 (QuantizeRowsI16)
  float* qscale = nullptr;
};

// The work item `w` narrowed to its KV head `w.kv_head + j` (its own partial slot).
WorkItem head_item(const WorkItem& w, int32_t j) {
  WorkItem h = w;
  h.kv_head = w.kv_head + j;
  h.num_heads = 1;
  if (w.partial >= 0) h.partial = w.partial + j * w.partial_stride;
  return h;
}

// Query row r of item w (r = j * g + h: the g heads of one token are contiguous): its query
// head and the offset of its row in q and in out (both [tokens][Hq][D]).
struct QueryRow {
  int32_t head;
  int64_t offset;
};
QueryRow query_row(const Plan::Impl& p, const WorkItem& w, size_t r) {
  const int32_t g = p.group;
  const int64_t token = p.cu_q_lens[w.seq] + w.q_begin + static_cast<int64_t>(r) / g;
  const int32_t head = w.kv_head * g + static_cast<int32_t>(r % g);
  return {head, (token * p.params.num_q_heads + head) * p.shape.head_dim};
}

// Fills Q with the item's query rows times sm_scale, and resets O, m and l.
void init_rows(const RunArgs& a, const WorkItem& w, bool permuted, const HeadRows& hr) {
  const Plan::Impl& p = *a.plan;
  const int32_t d = p.shape.head_dim;
  const size_t dp = a.dp;
  const float sm_scale = p.params.sm_scale;
  for (size_t r = 0; r < hr.rows4; ++r) {
    float* dst = hr.q + r * dp;
    if (r < hr.rows) {
      const float* src = a.q + query_row(p, w, r).offset;
      if (permuted) {
        PermuteRow(src, d, sm_scale, dst);
      } else {
        for (int32_t x = 0; x < d; ++x) dst[x] = src[x] * sm_scale;
      }
      for (size_t x = d; x < dp; ++x) dst[x] = 0.0f;
    } else {
      std::fill(dst, dst + dp, 0.0f);
    }
    hr.m[r] = -INFINITY;
    hr.l[r] = 0.0f;
    std::fill(hr.o + r * dp, hr.o + (r + 1) * dp, 0.0f);
  }
}

// A later stretch of KV rows whose addresses the decode QK prefetches while it computes.
struct NextRows {
  const WorkItem* w = nullptr;  // null: nothing to prefetch
  int32_t pos0 = 0;
  int32_t n = 0;
};

// One KV block [kb, kb + n) of one KV head: S = Q K^T, soft cap, mask, online softmax,
// O += P V; writes the item's new rows of the block into their pages. Decode items that read
// rows in place prefetch `next` while they compute the scores.
void attend_block(const RunArgs& a, const WorkItem& w, const HeadRows& hr, int32_t kb, int32_t n,
                  bool direct, const NextRows& next, Scratch& sc) {
  const Plan::Impl& p = *a.plan;
  const DF df;
  const size_t nl = hn::Lanes(df);
  const int32_t d = p.shape.head_dim;
  const int32_t g = p.group;
  const size_t dp = a.dp, sp = a.sp;
  const size_t rows = hr.rows, rows4 = hr.rows4;
  const int32_t nq = w.q_end - w.q_begin;
  float* st = sc.s.data();
  const KvDType dtype = p.shape.dtype;
  const size_t nv = round_up(n, std::max<size_t>(nl, 4));

  const int32_t q_len = p.cu_q_lens[w.seq + 1] - p.cu_q_lens[w.seq];
  const int32_t kv_len = p.kv_lens[w.seq];
  const int32_t first_new = kv_len - q_len;
  const KeyMask mask = KeyMask::of(p.params, kv_len);
  // Visible range of the tile's first and last token: blocks inside both need no mask.
  const int32_t pos_first = first_new + w.q_begin;
  const int32_t pos_last = first_new + w.q_end - 1;
  const int32_t lo_last = mask.range(pos_last).lo;
  const int32_t hi_first = mask.range(pos_first).hi;

  // Lines of the next rows to prefetch: the first half while QK computes, the rest during PV
  // (prefetching them all during QK leaves the memory idle through PV: decode-32seq bf16 took
  // 5-10% longer in same-process alternations, docs/rpa-decode-notes.md "Session 9").
  LineCursor pf;
  size_t npf = 0;
  // When the next block-head is this block of the next KV head, its rows sit one head
  // further into the same pages: QK and PV prefetch at that distance from the rows they read
  // (no list to build: 7-13% faster than the list for decode-32seq bf16; K lines during QK,
  // V lines during PV; int8 row scales, a few lines, right away). The new token's row points
  // into scratch: its prefetch is wasted and harmless (prefetches never fault).
  ptrdiff_t pf_delta = 0;
  const float* v_rows = sc.v.data();  // tile path: V rows, dp floats apart
  if (direct) {
    point_rows(a, w, kb, n, sc);
    const size_t row_bytes = static_cast<size_t>(d) * element_size(dtype);
    // (fp8 rows are read from their f16 copies in scratch, so its next rows come as a list.)
    if (next.w && next.w->seq == w.seq && next.w->kv_head == w.kv_head + 1 && next.pos0 == kb &&
        next.n == n && dtype != KvDType::kFp8E4M3) {
      pf_delta = static_cast<ptrdiff_t>(p.shape.page_size * row_bytes);
      if (dtype == KvDType::kInt8) prefetch_row_scales(a, *next.w, kb, n);
    } else if (next.w) {
      pf = list_prefetch_runs(a, *next.w, next.pos0, next.n, sc, npf);
    }
    const size_t n4 = round_up(n, 4);
    // Row pairs for QK (an odd last row paired with a zero row); PV takes the rows as they are.
    const size_t pairs = (rows + 1) / 2;
    const void* const* kr = sc.krows.data();
    switch (dtype) {
      case KvDType::kBF16:
        ScoresQKRows<hwy::bfloat16_t>(QRows{hr.q}, kr, nullptr, st, pairs, n4, d, dp, sp, pf,
                                      npf / 2, pf_delta);
        break;
      case KvDType::kF16:
        ScoresQKRows<hwy::float16_t>(QRows{hr.q}, kr, nullptr, st, pairs, n4, d, dp, sp, pf,
                                     npf / 2, pf_delta);
        break;
      case KvDType::kInt8:
        ScoresQKRows<int8_t>(QRows{hr.q, hr.q16, hr.qscale}, kr, sc.kscale.data(), st, pairs, n4, d,
                             dp, sp, pf, npf / 2, pf_delta);
        break;
      case KvDType::kFp8E4M3:  // f16 copies (point_rows_fp8), the tensor scale per key
        ScoresQKRows<hwy::float16_t>(QRows{hr.q}, kr, sc.kscale.data(), st, pairs, n4, d, dp, sp,
                                     pf, npf / 2, pf_delta);
        break;
      default:
        ScoresQKRows<float>(QRows{hr.q}, kr, nullptr, st, pairs, n4, d, dp, sp, pf, npf / 2,
                            pf_delta);
        break;
    }
  } else {
    // One block ahead: prefetching 2 or 4 blocks ahead measured no better
    // (docs/rpa-decode-notes.md).
    if (next.w) prefetch_block(a, *next.w, next.pos0, next.n);
    float* ktt = sc.kt.data();
    // K transposed for the outer-product QK; keys [n, nt) are zero.
    const size_t nt = round_up(n, 2 * nl);
    const float* kt;   // K rows to transpose,
    size_t kt_stride;  // this many floats apart
    if (kb >= first_new && a.k_stored && static_cast<size_t>(d) == dp) {
      // New rows only: straight from their stored f32 copies (contiguous per head), no tile.
      const size_t off = stored_row(p, w.kv_head, p.cu_q_lens[w.seq] + (kb - first_new));
      kt = a.k_stored + off;
      kt_stride = d;
      v_rows = a.v_stored + off;
    } else {
      load_tile(a, w, kb, n, false, sc.k.data());
      load_tile(a, w, kb, n, true, sc.v.data());
      kt = sc.k.data();
      kt_stride = dp;
    }
    TransposeRows(kt, kt_stride, n, d, ktt, sp, nt);
    ScoresQKT(hr.q, ktt, st, round_up(rows, 2), nt, d, dp, sp, sp);
  }
  write_new_rows(a, w, kb, n);

  if (p.params.soft_cap > 0.0f) {
    for (size_t r = 0; r < rows; ++r) SoftCap(st + r * sp, nv, p.params.soft_cap);
  }
  const bool unmasked = kb >= lo_last && kb + n - 1 <= hi_first;
  for (int32_t j = 0; j < nq; ++j) {
    const int32_t pos = pos_first + j;
    int32_t a0 = 0, b0 = n;  // visible columns [a0, b0) of this block
    if (!unmasked) {
      const VisibleRange vis = mask.range(pos);
      a0 = std::clamp(vis.lo - kb, 0, n);
      b0 = std::clamp(vis.hi - kb + 1, a0, n);
    }
    for (int32_t h = 0; h < g; ++h) {
      const size_t r = static_cast<size_t>(j) * g + h;
      float* srow = st + r * sp;
      for (int32_t c = 0; c < a0; ++c) srow[c] = -INFINITY;
      for (size_t c = b0; c < nv; ++c) srow[c] = -INFINITY;
      const float alpha = SoftmaxRow(srow, nv, hr.m[r], hr.l[r]);
      if (alpha != 1.0f) ScaleRow(hr.o + r * dp, dp, alpha);
    }
  }
  for (size_t r = rows; r < rows4; ++r) std::fill(st + r * sp, st + r * sp + n, 0.0f);
  // The V row scales (int8; fp8: the tensor scale) join the probabilities.
  if (direct && (dtype == KvDType::kInt8 || dtype == KvDType::kFp8E4M3)) {
    const float* vs = sc.vscale.data();
    for (size_t r = 0; r < rows; ++r)
      for (int32_t t = 0; t < n; ++t) st[r * sp + t] *= vs[t];
  }
  if (direct) {
    switch (dtype) {
      case KvDType::kBF16:
        AccumulatePVRows<hwy::bfloat16_t>(st, sc.vrows.data(), hr.o, rows, n, d, dp, sp, pf,
                                          npf - npf / 2, pf_delta);
        break;
      case KvDType::kF16:
        AccumulatePVRows<hwy::float16_t>(st, sc.vrows.data(), hr.o, rows, n, d, dp, sp, pf,
                                         npf - npf / 2, pf_delta);
        break;
      case KvDType::kInt8:
        AccumulatePVRows<int8_t>(st, sc.vrows.data(), hr.o, rows, n, d, dp, sp, pf, npf - npf / 2,
                                 pf_delta);
        break;
      case KvDType::kFp8E4M3:
        AccumulatePVRows<hwy::float16_t>(st, sc.vrows.data(), hr.o, rows, n, d, dp, sp, pf,
                                         npf - npf / 2, pf_delta);
        break;
      default:
        AccumulatePVRows<float>(st, sc.vrows.data(), hr.o, rows, n, d, dp, sp, pf, npf - npf / 2,
                                pf_delta);
        break;
    }
  } else {
    AccumulatePV(st, v_rows, hr.o, rows4, n, dp, sp);
  }
}

// Writes the rows' outputs (out = O / l) or, for a split decode, their partial (m, l, O).
void finish_rows(const RunArgs& a, const WorkItem& w, bool permuted, const HeadRows& hr,
                 Scratch& sc) {
  const Plan::Impl& p = *a.plan;
  const int32_t d = p.shape.head_dim;
  const size_t dp = a.dp;
  if (permuted) {  // back to the natural order of the head dim
    float* tmp = sc.k.data();
    for (size_t r = 0; r < hr.rows; ++r) {
      UnpermuteRow(hr.o + r * dp, d, tmp);
      std::memcpy(hr.o + r * dp, tmp, d * sizeof(float));
    }
  }
  if (w.partial < 0) {
    for (size_t r = 0; r < hr.rows; ++r) {
      const QueryRow row = query_row(p, w, r);
      finalize_row(p, row.head, hr.m[r], hr.l[r], hr.o + r * dp, a.out + row.offset);
    }
  } else {
    float* part = a.partials + static_cast<size_t>(w.partial) * p.group * a.partial_stride;
    for (size_t r = 0; r < hr.rows; ++r) {
      float* slot = part + r * a.partial_stride;
      slot[0] = hr.m[r];
      slot[1] = hr.l[r];
      std::memcpy(slot + 2, hr.o + r * dp, dp * sizeof(float));
    }
  }
}

// Runs work item w: for each KV block, each of its KV heads in turn (a decode item covering
// several heads reads a page's head runs one after the other, the next one prefetched while
// the current one is computed). Every head sees exactly the blocks and arithmetic it would
// see alone, so the outputs do not depend on how many heads an item covers.
void run_item(const RunArgs& a, const WorkItem& w, Scratch& sc) {
  const Plan::Impl& p = *a.plan;
  const int32_t heads = w.num_heads;
  const int32_t nq = w.q_end - w.q_begin;
  const size_t rows = static_cast<size_t>(nq) * p.group;
  const size_t rows4 = round_up(rows, 4);
  const size_t dp = a.dp;
  sc.ensure(rows4 * heads, dp, a.sp);
  const bool direct = reads_rows_in_place(w);
  // On bf16, decode keeps Q and O in the order of the widened chunks (attention-inl.h).
  const bool permuted = direct && p.shape.dtype == KvDType::kBF16;

  WorkItem hw[kMaxHeadsPerItem];
  HeadRows hr[kMaxHeadsPerItem];
  for (int32_t j = 0; j < heads; ++j) {
    hw[j] = head_item(w, j);
    const size_t r0 = static_cast<size_t>(j) * rows4;
    hr[j] = {sc.q.data() + r0 * dp,
             sc.o.data() + r0 * dp,
             sc.m.data() + r0,
             sc.l.data() + r0,
             rows,
             rows4};
    init_rows(a, hw[j], permuted, hr[j]);
    if (direct && p.shape.dtype == KvDType::kInt8) {
      hr[j].q16 = sc.q16.data() + r0 * dp;
      hr[j].qscale = sc.qscale.data() + r0;
      QuantizeRowsI16(hr[j].q, rows4, p.shape.head_dim, dp, hr[j].q16, hr[j].qscale);
    }
  }

  const int32_t block =
      w.path == PathKind::kDecode ? p.tuning.decode_kv_block : p.tuning.prefill_kv_block;
  if (direct && w.kv_begin < w.kv_end)  // the first block: later ones are fetched in QK
    prefetch_block(a, hw[0], w.kv_begin, std::min(block, w.kv_end - w.kv_begin));
  for (int32_t kb = w.kv_begin; kb < w.kv_end; kb += block) {
    const int32_t n = std::min(block, w.kv_end - kb);
    for (int32_t j = 0; j < heads; ++j) {
      NextRows next;  // the next head's rows of this block, else the first head's next block
      if (j + 1 < heads) {
        next = {&hw[j + 1], kb, n};
      } else if (kb + block < w.kv_end) {
        next = {&hw[0], kb + block, std::min(block, w.kv_end - kb - block)};
      }
      attend_block(a, hw[j], hr[j], kb, n, direct, next, sc);
    }
  }
  for (int32_t j = 0; j < heads; ++j) finish_rows(a, hw[j], permuted, hr[j], sc);
}

// Combines the partials of one split decode in split order (fixed, so batch invariant).
void merge_split(const RunArgs& a, const SplitGroup& sg, std::vector<float>& acc) {
  const Plan::Impl& p = *a.plan;
  const int32_t g = p.group;
  const size_t dp = a.dp;
  const size_t stride = a.partial_stride;
  acc.resize(dp);
  const int64_t tok = p.cu_q_lens[sg.seq];
  for (int32_t r = 0; r < g; ++r) {
    const float* first = a.partials + static_cast<size_t>(sg.first_partial) * g * stride;
    float m, l;
    merge_split_row(first, stride, g, sg.num_splits, r, acc.data(), dp, m, l);
    const int32_t head = sg.kv_head * g + r;
    finalize_row(p, head, m, l, acc.data(),
                 a.out + (tok * p.params.num_q_heads + head) * p.shape.head_dim);
  }
}

}  // namespace

void RequantizeRowDispatch(const KvCache& cache, bool is_v, const float* x, float* out) {
  if (!RequantizeRowSimd(cache.shape.dtype, x, cache.shape.head_dim, out))
    requantize_row(cache, is_v, x, out);
}

// Runs the plan's work items in `set` (and, when it has the decodes, the split merges).
void RunPlan(const Plan::Impl& plan, const float* q, const float* k, const float* v, KvCache& cache,
             float* out, kdr::ThreadPool* pool, ItemSet set) {
  const DF df;
  const size_t nl = hn::Lanes(df);
  RunArgs a;
  a.dp = round_up(plan.shape.head_dim, nl);
  static_cast<ItemArgs&>(a) = {&plan, q, k, v, &cache, out, nullptr, 2 + a.dp};
  // A multiple of 2 vectors: the prefill QK writes S in blocks of 2 vectors of keys.
  a.sp = round_up(plan.max_kv_block, 2 * std::max<size_t>(nl, 4));
  static thread_local std::vector<float> partials;
  const size_t need = static_cast<size_t>(plan.num_partials) * plan.group * a.partial_stride;
  if (partials.size() < need) partials.resize(need);
  a.partials = partials.data();

  // Prefill tiles after a sequence's first re-read its new rows for every KV block before
  // them (load_tile): quantize them once here instead (prefill-2048 spent ~14% of its time
  // there), unless no sequence spans two tiles.
  static thread_local std::vector<float> stored;
  if (plan.max_q_len > plan.tuning.prefill_q_block) {
    const int32_t d = plan.shape.head_dim;
    const int64_t rows = static_cast<int64_t>(plan.num_tokens) * plan.shape.num_kv_heads;
    if (stored.size() < static_cast<size_t>(2 * rows * d)) stored.resize(2 * rows * d);
    float* ks = stored.data();
    float* vs = ks + rows * d;
    constexpr int64_t kRowsPerTask = 64;
    const int64_t hkv = plan.shape.num_kv_heads;
    auto store_fn = [&](int64_t task, int) {
      const int64_t end = std::min(rows, (task + 1) * kRowsPerTask);
      for (int64_t r = task * kRowsPerTask; r < end; ++r) {  // r = token * Hkv + head
        const size_t dst = stored_row(plan, r % hkv, r / hkv);
        RequantizeRowDispatch(cache, false, k + r * d, ks + dst);
        RequantizeRowDispatch(cache, true, v + r * d, vs + dst);
      }
    };
    const int64_t tasks = (rows + kRowsPerTask - 1) / kRowsPerTask;
    if (pool) {
      pool->parallel_for(tasks, store_fn);
    } else {
      for (int64_t i = 0; i < tasks; ++i) store_fn(i, 0);
    }
    a.k_stored = ks;
    a.v_stored = vs;
  }

  const int64_t num_items = static_cast<int64_t>(plan.items.size());
  auto item_fn = [&](int64_t i, int) {
    if (!runs(set, plan.items[i].path)) return;
    static thread_local Scratch scratch;
    run_item(a, plan.items[i], scratch);
  };
  auto merge_fn = [&](int64_t i, int) {
    static thread_local std::vector<float> acc;
    merge_split(a, plan.splits[i], acc);
  };
  const int64_t num_merges =
      runs(set, PathKind::kDecode) ? static_cast<int64_t>(plan.splits.size()) : 0;
  if (pool) {
    pool->parallel_for(num_items, item_fn);
    pool->parallel_for(num_merges, merge_fn);
  } else {
    for (int64_t i = 0; i < num_items; ++i) item_fn(i, 0);
    for (int64_t i = 0; i < num_merges; ++i) merge_fn(i, 0);
  }
}

void ExpNonPositiveRow(const float* x, size_t n, float* out) {
  const DF df;
  const size_t nl = hn::Lanes(df);
  size_t i = 0;
  for (; i + nl <= n; i += nl) hn::StoreU(ExpNonPositive(df, hn::LoadU(df, x + i)), df, out + i);
  for (; i < n; ++i) {
    const hn::CappedTag<float, 1> d1;
    hn::StoreU(ExpNonPositive(d1, hn::LoadU(d1, x + i)), d1, out + i);
  }
}

void Fp8RowToF32Export(const uint8_t* codes, size_t n, float scale, float* out) {
  Fp8RowToF32(codes, n, scale, out);
}

}  // namespace HWY_NAMESPACE
}  // namespace rpa
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace rpa {

HWY_EXPORT(RunPlan);
HWY_EXPORT(RequantizeRowDispatch);
HWY_EXPORT(ExpNonPositiveRow);
HWY_EXPORT(Fp8RowToF32Export);

void fp8_row_to_f32(const uint8_t* codes, size_t n, float scale, float* out) {
  HWY_DYNAMIC_DISPATCH(Fp8RowToF32Export)(codes, n, scale, out);
}

void exp_non_positive(const float* x, size_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(ExpNonPositiveRow)(x, n, out);
}

void requantize_row_simd(const KvCache& cache, bool is_v, const float* x, float* out) {
  HWY_DYNAMIC_DISPATCH(RequantizeRowDispatch)(cache, is_v, x, out);
}

namespace {
bool same_shape(const CacheShape& a, const CacheShape& b) {
  return a.num_pages == b.num_pages && a.num_kv_heads == b.num_kv_heads &&
         a.page_size == b.page_size && a.head_dim == b.head_dim && a.dtype == b.dtype;
}
}  // namespace

void run(const Plan& plan, const float* q, const float* k, const float* v, KvCache& cache,
         float* out, kdr::ThreadPool* pool) {
  (void)plan.num_seqs();  // throws Error on an empty (moved-from or default) plan
  const Plan::Impl& p = plan.impl();
  if (!same_shape(cache.shape, p.shape))
    throw Error("rpa::run: cache shape (pages " + std::to_string(cache.shape.num_pages) +
                ", kv heads " + std::to_string(cache.shape.num_kv_heads) + ", page_size " +
                std::to_string(cache.shape.page_size) + ", head_dim " +
                std::to_string(cache.shape.head_dim) + ", " + to_string(cache.shape.dtype) +
                ") differs from the plan's (pages " + std::to_string(p.shape.num_pages) +
                ", kv heads " + std::to_string(p.shape.num_kv_heads) + ", page_size " +
                std::to_string(p.shape.page_size) + ", head_dim " +
                std::to_string(p.shape.head_dim) + ", " + to_string(p.shape.dtype) + ")");
  if (!cache.k || !cache.v) throw Error("rpa::run: cache k or v pool is null");
  if (cache.shape.dtype == KvDType::kInt8 && (!cache.k_row_scales || !cache.v_row_scales))
    throw Error("rpa::run: int8 cache needs k_row_scales and v_row_scales");
  if (cache.shape.dtype == KvDType::kFp8E4M3 &&
      !(std::isfinite(cache.k_scale) && cache.k_scale > 0.0f && std::isfinite(cache.v_scale) &&
        cache.v_scale > 0.0f))
    throw Error("rpa::run: fp8 cache needs finite positive k_scale and v_scale");
  if (p.num_tokens > 0 && (!q || !k || !v || !out))
    throw Error("rpa::run: q, k, v and out must be non-null");
  // The path picks the kernels: bf16 caches on avx512bf16 / amx (or their emulation, a test
  // hook) go to the bf16 units for the items bf16::route() gives them; the rest, and every
  // other cache and path, to the Highway f32 kernels above.
  const bf16::Route route =
      bf16::route(cache.shape.dtype, kdr::cpu::active_path(), bf16::emulation());
  if (route.f32 != ItemSet::kNone)
    HWY_DYNAMIC_DISPATCH(RunPlan)(p, q, k, v, cache, out, pool, route.f32);
  if (route.bf16 != ItemSet::kNone) bf16::run(p, q, k, v, cache, out, pool, route);
}

}  // namespace rpa
#endif  // HWY_ONCE
