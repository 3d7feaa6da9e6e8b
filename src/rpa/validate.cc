// Checks every requirement of the contract before anything is written, so that nothing
// that passes can read or write outside the pools. Messages name the sequence and value.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "rpa/rpa.h"

namespace rpa {
namespace {

[[noreturn]] void fail(const std::string& what) { throw Error("rpa: " + what); }

std::string seq_prefix(int32_t i) { return "sequence " + std::to_string(i) + ": "; }

void validate_shape(const CacheShape& s) {
  if (s.num_pages <= 0) fail("cache num_pages must be > 0, got " + std::to_string(s.num_pages));
  if (s.num_kv_heads <= 0)
    fail("cache num_kv_heads must be > 0, got " + std::to_string(s.num_kv_heads));
  if (s.page_size < 1 || s.page_size > 256)
    fail("page_size must be in 1..256, got " + std::to_string(s.page_size));
  if (s.head_dim < 8 || s.head_dim > 256 || s.head_dim % 8 != 0)
    fail("head_dim must be a multiple of 8 in 8..256, got " + std::to_string(s.head_dim));
  const auto d = static_cast<int32_t>(s.dtype);
  if (d < 0 || d > static_cast<int32_t>(KvDType::kFp8E4M3))
    fail("unknown kv dtype " + std::to_string(d));
  // Keep every element offset representable: pools up to 2^62 bytes.
  const double elems = static_cast<double>(s.num_pages) * s.num_kv_heads * s.page_size * s.head_dim;
  if (elems > 4.0e18) fail("cache pool too large");
}

void validate_params(const CacheShape& s, const AttentionParams& p) {
  if (p.num_q_heads <= 0 || p.num_q_heads % s.num_kv_heads != 0)
    fail("num_q_heads " + std::to_string(p.num_q_heads) +
         " must be a positive multiple of num_kv_heads " + std::to_string(s.num_kv_heads));
  if (!std::isfinite(p.sm_scale)) fail("sm_scale must be finite");
  if (p.sliding_window < 0)
    fail("sliding_window must be >= 0 (0 = none), got " + std::to_string(p.sliding_window));
  if (!(p.soft_cap >= 0.0f) || !std::isfinite(p.soft_cap))
    fail("soft_cap must be finite and >= 0 (0 = none), got " + std::to_string(p.soft_cap));
  if (p.sinks) {
    for (int32_t h = 0; h < p.num_q_heads; ++h)
      if (std::isnan(p.sinks[h])) fail("sink of query head " + std::to_string(h) + " is NaN");
  }
}

}  // namespace

void validate(const RaggedBatch& b, const CacheShape& s, const AttentionParams& p) {
  validate_shape(s);
  validate_params(s, p);
  const int32_t n = b.num_seqs;
  if (n < 0) fail("num_seqs must be >= 0, got " + std::to_string(n));
  if (b.num_tokens < 0) fail("num_tokens must be >= 0, got " + std::to_string(b.num_tokens));
  if (!b.cu_q_lens) fail("cu_q_lens is null");
  if (n > 0 && (!b.kv_lens || !b.page_indices)) fail("kv_lens or page_indices is null");
  if (n > 0 && b.pages_per_seq <= 0)
    fail("pages_per_seq must be > 0, got " + std::to_string(b.pages_per_seq));

  const int32_t d0 = b.distribution[0], d1 = b.distribution[1], d2 = b.distribution[2];
  if (!(0 <= d0 && d0 <= d1 && d1 <= d2 && d2 == n))
    fail("distribution (" + std::to_string(d0) + ", " + std::to_string(d1) + ", " +
         std::to_string(d2) +
         ") must satisfy 0 <= decode_end <= prefill_end <= num_seqs = " + std::to_string(n));
  if (b.cu_q_lens[0] != 0) fail("cu_q_lens[0] must be 0, got " + std::to_string(b.cu_q_lens[0]));

  // Pages that receive new tokens must not be read or written by anything else in the call.
  std::vector<uint8_t> uses;
  bool any_write = false;
  for (int32_t i = 0; i < n; ++i) {
    const int64_t q_len = static_cast<int64_t>(b.cu_q_lens[i + 1]) - b.cu_q_lens[i];
    const int64_t kv_len = b.kv_lens[i];
    if (b.cu_q_lens[i + 1] < b.cu_q_lens[i])
      fail("cu_q_lens decreases at sequence " + std::to_string(i) + ": " +
           std::to_string(b.cu_q_lens[i]) + " then " + std::to_string(b.cu_q_lens[i + 1]));
    if (b.cu_q_lens[i + 1] > b.num_tokens)
      fail(seq_prefix(i) + "cu_q_lens[" + std::to_string(i + 1) +
           "] = " + std::to_string(b.cu_q_lens[i + 1]) + " exceeds num_tokens " +
           std::to_string(b.num_tokens));
    if (q_len <= 0) fail(seq_prefix(i) + "q_len must be > 0, got " + std::to_string(q_len));
    if (kv_len < q_len)
      fail(seq_prefix(i) + "kv_len " + std::to_string(kv_len) + " < q_len " +
           std::to_string(q_len));
    if (i < d0 && q_len != 1)
      fail(seq_prefix(i) + "in the decode range [0, " + std::to_string(d0) + ") but q_len is " +
           std::to_string(q_len));
    const int64_t pages_needed = (kv_len + s.page_size - 1) / s.page_size;
    if (pages_needed > b.pages_per_seq)
      fail(seq_prefix(i) + "kv_len " + std::to_string(kv_len) + " needs " +
           std::to_string(pages_needed) + " pages but pages_per_seq is " +
           std::to_string(b.pages_per_seq));
    const int32_t* row = b.page_indices + static_cast<int64_t>(i) * b.pages_per_seq;
    for (int64_t j = 0; j < pages_needed; ++j) {
      if (row[j] < 0 || row[j] >= s.num_pages)
        fail(seq_prefix(i) + "page_indices[" + std::to_string(i) + "][" + std::to_string(j) +
             "] = " + std::to_string(row[j]) + " is outside the pool of " +
             std::to_string(s.num_pages) + " pages");
    }
    any_write = any_write || q_len > 0;
  }
  if (b.cu_q_lens[n] != b.num_tokens)
    fail("cu_q_lens[num_seqs] = " + std::to_string(b.cu_q_lens[n]) + " does not match num_tokens " +
         std::to_string(b.num_tokens));
  if (!any_write) return;

  uses.assign(static_cast<size_t>(s.num_pages), 0);
  for (int32_t i = 0; i < n; ++i) {
    const int64_t pages_needed =
        (static_cast<int64_t>(b.kv_lens[i]) + s.page_size - 1) / s.page_size;
    const int32_t* row = b.page_indices + static_cast<int64_t>(i) * b.pages_per_seq;
    for (int64_t j = 0; j < pages_needed; ++j) {
      uint8_t& u = uses[row[j]];
      if (u < 255) ++u;
    }
  }
  for (int32_t i = 0; i < n; ++i) {
    const int64_t q_len = static_cast<int64_t>(b.cu_q_lens[i + 1]) - b.cu_q_lens[i];
    const int64_t kv_len = b.kv_lens[i];
    const int32_t* row = b.page_indices + static_cast<int64_t>(i) * b.pages_per_seq;
    for (int64_t j = (kv_len - q_len) / s.page_size; j * s.page_size < kv_len; ++j) {
      if (uses[row[j]] > 1)
        fail(seq_prefix(i) + "page " + std::to_string(row[j]) + " (block " + std::to_string(j) +
             ") receives new tokens but is also mapped elsewhere in the batch");
    }
  }
}

}  // namespace rpa
