// Kept apart from rpa_test_util.cc so tests that never call the kernel link without it.
#include <limits>

#include "base/thread_pool.h"
#include "rpa_test_util.h"

namespace rpa_test {

std::vector<float> run_kernel(const Batch& batch, const rpa::AttentionParams& params,
                              const NewTokens& x, Cache& cache, int num_threads,
                              const rpa::Tuning& tuning) {
  kdr::ThreadPool pool(num_threads);
  const rpa::Plan plan = rpa::make_plan(batch.view(), cache.shape, params, num_threads, tuning);
  std::vector<float> out(
      static_cast<size_t>(batch.num_tokens()) * params.num_q_heads * cache.shape.head_dim,
      std::numeric_limits<float>::quiet_NaN());
  rpa::KvCache view = cache.view();
  rpa::run(plan, x.q.data(), x.k.data(), x.v.data(), view, out.data(), &pool);
  return out;
}

}  // namespace rpa_test
