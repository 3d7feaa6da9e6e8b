// How much prefill a step may carry so that the requests already decoding are not held up:
// the scheduling policy of Sarathi-Serve (OSDI 2024, "stall-free batching") on a cost model
// of this machine measured at start-up and refit from every step.
//
// A step's time is modelled as
//   t = c0 + c_token * tokens + c_row * logit_rows + c_attn * attention_pairs
// (tokens: new tokens computed; logit_rows: rows projected onto the vocabulary and sampled,
// which for a small model with a large vocabulary cost more than a token's layers;
// attention_pairs: sum over sequences of new tokens x keys attended). The coefficients are a
// non-negative least-squares fit over the start-up calibration steps and the last steps run.
//
// Policy, per step: every decode first (one token each, up to the token cap); then prefill
// chunks in arrival order, each the largest that keeps the predicted step time within the
// target, so one long prompt never stalls the streams and the oldest prompt is served first.
// The target is --itl-target-ms, or by default the decodes' own predicted time times
// (1 + kAutoHeadroom) plus kAutoSlackSeconds: a prompt arriving among running streams adds
// at most a quarter to their step. A step with no decode has no stream to hold up and takes
// the whole token cap, and so does every step while the prompts present need more than
// prefill_backlog_s of compute to prefill (their time to first token comes first then: a
// burst of long prompts spread over small steps would wait tens of seconds). An explicit
// --itl-target-ms holds always. The oldest prefill always gets at least
// min_prefill_chunk tokens, so no prompt starves however many streams decode.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

namespace kdr::engine {

// The shape of a step, as far as its cost goes.
struct StepShape {
  int32_t tokens = 0;
  int32_t logit_rows = 0;
  double attention_pairs = 0.0;
  int32_t decodes = 0;  // sequences with one new token (not a cost feature: the ITL-bound ones)

  void add(int32_t new_tokens, int32_t kv_len_after, bool samples);
};

class StepCostModel {
 public:
  static constexpr int kFeatures = 4;
  static constexpr std::size_t kWindow = 256;  // most recent steps kept for the fit

  // Start-up measurements: kept for good, so shapes the recent steps did not cover (a long
  // prefill after minutes of pure decoding) are still predicted from something measured.
  void calibrate(const StepShape& shape, double seconds);
  // A step as run; refits.
  void observe(const StepShape& shape, double seconds);
  // Predicted seconds (0 before any observation).
  double predict(const StepShape& shape) const;
  bool fitted() const { return fitted_; }
  // c0, c_token, c_row, c_attn (seconds; c_attn per attention pair).
  const std::array<double, kFeatures>& coefficients() const { return coef_; }

 private:
  struct Sample {
    std::array<double, kFeatures> x;
    double t;
  };
  static std::array<double, kFeatures> features(const StepShape& s);
  void refit();

  std::vector<Sample> calibration_;
  std::deque<Sample> recent_;
  std::array<double, kFeatures> coef_{};
  bool fitted_ = false;
};

struct StepBudgetOptions {
  int32_t max_step_tokens = 256;  // hard cap on a step's tokens (--max-batched-tokens)
  double itl_target_s = 0.0;      // a step's time target while requests decode; 0: automatic
  int32_t min_prefill_chunk = 16;
  double prefill_backlog_s = 2.0;  // automatic target only; 0: never lift the target
};

class StepBudget {
 public:
  static constexpr double kAutoHeadroom = 0.25;
  static constexpr double kAutoSlackSeconds = 0.010;

  explicit StepBudget(const StepBudgetOptions& options) : opt_(options) {}

  StepCostModel& cost() { return cost_; }
  const StepCostModel& cost() const { return cost_; }
  const StepBudgetOptions& options() const { return opt_; }

  // Planning one step: begin(), then decode() for each decode, then for each prompt in
  // arrival order prefill_chunk() and, if it is taken, prefill().
  // `backlog_tokens`: the prompt tokens that the requests present (running and waiting, as
  // far as max_num_seqs lets them run) have still to prefill.
  void begin(int64_t backlog_tokens = 0);
  // False when the step's token cap is spent (this decode waits for the next step).
  bool decode(int32_t kv_len_after);
  // The tokens a prompt with `computed` tokens cached and `pending` to go gets this step:
  // 0 when nothing more fits.
  int32_t prefill_chunk(int32_t computed, int32_t pending) const;
  void prefill(int32_t computed, int32_t n, bool samples);
  const StepShape& shape() const { return shape_; }
  int32_t tokens_left() const { return opt_.max_step_tokens - shape_.tokens; }
  // The time target of the step planned so far (infinite while it has no decode).
  double target_seconds() const;
  // After the step ran: its measured time.
  void observe(double seconds) { cost_.observe(shape_, seconds); }

 private:
  StepBudgetOptions opt_;
  StepCostModel cost_;
  StepShape shape_;
  StepShape decode_shape_;      // the step's decodes alone
  int32_t prefills_ = 0;        // prompts given a chunk this step
  int64_t backlog_tokens_ = 0;  // begin()'s argument
};

}  // namespace kdr::engine
