#include "ops/rope.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace kdr::ops {

std::vector<float> llama3_freq_factors(int rot_dim, float base, const Llama3RopeScaling& s) {
  if (!(s.factor > 0 && s.high_freq_factor > s.low_freq_factor && s.low_freq_factor > 0 &&
        s.original_context > 0)) {
    throw std::invalid_argument(
        "rope: llama3 scaling needs factor > 0 and high_freq_factor > low_freq_factor > 0");
  }
  std::vector<float> out;
  const double low_wavelen = s.original_context / s.low_freq_factor;
  const double high_wavelen = s.original_context / s.high_freq_factor;
  for (int i = 0; i < rot_dim / 2; ++i) {
    const double freq = 1.0 / std::pow(static_cast<double>(base), 2.0 * i / rot_dim);
    const double wavelen = 2.0 * M_PI / freq;
    double f;
    if (wavelen < high_wavelen) {
      f = 1.0;
    } else if (wavelen > low_wavelen) {
      f = s.factor;
    } else {
      const double smooth = (s.original_context / wavelen - s.low_freq_factor) /
                            (s.high_freq_factor - s.low_freq_factor);
      f = 1.0 / ((1.0 - smooth) / s.factor + smooth);
    }
    out.push_back(static_cast<float>(f));
  }
  return out;
}

RopeTable::RopeTable(const RopeConfig& config) : config_(config) {
  const int d = config.rot_dim;
  if (d <= 0 || d % 2 != 0) {
    throw std::invalid_argument("rope: rotary dimension must be positive and even, got " +
                                std::to_string(d));
  }
  if (!(config.base > 0) || !(config.linear_factor > 0)) {
    throw std::invalid_argument("rope: base and linear factor must be positive");
  }
  const std::vector<float>& factors = config.freq_factors;
  if (!factors.empty() && static_cast<int>(factors.size()) != d / 2) {
    throw std::invalid_argument("rope: " + std::to_string(factors.size()) +
                                " frequency factors for " + std::to_string(d / 2) + " pairs");
  }
  inv_freq_.resize(static_cast<size_t>(d / 2));
  for (int i = 0; i < d / 2; ++i) {
    inv_freq_[i] = 1.0f / std::pow(config.base, static_cast<float>(2 * i) / static_cast<float>(d));
    if (!factors.empty()) {
      if (!(factors[i] > 0))
        throw std::invalid_argument("rope: frequency factor " + std::to_string(i) +
                                    " is not positive");
      inv_freq_[i] /= factors[i];
    }
  }
}

void RopeTable::angles(int64_t pos, float* cs, float* sn) const {
  const float p = static_cast<float>(pos) / config_.linear_factor;
  for (int i = 0; i < pairs(); ++i) {
    const float a = p * inv_freq_[i];
    cs[i] = std::cos(a);
    sn[i] = std::sin(a);
  }
}

void RopeTable::rotate(float* x, const float* cs, const float* sn) const {
  const int half = pairs();
  if (config_.style == RopeStyle::kHalfSplit) {
    for (int i = 0; i < half; ++i) {
      const float a = x[i], b = x[i + half];
      x[i] = a * cs[i] - b * sn[i];
      x[i + half] = b * cs[i] + a * sn[i];
    }
  } else {
    for (int i = 0; i < half; ++i) {
      const float a = x[2 * i], b = x[2 * i + 1];
      x[2 * i] = a * cs[i] - b * sn[i];
      x[2 * i + 1] = b * cs[i] + a * sn[i];
    }
  }
}

void RopeTable::apply(float* x, int n_heads, int head_dim, int64_t pos) const {
  if (config_.rot_dim > head_dim) {
    throw std::invalid_argument("rope: rotary dimension " + std::to_string(config_.rot_dim) +
                                " exceeds head_dim " + std::to_string(head_dim));
  }
  std::vector<float> cs(static_cast<size_t>(pairs())), sn(static_cast<size_t>(pairs()));
  angles(pos, cs.data(), sn.data());
  for (int h = 0; h < n_heads; ++h)
    rotate(x + static_cast<int64_t>(h) * head_dim, cs.data(), sn.data());
}

}  // namespace kdr::ops
