// The driver of the bf16 kernels (bf16_attention.h): which kernels a cache and a path get,
// per-thread buffers, the work items on the thread pool, the merge of split decodes.
#include "rpa/bf16_attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <new>
#include <vector>

#include "base/thread_pool.h"
#include "rpa/variants.h"

namespace rpa::bf16 {

namespace {

std::atomic<Emulation> g_emulation{Emulation::kOff};

size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

// 64-byte aligned storage (tile rows and vectors load whole lines), grown on demand and kept
// per thread across calls.
template <typename T>
struct Aligned {
  T* data = nullptr;
  size_t size = 0;
  Aligned() = default;
  Aligned(const Aligned&) = delete;
  Aligned& operator=(const Aligned&) = delete;
  ~Aligned() { ::operator delete (data, std::align_val_t{64}); }
  T* ensure(size_t n) {
    if (n > size) {
      ::operator delete (data, std::align_val_t{64});
      data = static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{64}));
      size = n;
    }
    return data;
  }
};

struct Scratch {
  Aligned<uint16_t> q, p, k, vt, new_rows, zeros;
  Aligned<float> s, o, m, l, alpha;
  Aligned<VisibleRange> vis;
  Aligned<const uint16_t*> krows, vrows;

  // Buffers for any work item of `plan` (sizes in bf16_attention.h, Buffers).
  Buffers ensure(const Plan::Impl& plan) {
    const size_t g = static_cast<size_t>(plan.group);
    const size_t d = static_cast<size_t>(plan.shape.head_dim);
    const size_t d16 = round_up(d, 16), d32 = round_up(d, 32);
    const size_t qpad = round_up(static_cast<size_t>(plan.tuning.prefill_q_block) * g, 16);
    const size_t kpad = round_up(
        static_cast<size_t>(std::max(plan.tuning.prefill_kv_block, plan.tuning.decode_kv_block)),
        32);
    Buffers b;
    b.q = q.ensure(std::max(d32 * qpad, g * d32));
    b.s = s.ensure(std::max(kpad * qpad, g * kpad));
    b.p = p.ensure(std::max(kpad * qpad, g * kpad));
    b.k = k.ensure(kpad * d32);
    b.vt = vt.ensure(d16 * kpad);
    b.o = o.ensure(std::max(d16 * qpad, g * d16));
    b.m = m.ensure(std::max(qpad, g));
    b.l = l.ensure(std::max(qpad, g));
    b.alpha = alpha.ensure(std::max(qpad, g));
    b.vis = vis.ensure(std::max(qpad, g));
    b.krows = krows.ensure(kpad);
    b.vrows = vrows.ensure(kpad);
    b.new_rows = new_rows.ensure(2 * d32);
    const size_t had = zeros.size;
    b.zeros = zeros.ensure(d32);
    if (zeros.size != had) std::fill(b.zeros, b.zeros + zeros.size, uint16_t{0});
    return b;
  }
};

// Combines the partials of one split decode in split order (fixed, so batch invariant).
void merge_split(const ItemArgs& a, const SplitGroup& sg) {
  const Plan::Impl& p = *a.plan;
  const int32_t g = p.group;
  const int32_t d = p.shape.head_dim;
  const size_t stride = a.partial_stride;
  const Sinks sinks{p.params.sinks};
  const int64_t tok = p.cu_q_lens[sg.seq];
  float acc[256];
  for (int32_t r = 0; r < g; ++r) {
    const float* first = a.partials + static_cast<size_t>(sg.first_partial) * g * stride;
    float m, l;
    merge_split_row(first, stride, g, sg.num_splits, r, acc, d, m, l);
    const int32_t head = sg.kv_head * g + r;
    const float factor = sinks.output_factor(head, m, l);
    float* dst = a.out + (tok * p.params.num_q_heads + head) * d;
    for (int32_t x = 0; x < d; ++x) dst[x] = acc[x] * factor;
  }
}

}  // namespace

void set_emulation(Emulation e) { g_emulation.store(e); }
Emulation emulation() { return g_emulation.load(); }

Route route(KvDType dtype, kdr::cpu::Path path, Emulation e) {
  Route r;
  if (dtype != KvDType::kBF16) return r;
  bool dot = false, tiles = false;
  if (e != Emulation::kOff) {
    r.emulated = true;
    dot = true;
    tiles = e == Emulation::kAmx;
  } else if (x86_kernels() != nullptr) {
    dot = path == kdr::cpu::Path::kAvx512Bf16 || path == kdr::cpu::Path::kAmx;
    tiles = path == kdr::cpu::Path::kAmx;
  }
  if (tiles) {
    r.f32 = ItemSet::kNone;
    r.bf16 = ItemSet::kAll;
    r.tiles = true;
  } else if (dot) {
    r.f32 = ItemSet::kNotDecode;
    r.bf16 = ItemSet::kDecode;
  }
  return r;
}

void run(const Plan::Impl& plan, const float* q, const float* k, const float* v, KvCache& cache,
         float* out, kdr::ThreadPool* pool, const Route& route) {
  const Kernels& kernels = route.emulated ? emulated_kernels() : *x86_kernels();
  ItemArgs a{&plan, q, k, v, &cache, out, nullptr, 2 + round_up(plan.shape.head_dim, 16)};
  static thread_local std::vector<float> partials;
  const bool decodes = runs(route.bf16, PathKind::kDecode);
  if (decodes) {
    const size_t need = static_cast<size_t>(plan.num_partials) * plan.group * a.partial_stride;
    if (partials.size() < need) partials.resize(need);
  }
  a.partials = partials.data();

  const int64_t num_items = static_cast<int64_t>(plan.items.size());
  auto item_fn = [&](int64_t i, int) {
    const WorkItem& w = plan.items[i];
    if (!runs(route.bf16, w.path)) return;
    static thread_local Scratch scratch;
    const Buffers b = scratch.ensure(plan);
    if (w.path == PathKind::kDecode) {
      kernels.decode_item(a, w, b);
    } else {
      kernels.tile_item(a, w, b);
    }
  };
  auto merge_fn = [&](int64_t i, int) { merge_split(a, plan.splits[i]); };
  const int64_t num_merges = decodes ? static_cast<int64_t>(plan.splits.size()) : 0;
  if (pool) {
    pool->parallel_for(num_items, item_fn);
    pool->parallel_for(num_merges, merge_fn);
  } else {
    for (int64_t i = 0; i < num_items; ++i) item_fn(i, 0);
    for (int64_t i = 0; i < num_merges; ++i) merge_fn(i, 0);
  }
}

}  // namespace rpa::bf16
