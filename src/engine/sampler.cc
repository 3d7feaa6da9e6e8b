#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace kdr::engine {

void SamplingParams::validate() const {
  auto bad = [](const std::string& what) { throw std::invalid_argument(what); };
  if (!(temperature >= 0.0f) || !std::isfinite(temperature)) bad("temperature must be >= 0");
  if (top_k < 0) bad("top_k must be >= 0");
  if (!(top_p > 0.0f && top_p <= 1.0f)) bad("top_p must be in (0, 1]");
  if (!(min_p >= 0.0f && min_p <= 1.0f)) bad("min_p must be in [0, 1]");
  if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty))
    bad("repetition_penalty must be > 0");
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f))
    bad("presence_penalty must be in [-2, 2]");
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f))
    bad("frequency_penalty must be in [-2, 2]");
}

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

Sampler::Sampler(const SamplingParams& params) : p_(params), rng_(params.seed) { p_.validate(); }

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
  const int32_t n = static_cast<int32_t>(logits.size());
  // Penalties over the history.
  if (p_.repetition_penalty != 1.0f || p_.presence_penalty != 0.0f ||
      p_.frequency_penalty != 0.0f) {
    counts_.assign(static_cast<size_t>(n), 0);
    for (int32_t t : history)
      if (t >= 0 && t < n) ++counts_[t];
    for (int32_t t = 0; t < n; ++t) {
      if (counts_[t] == 0) continue;
      float& l = logits[t];
      if (p_.repetition_penalty != 1.0f)
        l = l > 0.0f ? l / p_.repetition_penalty : l * p_.repetition_penalty;
      l -= p_.presence_penalty + p_.frequency_penalty * static_cast<float>(counts_[t]);
    }
  }
  // The best logit and, in the same pass, a check: -Inf is a masked token; NaN or +Inf would
  // poison every comparison and sum below.
  int32_t best = 0;
  for (int32_t t = 0; t < n; ++t) {
    const float l = logits[t];
    if (std::isnan(l) || l == INFINITY)
      throw std::runtime_error(
          "the model produced NaN or infinite logits; this request cannot be sampled");
    if (l > logits[best]) best = t;
  }
  if (n == 0 || logits[best] == -INFINITY)
    throw std::runtime_error("every token is masked out; nothing can be sampled");
  const bool greedy = p_.temperature < kGreedyBelow;
  if (!greedy && p_.temperature != 1.0f)
    for (float& l : logits) l /= p_.temperature;
  const float mx = logits[best];
  last_ = logits;
  lse_valid_ = false;  // computed on demand: a pass of exp() over the vocabulary per token
  if (greedy) return best;

  if (p_.top_k == 0 && p_.top_p >= 1.0f && p_.min_p <= 0.0f) {
    // Plain temperature sampling: a draw over the whole vocabulary in id order, no sort. The
    // weights are kept from the pass that sums them, so exp() runs once per token.
    weights_.resize(static_cast<size_t>(n));
    double total = 0.0;
    for (int32_t t = 0; t < n; ++t)
      total += weights_[t] = std::exp(static_cast<double>(logits[t] - mx));
    const double r = rng_.uniform() * total;
    double acc = 0.0;
    int32_t last_nonzero = best;
    for (int32_t t = 0; t < n; ++t) {
      const double p = weights_[t];
      if (p > 0.0) last_nonzero = t;
      acc += p;
      if (r < acc) return t;
    }
    return last_nonzero;
  }

  // Candidates: top-k (all when off), sorted by logit, ties by id, so the order is total.
  // A pre-filter keeps the sort small on large vocabularies (262,144 tokens for Gemma-3):
  // it only drops tokens the cut-offs below would drop anyway. min-p keeps logits within
  // log(min_p) of the best (less a margin for rounding); top-p without top-k never reaches a
  // token 30 nats below the best, whose share of the mass is under 1e-13 each.
  float cutoff = -INFINITY;
  if (p_.top_k == 0 && p_.top_p < 1.0f) cutoff = mx - 30.0f;
  if (p_.min_p > 0.0f) cutoff = std::max(cutoff, mx + std::log(p_.min_p) - 1e-3f);
  cand_.clear();
  for (int32_t t = 0; t < n; ++t)
    if (logits[t] >= cutoff) cand_.emplace_back(logits[t], t);
  auto order = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  if (p_.top_k == 0 && p_.top_p < 1.0f && p_.min_p <= 0.0f) {
    // Top-p alone: nearly flat logits leave most of a large vocabulary in the candidates,
    // and sorting them all costs far more than the draw. The nucleus (the shortest prefix of
    // the sorted order holding top_p of the mass) is found by a weighted quickselect
    // instead, and the draw walks it in the order the selection left it: the same tokens
    // with the same probabilities as after a full sort.
    const size_t keep = select_nucleus(mx);
    double kept = 0.0;
    for (size_t i = 0; i < keep; ++i) kept += std::exp(static_cast<double>(cand_[i].first - mx));
    const double r = rng_.uniform() * kept;
    double acc = 0.0;
    for (size_t i = 0; i < keep; ++i) {
      acc += std::exp(static_cast<double>(cand_[i].first - mx));
      if (r < acc) return cand_[i].second;
    }
    return cand_[keep - 1].second;
  }
  size_t k =
      p_.top_k > 0 ? std::min<size_t>(static_cast<size_t>(p_.top_k), cand_.size()) : cand_.size();
  std::partial_sort(cand_.begin(), cand_.begin() + static_cast<std::ptrdiff_t>(k), cand_.end(),
                    order);
  cand_.resize(k);
  // Softmax over the candidates, then top-p and min-p cut-offs.
  std::vector<double> prob(k);
  double total = 0.0;
  for (size_t i = 0; i < k; ++i)
    total += prob[i] = std::exp(static_cast<double>(cand_[i].first - mx));
  size_t keep = k;
  if (p_.top_p < 1.0f) {
    double acc = 0.0;
    for (size_t i = 0; i < k; ++i) {
      acc += prob[i] / total;
      if (acc >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  if (p_.min_p > 0.0f) {
    const double floor = p_.min_p * prob[0];
    size_t i = 1;
    while (i < keep && prob[i] >= floor) ++i;
    keep = i;
  }
  double kept = 0.0;
  for (size_t i = 0; i < keep; ++i) kept += prob[i];
  const double r = rng_.uniform() * kept;
  double acc = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    acc += prob[i];
    if (r < acc) return cand_[i].second;
  }
  return cand_[keep - 1].second;
}

size_t Sampler::select_nucleus(float mx) {
  auto order = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  auto weight = [mx](const std::pair<float, int32_t>& c) {
    return std::exp(static_cast<double>(c.first - mx));
  };
  double total = 0.0;
  for (const auto& c : cand_) total += weight(c);
  const double need = static_cast<double>(p_.top_p) * total;
  // Invariant: every candidate before `lo` comes before every one in [lo, hi) in `order`,
  // holds `before` of the mass all together, and the nucleus ends inside [lo, hi).
  size_t lo = 0, hi = cand_.size();
  double before = 0.0;
  while (hi - lo > 32) {
    // Median of three as the pivot; a partition written out (not std::partition) so the
    // arrangement, and with it the draw for a seed, is the same with any standard library.
    const size_t mid = lo + (hi - lo) / 2;
    std::pair<float, int32_t> a = cand_[lo], b = cand_[mid], c = cand_[hi - 1];
    if (order(b, a)) std::swap(a, b);
    if (order(c, b)) std::swap(b, c);
    if (order(b, a)) std::swap(a, b);
    const std::pair<float, int32_t> pivot = b;
    size_t m = lo;
    double left = 0.0;
    for (size_t i = lo; i < hi; ++i) {
      if (order(cand_[i], pivot)) {
        left += weight(cand_[i]);
        std::swap(cand_[i], cand_[m++]);
      }
    }
    if (before + left >= need) {
      hi = m;  // the pivot (the median of three) is not the best: m > lo
    } else if (m > lo) {
      before += left;
      lo = m;
    } else {
      // Nothing here beats the pivot: it is the best of the range; move it first, take it.
      for (size_t i = lo; i < hi; ++i)
        if (cand_[i] == pivot) std::swap(cand_[i], cand_[lo]);
      before += weight(cand_[lo]);
      ++lo;
      if (before >= need) return lo;
    }
  }
  std::sort(cand_.begin() + static_cast<std::ptrdiff_t>(lo),
            cand_.begin() + static_cast<std::ptrdiff_t>(hi), order);
  for (size_t i = lo; i < hi; ++i) {
    before += weight(cand_[i]);
    if (before >= need) return i + 1;
  }
  return hi;  // rounding: the whole range
}

float Sampler::lse() const {
  if (!lse_valid_) {
    last_lse_ = log_sum_exp(last_);
    lse_valid_ = true;
  }
  return last_lse_;
}

float Sampler::logprob(int32_t token) const {
  if (token < 0 || static_cast<size_t>(token) >= last_.size()) return -INFINITY;
  return last_[token] - lse();
}

std::vector<std::pair<int32_t, float>> Sampler::top_logprobs(int32_t n) const {
  std::vector<std::pair<int32_t, float>> top = top_logits(last_, n);
  const float z = top.empty() ? 0.0f : lse();
  for (auto& t : top) t.second -= z;
  return top;
}

float log_sum_exp(std::span<const float> logits) {
  float mx = -INFINITY;
  for (float l : logits) mx = std::max(mx, l);
  if (!std::isfinite(mx)) return mx;
  double sum = 0.0;
  for (float l : logits) sum += std::exp(static_cast<double>(l - mx));
  return mx + static_cast<float>(std::log(sum));
}

std::vector<std::pair<int32_t, float>> top_logits(std::span<const float> logits, int32_t n) {
  std::vector<std::pair<int32_t, float>> top;
  if (n <= 0) return top;
  // A bounded selection: keep the n best (highest logit, then lowest id) seen so far.
  auto better = [](const std::pair<int32_t, float>& a, const std::pair<int32_t, float>& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  };
  for (size_t i = 0; i < logits.size(); ++i) {
    const std::pair<int32_t, float> c{static_cast<int32_t>(i), logits[i]};
    if (static_cast<int32_t>(top.size()) < n) {
      top.push_back(c);
      std::push_heap(top.begin(), top.end(), better);
    } else if (better(c, top.front())) {
      std::pop_heap(top.begin(), top.end(), better);
      top.back() = c;
      std::push_heap(top.begin(), top.end(), better);
    }
  }
  std::sort(top.begin(), top.end(), better);
  return top;
}

}  // namespace kdr::engine
