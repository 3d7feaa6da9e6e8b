// Rotary position embedding, the one implementation the model's forward pass and the tests
// use. Two pairings of a head's dimensions:
//  - kInterleaved: (x[2i], x[2i+1]), ggml's "NORM" mode, used by llama-arch GGUF files (the
//    converter permutes Q/K so this form applies);
//  - kHalfSplit: (x[i], x[i + rot_dim/2]), ggml's "NEOX" mode (Qwen2/3, Gemma, HF weights).
// Pair i turns by angle (pos / linear_factor) * inv_freq[i], inv_freq[i] =
// base^(-2i/rot_dim) / freq_factors[i]. Everything is computed in float, the way
// transformers and llama.cpp compute it, so logits compare with theirs to float rounding.
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
// Llama 3.1's scaling as per-pair divisors of the inverse frequencies (RopeConfig::
// freq_factors), computed in double like GGUF converters write rope_freqs.weight.
std::vector<float> llama3_freq_factors(int rot_dim, float base, const Llama3RopeScaling& s);

struct RopeConfig {
  int rot_dim = 0;  // rotated dimensions of a head (<= head_dim, even)
  float base = 10000.0f;
  RopeStyle style = RopeStyle::kHalfSplit;
  float linear_factor = 1.0f;       // "linear" scaling: positions divided by this
  std::vector<float> freq_factors;  // per-pair divisors of inv_freq (rot_dim/2), empty: none
};

class RopeTable {
 public:
  // Throws std::invalid_argument for an odd or non-positive rot_dim, a non-positive base or
  // linear factor, or freq_factors of the wrong length or not positive.
  explicit RopeTable(const RopeConfig& config);
  const RopeConfig& config() const { return config_; }
  int pairs() const { return config_.rot_dim / 2; }
  // Per pair, after scaling.
  const std::vector<float>& inv_freq() const { return inv_freq_; }

  // cos and sin of each pair's angle at position pos: pairs() values each. A token's heads
  // share them, so callers compute them once per token.
  void angles(int64_t pos, float* cs, float* sn) const;
  // Rotates the first rot_dim dims of one head in place by angles from angles().
  void rotate(float* head, const float* cs, const float* sn) const;
  // Both, for n_heads heads (head_dim floats apart) of one token at position pos.
  void apply(float* x, int n_heads, int head_dim, int64_t pos) const;

 private:
  RopeConfig config_;
  std::vector<float> inv_freq_;
};

}  // namespace kdr::ops
