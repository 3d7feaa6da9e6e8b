#include "hka/analysis/stats.h"

#include <algorithm>
#include <boost/math/distributions/normal.hpp>
#include <boost/math/distributions/students_t.hpp>
#include <cmath>
#include <numeric>

namespace kdr::hka::stats {

double t_two_sided_p(double t, double df) {
  if (!std::isfinite(t)) return 0.0;
  if (df <= 0) return 1.0;
  const boost::math::students_t dist(df);
  return std::clamp(2.0 * boost::math::cdf(boost::math::complement(dist, std::fabs(t))), 0.0, 1.0);
}

double normal_cdf(double z) {
  const boost::math::normal dist;
  return boost::math::cdf(dist, z);
}

double mean(const std::vector<double>& v) {
  if (v.empty()) return 0.0;
  return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

double stddev(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean(v);
  double ss = 0;
  for (double x : v) ss += (x - m) * (x - m);
  return std::sqrt(ss / static_cast<double>(v.size() - 1));
}

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = std::clamp(q, 0.0, 1.0) * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

double mad(const std::vector<double>& v) {
  if (v.empty()) return 0.0;
  const double med = quantile(v, 0.5);
  std::vector<double> dev;
  dev.reserve(v.size());
  for (double x : v) dev.push_back(std::fabs(x - med));
  return 1.4826 * quantile(dev, 0.5);
}

namespace {

// Means and centred sums of squares and products of the first n pairs.
struct Moments {
  size_t n = 0;
  double mx = 0, my = 0, sxx = 0, sxy = 0, syy = 0;
};

Moments moments(const std::vector<double>& x, const std::vector<double>& y) {
  Moments m;
  m.n = std::min(x.size(), y.size());
  if (m.n == 0) return m;
  for (size_t i = 0; i < m.n; ++i) {
    m.mx += x[i];
    m.my += y[i];
  }
  m.mx /= static_cast<double>(m.n);
  m.my /= static_cast<double>(m.n);
  for (size_t i = 0; i < m.n; ++i) {
    m.sxx += (x[i] - m.mx) * (x[i] - m.mx);
    m.sxy += (x[i] - m.mx) * (y[i] - m.my);
    m.syy += (y[i] - m.my) * (y[i] - m.my);
  }
  return m;
}

}  // namespace

std::optional<LinearFit> linear_fit(const std::vector<double>& x, const std::vector<double>& y) {
  const Moments mo = moments(x, y);
  const size_t n = mo.n;
  if (n < 3) return std::nullopt;
  const double mx = mo.mx, my = mo.my, sxx = mo.sxx, sxy = mo.sxy, syy = mo.syy;
  if (sxx <= 0) return std::nullopt;
  LinearFit f;
  f.n = n;
  f.slope = sxy / sxx;
  f.intercept = my - f.slope * mx;
  const double sse = std::max(0.0, syy - f.slope * sxy);
  f.r2 = syy > 0 ? std::clamp(1.0 - sse / syy, 0.0, 1.0) : 0.0;
  const double df = static_cast<double>(n) - 2.0;
  const double se = std::sqrt(sse / df / sxx);
  f.p_value = se > 0 ? t_two_sided_p(f.slope / se, df) : (f.slope != 0 ? 0.0 : 1.0);
  return f;
}

namespace {

std::optional<Correlation> correlation_with_p(double r, size_t n) {
  Correlation c;
  c.n = n;
  c.r = std::clamp(r, -1.0, 1.0);
  const double df = static_cast<double>(n) - 2.0;
  if (std::fabs(c.r) >= 1.0) {
    c.p_value = 0.0;
  } else {
    c.p_value = t_two_sided_p(c.r * std::sqrt(df / (1.0 - c.r * c.r)), df);
  }
  return c;
}

}  // namespace

std::optional<Correlation> pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const Moments m = moments(x, y);
  if (m.n < 3 || m.sxx <= 0 || m.syy <= 0) return std::nullopt;
  return correlation_with_p(m.sxy / std::sqrt(m.sxx * m.syy), m.n);
}

std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<size_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
    const double rank = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
    for (size_t k = i; k <= j; ++k) r[order[k]] = rank;
    i = j + 1;
  }
  return r;
}

std::optional<Correlation> spearman(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = std::min(x.size(), y.size());
  if (n < 3) return std::nullopt;
  const std::vector<double> rx = ranks(std::vector<double>(x.begin(), x.begin() + n));
  const std::vector<double> ry = ranks(std::vector<double>(y.begin(), y.begin() + n));
  return pearson(rx, ry);
}

std::optional<double> compound_growth(double first, double last, double span) {
  if (!(first > 0) || !(last > 0) || !(span > 0)) return std::nullopt;
  return std::pow(last / first, 1.0 / span) - 1.0;
}

}  // namespace kdr::hka::stats
