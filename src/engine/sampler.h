// Turns a row of logits into the next token: penalties, temperature, top-k, top-p, min-p,
// then a draw from a seeded generator, so the same seed gives the same text on any machine.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace kdr::engine {

struct SamplingParams {
  float temperature = 1.0f;         // 0: greedy
  int32_t top_k = 0;                // 0: off
  float top_p = 1.0f;               // 1: off
  float min_p = 0.0f;               // 0: off; keeps tokens with p >= min_p * p_max
  float repetition_penalty = 1.0f;  // llama.cpp / CTRL style, over the whole history
  float presence_penalty = 0.0f;    // OpenAI: minus this once a token has appeared
  float frequency_penalty = 0.0f;   // OpenAI: minus this times the token's count
  uint64_t seed = 0;

  // Throws std::invalid_argument naming the field when a value is out of range.
  void validate() const;
};

// A small, fully specified generator (xoshiro256**), seeded with splitmix64.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1) with 53 random bits

 private:
  uint64_t s_[4];
};

// log(sum(exp(logits))), summed in double: a logit minus it is that token's log-probability.
// -inf for an empty row; NaN or +inf when the row holds them.
float log_sum_exp(std::span<const float> logits);
// The n largest logits with their token ids, best first (ties by lower id).
std::vector<std::pair<int32_t, float>> top_logits(std::span<const float> logits, int32_t n);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Temperatures below this are greedy (as in vLLM): dividing logits by them overflows to
  // infinities, which would let masked-out tokens back in.
  static constexpr float kGreedyBelow = 1e-5f;

  // Picks a token from logits (modified in place by the penalties); `history` holds the
  // tokens the penalties look at (prompt and generated so far). Throws std::runtime_error
  // when the logits hold NaN or +Inf (a broken model) or every token is masked out.
  int32_t sample(std::span<float> logits, std::span<const int32_t> history);
  // Log-probability of `token` under the distribution the last sample() drew from (after
  // penalties and temperature, before truncation). Reads the logits sample() rewrote, so
  // it is valid while that buffer is unchanged.
  float logprob(int32_t token) const;
  // The n most likely tokens of that distribution with their log-probabilities, best first
  // (ties by lower id).
  std::vector<std::pair<int32_t, float>> top_logprobs(int32_t n) const;

 private:
  SamplingParams p_;
  Rng rng_;
  std::vector<int32_t> counts_;
  std::vector<std::pair<float, int32_t>> cand_;
  std::vector<double> weights_;  // exp(logit - max) per token, plain temperature sampling
  std::span<const float> last_;  // the scaled logits of the last call
  float lse() const;             // log-sum-exp of last_, computed once per sample() when asked
  // Top-p alone: arranges cand_ so that its first N entries are the nucleus; returns N.
  size_t select_nucleus(float mx);
  mutable float last_lse_ = 0.0f;
  mutable bool lse_valid_ = false;
};

}  // namespace kdr::engine
