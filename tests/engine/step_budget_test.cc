// The step budget on a fake machine: a cost function with known coefficients (and noise)
// stands in for the model. The fit recovers the coefficients; under a synthetic load of
// short and long prompts the steps that carry decodes stay within their time target, every
// request finishes, and prompts get their first token in arrival order.
#include "engine/step_budget.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <random>
#include <vector>

#include "../base/seed.h"

namespace kdr::engine {
namespace {

using kdr_test::test_seed;

// A 270M-class model on two cores: 12 ms a step, 1.6 ms a token, 4 ms a sampled row,
// 2 us per thousand attention pairs.
struct FakeMachine {
  double c0 = 0.012, c_token = 0.0016, c_row = 0.004, c_attn = 2e-6;
  double noise = 0.03;  // relative, uniform
  std::mt19937_64* rng = nullptr;
  double exact(const StepShape& s) const {
    return c0 + c_token * s.tokens + c_row * s.logit_rows + c_attn * s.attention_pairs * 1e-3;
  }
  double time(const StepShape& s) const {
    std::uniform_real_distribution<double> u(-noise, noise);
    return exact(s) * (1.0 + u(*rng));
  }
};

StepShape random_shape(std::mt19937_64& rng) {
  std::uniform_int_distribution<int> decodes(0, 32), prefill(0, 256), ctx(0, 1024);
  StepShape s;
  const int d = decodes(rng);
  for (int i = 0; i < d; ++i) s.add(1, 1 + ctx(rng), true);
  const int p = prefill(rng);
  if (p > 0) s.add(p, p + ctx(rng), rng() % 2 == 0);
  if (s.tokens == 0) s.add(1, 1, true);
  return s;
}

// Start-up calibration on the fake machine: prefills and decodes of a few sizes.
void calibrate(StepCostModel& model, const FakeMachine& m) {
  for (int p : {48, 128}) {
    StepShape s;
    s.add(p, p, true);
    model.calibrate(s, m.time(s));
  }
  for (int d : {4, 16}) {
    StepShape s;
    for (int i = 0; i < d; ++i) s.add(1, 64, true);
    model.calibrate(s, m.time(s));
  }
}

TEST(StepCostModel, RecoversTheMachinesCoefficientsFromObservedSteps) {
  const uint64_t seed = test_seed();
  std::mt19937_64 rng(seed);
  FakeMachine m;
  m.rng = &rng;
  StepCostModel model;
  EXPECT_FALSE(model.fitted());
  for (int i = 0; i < 200; ++i) {
    const StepShape s = random_shape(rng);
    model.observe(s, m.time(s));
  }
  ASSERT_TRUE(model.fitted());
  // Predictions on fresh shapes within the noise.
  for (int i = 0; i < 100; ++i) {
    const StepShape s = random_shape(rng);
    EXPECT_NEAR(model.predict(s), m.exact(s), 0.03 * m.exact(s) + 0.002) << "seed " << seed;
  }
  const auto& c = model.coefficients();
  EXPECT_NEAR(c[1], m.c_token, 0.1 * m.c_token) << "seed " << seed;
  EXPECT_NEAR(c[2], m.c_row, 0.15 * m.c_row) << "seed " << seed;
  for (double x : c) EXPECT_GE(x, 0.0);
}

TEST(StepCostModel, NeverGoesNegativeAndStaysCalibratedAfterOnlyDecodes) {
  const uint64_t seed = test_seed();
  std::mt19937_64 rng(seed);
  FakeMachine m;
  m.rng = &rng;
  StepCostModel model;
  calibrate(model, m);  // start-up: prefills and decodes of a few sizes
  // Then a full window of pure 8-decode steps (tokens == rows: the two never vary apart).
  for (size_t i = 0; i < StepCostModel::kWindow; ++i) {
    StepShape s;
    for (int k = 0; k < 8; ++k) s.add(1, 100 + static_cast<int>(i), true);
    model.observe(s, m.time(s));
  }
  StepShape prefill;
  prefill.add(200, 200, true);
  EXPECT_NEAR(model.predict(prefill), m.exact(prefill), 0.15 * m.exact(prefill)) << "seed " << seed;
  for (double x : model.coefficients()) EXPECT_GE(x, 0.0);
}

struct SimRequest {
  int id;
  int prompt;
  int max_tokens;
  int computed = 0;
  int generated = 0;
  int first_token_step = -1;
  int arrival_step = 0;
  int pending() const { return prompt + generated - computed; }
};

// The engine's policy (engine.cc, Engine::Impl::schedule) on the fake machine: decodes first,
// then prompts in arrival order, each chunk from StepBudget::prefill_chunk.
TEST(StepBudget, StepsWithDecodesStayWithinTheTargetAndNoRequestStarves) {
  const uint64_t seed = test_seed();
  std::mt19937_64 rng(seed);
  FakeMachine m;
  m.rng = &rng;
  for (double target_ms : {0.0, 120.0}) {
    StepBudgetOptions o;
    o.max_step_tokens = 256;
    o.itl_target_s = target_ms * 1e-3;
    o.min_prefill_chunk = 16;
    o.prefill_backlog_s = 0;  // the target always holds here (the lift has its own test)
    StepBudget budget(o);
    calibrate(budget.cost(), m);  // as the engine does at start-up
    // 96 requests, a third with long prompts, arriving two per step at first.
    std::uniform_int_distribution<int> short_len(20, 40), long_len(200, 1000);
    std::deque<SimRequest> incoming;
    for (int i = 0; i < 96; ++i)
      incoming.push_back({i, i % 3 == 0 ? long_len(rng) : short_len(rng), 64});
    std::vector<SimRequest> running;  // arrival order
    std::vector<int> first_token_order;
    int done = 0, step = 0, over_target = 0, decode_steps = 0;
    const size_t max_running = 32;
    while (done < 96) {
      ASSERT_LT(step, 20000) << "seed " << seed << ": the load does not drain";
      for (int k = 0; k < 2 && !incoming.empty() && running.size() < max_running; ++k) {
        incoming.front().arrival_step = step;
        running.push_back(incoming.front());
        incoming.pop_front();
      }
      int64_t backlog = 0;
      for (const auto& r : running) backlog += std::max(0, r.prompt - r.computed);
      budget.begin(backlog);
      std::vector<std::pair<SimRequest*, int>> plan;
      for (auto& r : running)
        if (r.pending() == 1 && budget.decode(r.computed + 1)) plan.push_back({&r, 1});
      for (auto& r : running) {
        if (r.pending() == 1) continue;
        const int n = budget.prefill_chunk(r.computed, r.pending());
        if (n == 0) break;
        budget.prefill(r.computed, n, n == r.pending());
        plan.push_back({&r, n});
      }
      ASSERT_FALSE(plan.empty());
      const StepShape shape = budget.shape();
      const double t = m.exact(shape);
      const double target = budget.target_seconds();
      if (shape.decodes > 0) {
        ++decode_steps;
        if (target_ms > 0) {
          EXPECT_DOUBLE_EQ(target, target_ms * 1e-3);
        }
        // Over the target only by the guaranteed least chunk of the oldest prompt.
        const int prefill_tokens = shape.tokens - shape.decodes;
        if (t > 1.1 * target && prefill_tokens > o.min_prefill_chunk) ++over_target;
      }
      budget.observe(m.time(shape));
      for (auto& [r, n] : plan) {
        r->computed += n;
        if (r->pending() == 0) {
          if (r->first_token_step < 0) {
            r->first_token_step = step;
            first_token_order.push_back(r->id);
          }
          ++r->generated;
        }
      }
      for (auto it = running.begin(); it != running.end();) {
        if (it->generated >= it->max_tokens) {
          ++done;
          it = running.erase(it);
        } else {
          ++it;
        }
      }
      ++step;
    }
    std::printf("target %s: %d steps, %d with decodes, %d over 1.1x target\n",
                target_ms > 0 ? "120 ms" : "auto", step, decode_steps, over_target);
    EXPECT_GT(decode_steps, 100);
    EXPECT_LE(over_target, decode_steps / 100) << "seed " << seed;
    // First tokens come in arrival order: no prompt is overtaken, so none starves.
    std::vector<int> sorted = first_token_order;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(first_token_order, sorted) << "seed " << seed;
    EXPECT_EQ(first_token_order.size(), 96u);
  }
}

TEST(StepBudget, ABacklogOfPromptsLiftsTheAutomaticTargetButNotAnExplicitOne) {
  StepBudgetOptions o;
  o.max_step_tokens = 256;
  o.prefill_backlog_s = 2.0;
  StepShape p, d;
  p.add(100, 100, true);
  for (int i = 0; i < 8; ++i) d.add(1, 64, true);
  // 10 ms a token: 200 backlog tokens are 2 s of prefill.
  for (double itl_ms : {0.0, 50.0}) {
    o.itl_target_s = itl_ms * 1e-3;
    StepBudget budget(o);
    budget.cost().calibrate(p, 1.0);
    budget.cost().calibrate(d, 0.05);
    budget.begin(150);  // under the limit: the target holds
    for (int i = 0; i < 8; ++i) budget.decode(64);
    EXPECT_TRUE(std::isfinite(budget.target_seconds()));
    EXPECT_LT(budget.prefill_chunk(0, 150), 150);
    budget.begin(1000);  // 10 s of prefill waiting: the whole cap, unless a target was set
    for (int i = 0; i < 8; ++i) budget.decode(64);
    if (itl_ms == 0) {
      EXPECT_FALSE(std::isfinite(budget.target_seconds()));
      EXPECT_EQ(budget.prefill_chunk(0, 1000), 256 - 8);
    } else {
      EXPECT_DOUBLE_EQ(budget.target_seconds(), 0.05);
      EXPECT_LT(budget.prefill_chunk(0, 1000), 256 - 8);
    }
  }
}

TEST(StepBudget, WithoutDecodesAPromptTakesTheWholeCap) {
  StepBudgetOptions o;
  o.max_step_tokens = 100;
  o.itl_target_s = 0.001;  // would allow almost nothing
  StepBudget budget(o);
  StepShape s;
  s.add(64, 64, true);
  budget.cost().calibrate(s, 0.1);
  budget.begin();
  EXPECT_EQ(budget.prefill_chunk(0, 500), 100);
  budget.prefill(0, 100, false);
  EXPECT_EQ(budget.prefill_chunk(0, 50), 0);  // the cap is spent
  // With a decode in the step the target holds, but the oldest prompt still gets its least.
  budget.begin();
  EXPECT_TRUE(budget.decode(10));
  EXPECT_EQ(budget.prefill_chunk(0, 500), o.min_prefill_chunk);
  budget.prefill(0, o.min_prefill_chunk, false);
  EXPECT_EQ(budget.prefill_chunk(0, 500), 0);
}

}  // namespace
}  // namespace kdr::engine
