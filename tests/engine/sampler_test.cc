// The sampler's rules, each against its definition, with printed seeds.
#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>

#include "../base/seed.h"

namespace kdr::engine {
namespace {

using kdr_test::test_seed;

std::vector<float> random_logits(uint64_t seed, int n) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, 2.0f);
  std::vector<float> l(static_cast<size_t>(n));
  for (float& x : l) x = d(g);
  return l;
}

int argmax(const std::vector<float>& l) {
  return static_cast<int>(std::max_element(l.begin(), l.end()) - l.begin());
}

// Token ids from the highest logit down, ties by lower id: the order the sampler's cut-offs
// are defined on, computed here by a full sort.
std::vector<int> by_logit(const std::vector<float>& base) {
  std::vector<int> order(base.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int a, int b) { return base[a] > base[b] || (base[a] == base[b] && a < b); });
  return order;
}

TEST(Sampler, GreedyIsArgmax) {
  const uint64_t seed = test_seed();
  for (int i = 0; i < 20; ++i) {
    auto l = random_logits(seed + i, 1000);
    const int want = argmax(l);
    SamplingParams p;
    p.temperature = 0.0f;
    EXPECT_EQ(Sampler(p).sample(l, {}), want);
  }
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDiffers) {
  const uint64_t seed = test_seed();
  const auto base = random_logits(seed, 500);
  auto run = [&](uint64_t s) {
    SamplingParams p;
    p.seed = s;
    Sampler smp(p);
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) {
      auto l = base;
      out.push_back(smp.sample(l, {}));
    }
    return out;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

TEST(Sampler, FrequenciesFollowSoftmaxAtTemperature) {
  const uint64_t seed = test_seed();
  const std::vector<float> base = {1.0f, 0.0f, -1.0f, 2.0f};
  const float temp = 0.7f;
  SamplingParams p;
  p.temperature = temp;
  p.seed = seed;
  Sampler smp(p);
  std::map<int, int> counts;
  const int n = 40000;
  for (int i = 0; i < n; ++i) {
    auto l = base;
    ++counts[smp.sample(l, {})];
  }
  double z = 0.0;
  for (float x : base) z += std::exp(x / temp);
  for (int t = 0; t < 4; ++t) {
    const double pr = std::exp(base[t] / temp) / z;
    const double sd = std::sqrt(pr * (1 - pr) / n);
    EXPECT_NEAR(counts[t] / static_cast<double>(n), pr, 5 * sd) << "token " << t;
  }
}

// Top-p over a vocabulary large enough for the nucleus selection to partition (several
// hundred candidates, ties included): each token of the exact nucleus of a full sort is
// drawn with its renormalised probability, and no other token is drawn.
TEST(Sampler, TopPFrequenciesFollowTheRenormalisedNucleus) {
  const uint64_t seed = test_seed();
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> base(600);
  for (float& l : base) l = std::round(normal(rng) * 8.0f) / 8.0f;  // many equal logits
  const std::vector<int> order = by_logit(base);
  double total = 0.0;
  for (float l : base) total += std::exp(static_cast<double>(l));
  std::map<int, double> nucleus;
  double acc = 0.0;
  for (int t : order) {
    nucleus[t] = std::exp(static_cast<double>(base[t]));
    acc += nucleus[t] / total;
    if (acc >= 0.6) break;
  }
  double kept = 0.0;
  for (const auto& [t, w] : nucleus) kept += w;
  SamplingParams p;
  p.top_p = 0.6f;
  p.seed = seed;
  Sampler smp(p);
  std::map<int, int> counts;
  const int n = 60000;
  for (int i = 0; i < n; ++i) {
    auto l = base;
    ++counts[smp.sample(l, {})];
  }
  for (const auto& [t, c] : counts) EXPECT_TRUE(nucleus.count(t)) << "token " << t;
  for (const auto& [t, w] : nucleus) {
    const double pr = w / kept;
    const double sd = std::sqrt(pr * (1 - pr) / n);
    EXPECT_NEAR(counts[t] / static_cast<double>(n), pr, 5 * sd + 1e-4) << "token " << t;
  }
  EXPECT_GT(nucleus.size(), 40u);
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  const uint64_t seed = test_seed();
  for (int i = 0; i < 10; ++i) {
    const auto base = random_logits(seed + i, 300);
    SamplingParams k1;
    k1.top_k = 1;
    k1.seed = seed + i;
    auto l = base;
    EXPECT_EQ(Sampler(k1).sample(l, {}), argmax(base));
    SamplingParams p0;
    p0.top_p = 1e-6f;
    p0.seed = seed + i;
    l = base;
    EXPECT_EQ(Sampler(p0).sample(l, {}), argmax(base));
  }
}

TEST(Sampler, TruncationKeepsOnlyAllowedTokens) {
  const uint64_t seed = test_seed();
  // Probabilities 0.5, 0.25, 0.125, 0.125 (logits are log-probabilities).
  const std::vector<float> base = {std::log(0.5f), std::log(0.25f), std::log(0.125f),
                                   std::log(0.125f)};
  SamplingParams topk;
  topk.top_k = 2;
  topk.seed = seed;
  SamplingParams topp;
  topp.top_p = 0.7f;  // 0.5 + 0.25 reaches it: keeps two
  topp.seed = seed;
  SamplingParams minp;
  minp.min_p = 0.4f;  // keeps p >= 0.2: two
  minp.seed = seed;
  for (const SamplingParams& p : {topk, topp, minp}) {
    Sampler smp(p);
    std::map<int, int> counts;
    for (int i = 0; i < 3000; ++i) {
      auto l = base;
      ++counts[smp.sample(l, {})];
    }
    EXPECT_EQ(counts[2] + counts[3], 0);
    EXPECT_GT(counts[0], counts[1]);
    EXPECT_GT(counts[1], 0);
  }
}

// On a Gemma-sized vocabulary the cut-offs are applied after a pre-filter; every draw must
// still come from the exact nucleus / min-p set computed here by a full sort.
TEST(Sampler, LargeVocabularyTruncationMatchesAFullSort) {
  const uint64_t seed = test_seed();
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> base(262144);
  for (float& l : base) l = normal(rng);
  const std::vector<int> order = by_logit(base);
  const double mx = base[order[0]];
  double total = 0.0;
  for (float l : base) total += std::exp(l - mx);
  std::set<int> nucleus, minp_set;
  double acc = 0.0;
  for (int t : order) {
    nucleus.insert(t);
    acc += std::exp(base[t] - mx) / total;
    if (acc >= 0.9) break;
  }
  for (int t : order)
    if (std::exp(base[t] - mx) >= 0.05) minp_set.insert(t);
  SamplingParams topp;
  topp.top_p = 0.9f;
  topp.seed = seed;
  SamplingParams minp;
  minp.min_p = 0.05f;
  minp.seed = seed;
  for (const auto& [params, allowed] : {std::pair{topp, &nucleus}, std::pair{minp, &minp_set}}) {
    Sampler smp(params);
    std::set<int> seen;
    for (int i = 0; i < 50; ++i) {
      auto l = base;
      const int t = smp.sample(l, {});
      EXPECT_TRUE(allowed->count(t)) << t;
      seen.insert(t);
    }
    // Sampling must not collapse to the top token, which is only testable when another
    // allowed token is likely enough to appear in 50 draws (p >= 0.2: missed with
    // probability < 2e-5). With some seeds one token holds nearly all the mass.
    double allowed_mass = 0.0, second = 0.0, first = 0.0;
    for (int t : *allowed) {
      const double p = std::exp(base[t] - mx);
      allowed_mass += p;
      if (p > first) {
        second = first;
        first = p;
      } else if (p > second) {
        second = p;
      }
    }
    if (second / allowed_mass >= 0.2) {
      EXPECT_GT(seen.size(), 1u);
    }
  }
}

// Nearly flat logits put most of the vocabulary in the nucleus, which top-p alone selects
// without sorting it: the draws must come from the exact nucleus of a full sort, and its far
// end must be reachable (draws land beyond its best 256 tokens).
TEST(Sampler, FlatLogitsTopPDrawsFromTheExactNucleus) {
  const uint64_t seed = test_seed();
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  std::vector<float> base(262144);
  for (float& l : base) l = normal(rng);
  const std::vector<int> order = by_logit(base);
  const double mx = base[order[0]];
  double total = 0.0;
  for (float l : base) total += std::exp(l - mx);
  std::map<int, size_t> rank;  // of the nucleus' tokens
  double acc = 0.0;
  for (size_t i = 0; i < order.size(); ++i) {
    rank[order[i]] = i;
    acc += std::exp(base[order[i]] - mx) / total;
    if (acc >= 0.5) break;
  }
  SamplingParams p;
  p.top_p = 0.5f;
  p.seed = seed;
  Sampler smp(p);
  size_t deepest = 0;
  for (int i = 0; i < 40; ++i) {
    auto l = base;
    const int t = smp.sample(l, {});
    ASSERT_TRUE(rank.count(t)) << "token " << t << " is outside the nucleus";
    deepest = std::max(deepest, rank[t]);
  }
  EXPECT_GT(rank.size(), 10000u);
  EXPECT_GT(deepest, 256u);
}

TEST(Sampler, PenaltiesFollowTheirDefinitions) {
  std::vector<float> l = {2.0f, -2.0f, 1.0f, 0.5f};
  const std::vector<int32_t> history = {0, 1, 0, 3};
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  Sampler smp(p);
  smp.sample(l, history);
  EXPECT_FLOAT_EQ(l[0], 2.0f / 2.0f - 0.5f - 0.25f * 2);
  EXPECT_FLOAT_EQ(l[1], -2.0f * 2.0f - 0.5f - 0.25f);
  EXPECT_FLOAT_EQ(l[2], 1.0f);
  EXPECT_FLOAT_EQ(l[3], 0.5f / 2.0f - 0.5f - 0.25f);
}

TEST(Sampler, LogprobIsLogSoftmax) {
  std::vector<float> l = {1.0f, 2.0f, 3.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler smp(p);
  smp.sample(l, {});
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(smp.logprob(2), 3.0 - std::log(z), 1e-6);
  EXPECT_NEAR(smp.logprob(0), 1.0 - std::log(z), 1e-6);
}

TEST(Sampler, RejectsOutOfRangeParameters) {
  SamplingParams p;
  p.top_p = 0.0f;
  EXPECT_THROW(Sampler{p}, std::invalid_argument);
  p = {};
  p.temperature = -1.0f;
  EXPECT_THROW(Sampler{p}, std::invalid_argument);
  p = {};
  p.min_p = 1.5f;
  EXPECT_THROW(Sampler{p}, std::invalid_argument);
  p = {};
  p.top_k = -3;
  EXPECT_THROW(Sampler{p}, std::invalid_argument);
}

TEST(Sampler, NanOrInfiniteLogitsAreAnErrorNotACrash) {
  const uint64_t seed = test_seed();
  for (float bad : {NAN, INFINITY}) {
    for (float temperature : {0.0f, 0.7f}) {
      SamplingParams p;
      p.temperature = temperature;
      p.top_p = 0.9f;
      p.min_p = 0.05f;
      p.top_k = 5;
      Sampler smp(p);
      std::vector<float> l = random_logits(seed, 100);
      l[static_cast<size_t>(seed % 100)] = bad;
      EXPECT_THROW(smp.sample(l, {}), std::runtime_error) << "seed " << seed;
    }
  }
  SamplingParams p;
  Sampler smp(p);
  std::vector<float> masked(50, -INFINITY);
  EXPECT_THROW(smp.sample(masked, {}), std::runtime_error);
}

TEST(Sampler, ATemperatureTooSmallToDivideByIsGreedyAndKeepsTheMask) {
  // logits / 1e-45 overflow to +-Inf: a masked token (-Inf) and an allowed negative logit
  // would look alike. Below Sampler::kGreedyBelow the sampler is greedy instead.
  const uint64_t seed = test_seed();
  std::vector<float> l = random_logits(seed, 200);
  for (size_t i = 0; i < l.size(); i += 2) l[i] = -INFINITY;  // even ids masked
  const int32_t best = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
  for (float t : {1e-45f, 1e-30f, 1e-6f}) {
    SamplingParams p;
    p.temperature = t;
    p.top_p = 0.5f;
    p.min_p = 0.1f;
    p.top_k = 3;
    p.seed = seed;
    Sampler smp(p);
    std::vector<float> copy = l;
    EXPECT_EQ(smp.sample(copy, {}), best) << "temperature " << t << ", seed " << seed;
  }
}

}  // namespace
}  // namespace kdr::engine
