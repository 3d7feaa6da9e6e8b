#include "engine/step_budget.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kdr::engine {

void StepShape::add(int32_t new_tokens, int32_t kv_len_after, bool samples) {
  tokens += new_tokens;
  logit_rows += samples ? 1 : 0;
  // Causal: the i-th new token attends to kv_len_after - new_tokens + i + 1 keys.
  const double n = new_tokens;
  attention_pairs += n * (static_cast<double>(kv_len_after) - n) + n * (n + 1) / 2;
}

// Scaled so that the normal equations stay well conditioned (all features O(1..1000)).
std::array<double, StepCostModel::kFeatures> StepCostModel::features(const StepShape& s) {
  return {1.0, static_cast<double>(s.tokens), static_cast<double>(s.logit_rows),
          s.attention_pairs * 1e-3};
}

void StepCostModel::calibrate(const StepShape& shape, double seconds) {
  calibration_.push_back({features(shape), seconds});
  refit();
}

void StepCostModel::observe(const StepShape& shape, double seconds) {
  if (!(seconds >= 0.0) || !std::isfinite(seconds)) return;
  recent_.push_back({features(shape), seconds});
  if (recent_.size() > kWindow) recent_.pop_front();
  refit();
}

double StepCostModel::predict(const StepShape& shape) const {
  if (!fitted_) return 0.0;
  const auto x = features(shape);
  double t = 0.0;
  for (int j = 0; j < kFeatures; ++j) t += coef_[j] * x[j];
  return t;
}

// Least squares with every coefficient >= 0: solve on the active set, drop the most negative
// coefficient, repeat (at most kFeatures rounds). A small ridge keeps a feature that the
// samples never varied (a server that has only decoded) from taking an arbitrary value.
void StepCostModel::refit() {
  constexpr int F = kFeatures;
  double xtx[F][F] = {};
  double xty[F] = {};
  double scale = 0.0;
  auto accumulate = [&](const Sample& s) {
    for (int i = 0; i < F; ++i) {
      xty[i] += s.x[i] * s.t;
      for (int j = 0; j < F; ++j) xtx[i][j] += s.x[i] * s.x[j];
    }
  };
  for (const Sample& s : calibration_) accumulate(s);
  for (const Sample& s : recent_) accumulate(s);
  for (int i = 0; i < F; ++i) scale = std::max(scale, xtx[i][i]);
  if (scale <= 0.0) return;
  const double ridge = 1e-9 * scale;

  bool active[F];
  std::fill(active, active + F, true);
  std::array<double, F> w{};
  for (int round = 0; round <= F; ++round) {
    // Gaussian elimination with partial pivoting on the active features.
    int idx[F];
    int m = 0;
    for (int i = 0; i < F; ++i)
      if (active[i]) idx[m++] = i;
    double a[F][F + 1];
    for (int r = 0; r < m; ++r) {
      for (int c = 0; c < m; ++c) a[r][c] = xtx[idx[r]][idx[c]] + (r == c ? ridge : 0.0);
      a[r][m] = xty[idx[r]];
    }
    bool singular = false;
    for (int c = 0; c < m && !singular; ++c) {
      int piv = c;
      for (int r = c + 1; r < m; ++r)
        if (std::fabs(a[r][c]) > std::fabs(a[piv][c])) piv = r;
      if (std::fabs(a[piv][c]) < 1e-300) {
        singular = true;
        break;
      }
      for (int k = 0; k <= m; ++k) std::swap(a[c][k], a[piv][k]);
      for (int r = 0; r < m; ++r) {
        if (r == c) continue;
        const double f = a[r][c] / a[c][c];
        for (int k = c; k <= m; ++k) a[r][k] -= f * a[c][k];
      }
    }
    if (singular) return;
    w.fill(0.0);
    int worst = -1;
    for (int r = 0; r < m; ++r) {
      w[idx[r]] = a[r][m] / a[r][r];
      if (w[idx[r]] < 0.0 && (worst < 0 || w[idx[r]] < w[worst])) worst = idx[r];
    }
    if (worst < 0) break;
    active[worst] = false;
    w[worst] = 0.0;
  }
  for (double& c : w) c = std::max(0.0, c);
  coef_ = w;
  fitted_ = true;
}

void StepBudget::begin(int64_t backlog_tokens) {
  backlog_tokens_ = backlog_tokens;
  shape_ = StepShape{};
  decode_shape_ = StepShape{};
  prefills_ = 0;
}

bool StepBudget::decode(int32_t kv_len_after) {
  if (tokens_left() < 1) return false;
  shape_.add(1, kv_len_after, true);
  ++shape_.decodes;
  decode_shape_.add(1, kv_len_after, true);
  ++decode_shape_.decodes;
  return true;
}

double StepBudget::target_seconds() const {
  if (decode_shape_.decodes == 0) return std::numeric_limits<double>::infinity();
  if (opt_.itl_target_s > 0.0) return opt_.itl_target_s;
  if (opt_.prefill_backlog_s > 0.0 &&
      cost_.coefficients()[1] * static_cast<double>(backlog_tokens_) > opt_.prefill_backlog_s)
    return std::numeric_limits<double>::infinity();
  return cost_.predict(decode_shape_) * (1.0 + kAutoHeadroom) + kAutoSlackSeconds;
}

int32_t StepBudget::prefill_chunk(int32_t computed, int32_t pending) const {
  const int32_t most = std::min(pending, tokens_left());
  if (most <= 0) return 0;
  const int32_t floor = prefills_ == 0 ? std::min(most, std::max(1, opt_.min_prefill_chunk)) : 0;
  const double target = target_seconds();
  if (!std::isfinite(target) || !cost_.fitted()) return most;
  auto fits = [&](int32_t n) {
    StepShape s = shape_;
    s.add(n, computed + n, n == pending);
    return cost_.predict(s) <= target;
  };
  if (fits(most)) return most;
  // The predicted time grows with n: the largest n that fits, by bisection.
  int32_t lo = 0, hi = most;  // fits(lo) (or lo == 0), !fits(hi)
  while (hi - lo > 1) {
    const int32_t mid = lo + (hi - lo) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  return std::max(lo, floor);
}

void StepBudget::prefill(int32_t computed, int32_t n, bool samples) {
  shape_.add(n, computed + n, samples);
  ++prefills_;
}

}  // namespace kdr::engine
