// The statistics behind data facts, against values scipy 1.x gives for the same inputs
// (fixed inputs below), and invariants on random inputs with a printed seed.
#include "hka/analysis/stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "../../base/seed.h"

namespace kdr::hka::stats {
namespace {

TEST(Stats, LinearFitMatchesScipyLinregress) {
  const std::vector<double> x = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<double> y = {2.1, 3.9, 6.2, 8.1, 9.7, 12.2, 13.8, 16.1};
  const auto f = linear_fit(x, y);
  ASSERT_TRUE(f);
  EXPECT_NEAR(f->slope, 1.9892857142857143, 1e-12);
  EXPECT_NEAR(f->intercept, 0.060714285714285054, 1e-12);
  EXPECT_NEAR(f->r2, 0.9985345124464521, 1e-12);
  EXPECT_NEAR(f->p_value, 9.84090952304846e-10, 1e-15);
  EXPECT_EQ(f->n, 8u);
}

TEST(Stats, PearsonAndSpearmanMatchScipy) {
  const std::vector<double> a = {3.1, 4.5, 2.2, 8.9, 5.5, 6.1, 7.7, 1.2, 9.4, 4.4};
  const std::vector<double> b = {2.0, 3.3, 2.9, 7.1, 4.0, 6.6, 5.9, 2.2, 8.8, 5.1};
  const auto p = pearson(a, b);
  ASSERT_TRUE(p);
  EXPECT_NEAR(p->r, 0.9185649795982163, 1e-12);
  EXPECT_NEAR(p->p_value, 0.00017423597881299364, 1e-12);
  const auto s = spearman(a, b);
  ASSERT_TRUE(s);
  EXPECT_NEAR(s->r, 0.9151515151515152, 1e-12);
  EXPECT_NEAR(s->p_value, 0.00020447240614883226, 1e-12);
  // Ties share their mean rank.
  const auto t = spearman({1, 2, 2, 3, 4, 4, 4, 5}, {5, 3, 4, 2, 2, 1, 3, 1});
  ASSERT_TRUE(t);
  EXPECT_NEAR(t->r, -0.843815925694518, 1e-12);
  EXPECT_NEAR(t->p_value, 0.00844382574866632, 1e-12);
}

TEST(Stats, DistributionsAndQuantilesMatchScipyAndNumpy) {
  EXPECT_NEAR(t_two_sided_p(2.5, 7), 0.04099221858575289, 1e-12);
  EXPECT_NEAR(normal_cdf(0), 0.5, 1e-15);
  EXPECT_NEAR(quantile({7, 1, 3, 9, 5, 2}, 0.25), 2.25, 1e-12);
  EXPECT_NEAR(quantile({7, 1, 3, 9, 5, 2}, 0.5), 4.0, 1e-12);
  EXPECT_NEAR(quantile({7, 1, 3, 9, 5, 2}, 0.75), 6.5, 1e-12);
  EXPECT_EQ(ranks({10, 30, 20, 20}), (std::vector<double>{1, 4, 2.5, 2.5}));
}

TEST(Stats, CompoundGrowth) {
  EXPECT_NEAR(*compound_growth(100, 121, 2), 0.1, 1e-12);
  EXPECT_FALSE(compound_growth(0, 10, 3));
  EXPECT_FALSE(compound_growth(10, -1, 3));
  EXPECT_FALSE(compound_growth(10, 20, 0));
}

TEST(Stats, DegenerateInputsGiveNothing) {
  EXPECT_FALSE(linear_fit({1, 2}, {3, 4}));
  EXPECT_FALSE(linear_fit({2, 2, 2}, {1, 2, 3}));
  EXPECT_FALSE(pearson({1, 2, 3}, {5, 5, 5}));
}

TEST(Stats, RandomLinesAndMonotoneMapsHaveExactAnswers) {
  const uint64_t seed = kdr_test::test_seed();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-100, 100);
  for (int trial = 0; trial < 50; ++trial) {
    const double slope = u(rng), icpt = u(rng);
    std::vector<double> x, y, z;
    const int n = 3 + static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i) {
      x.push_back(u(rng));
      y.push_back(icpt + slope * x.back());
      z.push_back(std::exp(x.back() / 50.0));  // monotone in x
    }
    const auto f = linear_fit(x, y);
    ASSERT_TRUE(f);
    EXPECT_NEAR(f->slope, slope, 1e-7 * (1 + std::fabs(slope)));
    EXPECT_NEAR(f->r2, 1.0, 1e-9);
    const auto p = pearson(x, y);
    ASSERT_TRUE(p);
    EXPECT_NEAR(p->r, slope > 0 ? 1.0 : -1.0, 1e-9);
    EXPECT_NEAR(spearman(x, z)->r, 1.0, 1e-12);
  }
}

}  // namespace
}  // namespace kdr::hka::stats
