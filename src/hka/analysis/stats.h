// The statistics behind data facts: least-squares trends, correlations with their p-values,
// growth rates, quantiles and robust outlier scores. Distributions come from Boost.Math; the
// rest is closed-form arithmetic over plain vectors (missing values removed by the caller).
#pragma once
#include <cstddef>
#include <optional>
#include <vector>

namespace kdr::hka::stats {

// y = intercept + slope * x by ordinary least squares.
struct LinearFit {
  double slope = 0;
  double intercept = 0;
  double r2 = 0;       // coefficient of determination
  double p_value = 1;  // two-sided t test of slope = 0 (n - 2 degrees of freedom)
  size_t n = 0;
};
// nullopt when fewer than 3 points or x is constant.
std::optional<LinearFit> linear_fit(const std::vector<double>& x, const std::vector<double>& y);

struct Correlation {
  double r = 0;
  double p_value = 1;  // two-sided, t = r sqrt((n-2)/(1-r^2)) with n - 2 degrees of freedom
  size_t n = 0;
};
// Pearson's r; nullopt when fewer than 3 pairs or either side is constant.
std::optional<Correlation> pearson(const std::vector<double>& x, const std::vector<double>& y);
// Spearman's rho: Pearson's r of the ranks (ties get their mean rank), its p-value from the
// same t approximation scipy uses.
std::optional<Correlation> spearman(const std::vector<double>& x, const std::vector<double>& y);

// Ranks 1..n, ties sharing their mean rank.
std::vector<double> ranks(const std::vector<double>& v);

// Compound growth per unit of time: (last / first)^(1 / span) - 1, as a fraction; nullopt when
// either value is not positive or span <= 0.
std::optional<double> compound_growth(double first, double last, double span);

double mean(const std::vector<double>& v);
// Sample standard deviation (n - 1); 0 for fewer than 2 values.
double stddev(const std::vector<double>& v);
// Quantile q in [0, 1] by linear interpolation between order statistics (numpy's default);
// `v` need not be sorted. Requires a non-empty vector.
double quantile(std::vector<double> v, double q);
// Median absolute deviation scaled by 1.4826 (consistent with sigma for normal data).
double mad(const std::vector<double>& v);

// Two-sided p-value of a t statistic with `df` degrees of freedom.
double t_two_sided_p(double t, double df);
// Standard normal CDF.
double normal_cdf(double z);

}  // namespace kdr::hka::stats
