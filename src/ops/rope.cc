// Angles in double, rotation in float: cos/sin are computed once per token and shared by its
// heads, so the per-element work is two multiplies and an add.
#include "ops/rope.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace kdr::ops {

RopeTable::RopeTable(const RopeConfig& config) : config_(config) {
  const int d = config.rot_dim;
  if (d <= 0 || d % 2 != 0) {
    throw std::invalid_argument("rope: rotary dimension must be positive and even, got " +
                                std::to_string(d));
  }
  if (!(config.base > 0) || !(config.linear_factor > 0)) {
    throw std::invalid_argument("rope: base and linear factor must be positive");
  }
  const Llama3RopeScaling& s = config.llama3_scaling;
  if (config.llama3 && !(s.factor > 0 && s.high_freq_factor > s.low_freq_factor &&
                         s.low_freq_factor > 0 && s.original_context > 0)) {
    throw std::invalid_argument(
        "rope: llama3 scaling needs factor > 0 and high_freq_factor > "
        "low_freq_factor > 0");
  }
  inv_freq_.resize(d / 2);
  const double kTwoPi = 2.0 * 3.14159265358979323846;
  for (int i = 0; i < d / 2; ++i) {
    double f = std::pow(static_cast<double>(config.base), -2.0 * i / d);
    if (config.llama3) {
      const double wavelen = kTwoPi / f;
      const double low_wavelen = s.original_context / s.low_freq_factor;
      const double high_wavelen = s.original_context / s.high_freq_factor;
      if (wavelen > low_wavelen) {
        f /= s.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (s.original_context / wavelen - s.low_freq_factor) /
                              (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
    inv_freq_[i] = f / config.linear_factor;
  }
}

void RopeTable::apply(float* x, int n_heads, int head_dim, int64_t pos) const {
  const int half = config_.rot_dim / 2;
  if (config_.rot_dim > head_dim) {
    throw std::invalid_argument("rope: rotary dimension " + std::to_string(config_.rot_dim) +
                                " exceeds head_dim " + std::to_string(head_dim));
  }
  float cs[512], sn[512];
  for (int base = 0; base < half; base += 512) {
    const int cnt = std::min(512, half - base);
    for (int i = 0; i < cnt; ++i) {
      const double a = static_cast<double>(pos) * inv_freq_[base + i];
      cs[i] = static_cast<float>(std::cos(a));
      sn[i] = static_cast<float>(std::sin(a));
    }
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + static_cast<int64_t>(h) * head_dim;
      for (int i = 0; i < cnt; ++i) {
        const int p = base + i;
        float* a0 = config_.style == RopeStyle::kInterleaved ? v + 2 * p : v + p;
        float* a1 = config_.style == RopeStyle::kInterleaved ? v + 2 * p + 1 : v + p + half;
        const float x0 = *a0, x1 = *a1;
        *a0 = x0 * cs[i] - x1 * sn[i];
        *a1 = x0 * sn[i] + x1 * cs[i];
      }
    }
  }
}

}  // namespace kdr::ops
