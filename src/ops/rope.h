// Rotary position embedding. Two pairings of a head's dimensions:
//  - kInterleaved: (x[2i], x[2i+1]), ggml's "NORM" mode, used by llama-arch GGUF files (the
//    converter permutes Q/K so this form applies);
//  - kHalfSplit: (x[i], x[i + rot_dim/2]), ggml's "NEOX" mode (Qwen2/3, Gemma, HF weights).
// Pair i turns by angle pos * inv_freq[i], inv_freq[i] = base^(-2i/rot_dim), optionally
// reshaped by Llama-3.1 scaling or divided by a linear factor.
#pragma once

#include <cstdint>
#include <vector>

namespace kdr::ops {

enum class RopeStyle { kInterleaved, kHalfSplit };

// Llama 3.1 "rope_type: llama3": long wavelengths are slowed by `factor`, short ones kept,
// the band between blended.
struct Llama3RopeScaling {
  float factor = 8.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  float original_context = 8192.0f;
};

struct RopeConfig {
  int rot_dim = 0;  // rotated dimensions of a head (<= head_dim, even)
  float base = 10000.0f;
  RopeStyle style = RopeStyle::kHalfSplit;
  float linear_factor = 1.0f;  // "linear" scaling: positions divided by this
  bool llama3 = false;
  Llama3RopeScaling llama3_scaling;
};

class RopeTable {
 public:
  // Throws std::invalid_argument for an odd or non-positive rot_dim or a bad scaling.
  explicit RopeTable(const RopeConfig& config);
  const RopeConfig& config() const { return config_; }
  // Per pair, after scaling.
  const std::vector<double>& inv_freq() const { return inv_freq_; }

  // Rotates the first rot_dim dims of each of n_heads heads (head_dim floats apart) of one
  // token at position pos, in place.
  void apply(float* x, int n_heads, int head_dim, int64_t pos) const;

 private:
  RopeConfig config_;
  std::vector<double> inv_freq_;
};

}  // namespace kdr::ops
