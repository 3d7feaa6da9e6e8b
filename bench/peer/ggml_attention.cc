// ggml's CPU flash attention (ggml_flash_attn_ext) timed on the shapes of `kdr bench
// attention`, for scripts/bench peers: Llama-3-8B attention (Hq 32, Hkv 8, D 128, scale
// 1/sqrt(128)), the same thread count, K/V in f16 and, where this ggml's CPU backend takes it,
// bf16; prefill with a causal mask (ggml takes the mask as a tensor: 0 where a query may
// attend, -inf above the diagonal; its tiled kernel skips fully masked tiles). Decodes pass no
// mask (one sequence, every position attended: the cheapest way ggml runs them).
//
// This is the op test-backend-ops times for FLASH_ATTN_EXT, built the same way (CPU backend,
// ggml_backend_graph_compute), but at kdr's exact shapes, threads and masks: test-backend-ops
// perf picks its own thread count and has no causal mask.
//
// Each case: a warm-up graph run, then the median of --reps. Before timing, the output is
// checked against a double-precision reference on the same rounded K/V (every head; for the
// prefill a few query rows): a wrong layout or mask fails the run instead of timing nonsense.
//
// Built by scripts/build_llamacpp against the static ggml libraries of build-peer/b.
//   ggml_attention [--threads N] [--reps R] [--case NAME]... [--kv f16|bf16|all] [--json]
// Cases: decode-4096, decode-16384, prefill-2048, decode-32seq (32 sequences, kv lengths as
// kdr spreads them; ggml has no ragged batch, so one op per sequence, all in one graph),
// and the tiny decode-512 and prefill-64 (--case quick) for a smoke test.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"

#ifndef KDR_PEER_VERSION
#define KDR_PEER_VERSION "unknown"
#endif

namespace {

constexpr int kQHeads = 32, kKvHeads = 8, kHeadDim = 128;

struct Seq {
  int q_len, kv_len;
};
struct Case {
  std::string name;
  std::vector<Seq> seqs;
};

// The kv lengths of kdr's decode-32seq (src/cli/bench_attention.cc, decode_spread).
std::vector<Seq> decode_spread(int count, int lo, int hi) {
  std::vector<Seq> seqs;
  for (int i = 0; i < count; ++i) {
    const int k = (i * 13) % count;
    const int len = count == 1 ? lo : lo + static_cast<int>((int64_t{hi - lo} * k) / (count - 1));
    seqs.push_back({1, std::max(lo, len - k % 7)});
  }
  return seqs;
}

std::vector<Case> all_cases() {
  return {{"decode-4096", {{1, 4096}}},     {"decode-16384", {{1, 16384}}},
          {"prefill-2048", {{2048, 2048}}}, {"decode-32seq", decode_spread(32, 512, 8192)},
          {"decode-512", {{1, 512}}},       {"prefill-64", {{64, 64}}}};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// One sequence's tensors and the host copies the reference reads (K/V already rounded to
// the cache type).
struct SeqTensors {
  Seq s;
  ggml_tensor *q = nullptr, *k = nullptr, *v = nullptr, *mask = nullptr, *out = nullptr;
  std::vector<float> qh, kh, vh;
};

// Fills host values and rounds K/V through `type` so the reference sees what ggml reads.
void fill(SeqTensors& t, ggml_type type, std::mt19937& rng) {
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  t.qh.resize(size_t{kHeadDim} * t.s.q_len * kQHeads);
  for (float& x : t.qh) x = unit(rng);
  ggml_backend_tensor_set(t.q, t.qh.data(), 0, t.qh.size() * sizeof(float));
  for (auto [tensor, host] : {std::pair{t.k, &t.kh}, std::pair{t.v, &t.vh}}) {
    host->resize(size_t{kHeadDim} * t.s.kv_len * kKvHeads);
    for (float& x : *host) x = unit(rng);
    std::vector<uint16_t> raw(host->size());
    if (type == GGML_TYPE_F16) {
      ggml_fp32_to_fp16_row(host->data(), reinterpret_cast<ggml_fp16_t*>(raw.data()), raw.size());
      for (size_t i = 0; i < raw.size(); ++i)
        (*host)[i] = ggml_fp16_to_fp32(static_cast<ggml_fp16_t>(raw[i]));
    } else {
      ggml_fp32_to_bf16_row_ref(host->data(), reinterpret_cast<ggml_bf16_t*>(raw.data()),
                                raw.size());
      for (size_t i = 0; i < raw.size(); ++i) {
        const uint32_t bits = uint32_t{raw[i]} << 16;
        std::memcpy(&(*host)[i], &bits, 4);
      }
    }
    ggml_backend_tensor_set(tensor, raw.data(), 0, raw.size() * sizeof(uint16_t));
  }
  if (t.mask) {  // causal: query row i (position kv_len - q_len + i) sees kv positions <= it
    std::vector<ggml_fp16_t> m(static_cast<size_t>(t.s.kv_len) * t.s.q_len);
    const ggml_fp16_t zero = ggml_fp32_to_fp16(0.0f), ninf = ggml_fp32_to_fp16(-INFINITY);
    for (int i = 0; i < t.s.q_len; ++i)
      for (int j = 0; j < t.s.kv_len; ++j)
        m[static_cast<size_t>(i) * t.s.kv_len + j] = j <= t.s.kv_len - t.s.q_len + i ? zero : ninf;
    ggml_backend_tensor_set(t.mask, m.data(), 0, m.size() * sizeof(ggml_fp16_t));
  }
}

// Max |ggml - reference| over every head of the query rows in `rows`.
double check(const SeqTensors& t, const std::vector<int>& rows) {
  std::vector<float> out(ggml_nelements(t.out));
  ggml_backend_tensor_get(t.out, out.data(), 0, out.size() * sizeof(float));
  const double scale = 1.0 / std::sqrt(static_cast<double>(kHeadDim));
  double worst = 0;
  std::vector<double> w(t.s.kv_len);
  for (int i : rows) {
    const int end = t.mask ? t.s.kv_len - t.s.q_len + i + 1 : t.s.kv_len;
    for (int h = 0; h < kQHeads; ++h) {
      const int kvh = h / (kQHeads / kKvHeads);
      const float* q =
          &t.qh[(static_cast<size_t>(h) * t.s.q_len + i) * kHeadDim];  // q: [D, q_len, Hq]
      double mx = -INFINITY;
      for (int j = 0; j < end; ++j) {
        const float* k = &t.kh[(static_cast<size_t>(kvh) * t.s.kv_len + j) * kHeadDim];
        double dot = 0;
        for (int d = 0; d < kHeadDim; ++d) dot += double{q[d]} * k[d];
        w[j] = dot * scale;
        mx = std::max(mx, w[j]);
      }
      double sum = 0;
      for (int j = 0; j < end; ++j) sum += (w[j] = std::exp(w[j] - mx));
      const float* got =
          &out[(static_cast<size_t>(i) * kQHeads + h) * kHeadDim];  // out: [D, Hq, q_len]
      for (int d = 0; d < kHeadDim; ++d) {
        double acc = 0;
        for (int j = 0; j < end; ++j)
          acc += w[j] * t.vh[(static_cast<size_t>(kvh) * t.s.kv_len + j) * kHeadDim + d];
        worst = std::max(worst, std::fabs(acc / sum - got[d]));
      }
    }
  }
  return worst;
}

struct Outcome {
  bool supported = false;
  double ms = 0, max_abs_err = 0;
  std::vector<double> all_ms;
};

Outcome run_case(const Case& c, ggml_type type, ggml_backend_t backend, int reps) {
  Outcome o;
  const size_t n_tensors = c.seqs.size() * 5 + 8;
  ggml_init_params ip = {
      ggml_tensor_overhead() * n_tensors + ggml_graph_overhead_custom(n_tensors, false), nullptr,
      true};
  ggml_context* ctx = ggml_init(ip);
  std::vector<SeqTensors> seqs(c.seqs.size());
  ggml_cgraph* graph = ggml_new_graph_custom(ctx, n_tensors, false);
  for (size_t i = 0; i < c.seqs.size(); ++i) {
    SeqTensors& t = seqs[i];
    t.s = c.seqs[i];
    t.q = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, kHeadDim, t.s.q_len, kQHeads, 1);
    t.k = ggml_new_tensor_4d(ctx, type, kHeadDim, t.s.kv_len, kKvHeads, 1);
    t.v = ggml_new_tensor_4d(ctx, type, kHeadDim, t.s.kv_len, kKvHeads, 1);
    if (t.s.q_len > 1) t.mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, t.s.kv_len, t.s.q_len, 1, 1);
    t.out = ggml_flash_attn_ext(ctx, t.q, t.k, t.v, t.mask,
                                1.0f / std::sqrt(static_cast<float>(kHeadDim)), 0.0f, 0.0f);
    ggml_prec_set_acc(t.out, GGML_PREC_F32);
    if (!ggml_backend_supports_op(backend, t.out)) {
      ggml_free(ctx);
      return o;
    }
    ggml_build_forward_expand(graph, t.out);
  }
  o.supported = true;
  ggml_backend_buffer_t buffer = ggml_backend_alloc_ctx_tensors(ctx, backend);
  std::mt19937 rng(1234);
  for (SeqTensors& t : seqs) fill(t, type, rng);

  if (ggml_backend_graph_compute(backend, graph) != GGML_STATUS_SUCCESS) {
    std::fprintf(stderr, "ggml_backend_graph_compute failed on %s\n", c.name.c_str());
    std::exit(1);
  }
  for (const SeqTensors& t : seqs) {
    std::vector<int> rows;
    if (t.s.q_len == 1)
      rows = {0};
    else
      rows = {0, 1, t.s.q_len / 2, t.s.q_len - 1};
    // decode-32seq: every fourth sequence (the reference is slow in double on 2 cores).
    if (&t - seqs.data() > 0 && (&t - seqs.data()) % 4 != 0) continue;
    o.max_abs_err = std::max(o.max_abs_err, check(t, rows));
  }
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    ggml_backend_graph_compute(backend, graph);
    o.all_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count());
  }
  o.ms = median(o.all_ms);
  ggml_backend_buffer_free(buffer);
  ggml_free(ctx);
  return o;
}

std::string cpu_flags() {
  std::string s;
  const std::pair<const char*, int> flags[] = {{"avx2", ggml_cpu_has_avx2()},
                                               {"fma", ggml_cpu_has_fma()},
                                               {"f16c", ggml_cpu_has_f16c()},
                                               {"avx512", ggml_cpu_has_avx512()},
                                               {"avx512_vnni", ggml_cpu_has_avx512_vnni()},
                                               {"avx512_bf16", ggml_cpu_has_avx512_bf16()},
                                               {"amx_int8", ggml_cpu_has_amx_int8()}};
  for (const auto& [name, on] : flags)
    if (on) s += (s.empty() ? "" : " ") + std::string(name);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 5;
  bool json = false;
  std::string kv = "all";
  std::vector<std::string> wanted;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads")
      threads = std::atoi(next().c_str());
    else if (a == "--reps")
      reps = std::atoi(next().c_str());
    else if (a == "--case")
      wanted.push_back(next());
    else if (a == "--kv")
      kv = next();
    else if (a == "--json")
      json = true;
    else {
      std::fprintf(stderr,
                   "usage: %s [--threads N] [--reps R] [--case NAME|quick]... [--kv f16|bf16|all] "
                   "[--json]\n",
                   argv[0]);
      return 2;
    }
  }
  if (threads < 1 || reps < 1 || (kv != "f16" && kv != "bf16" && kv != "all")) {
    std::fprintf(stderr, "bad --threads, --reps or --kv\n");
    return 2;
  }
  if (wanted.empty()) wanted = {"decode-4096", "decode-16384", "prefill-2048", "decode-32seq"};
  if (wanted.size() == 1 && wanted[0] == "quick") wanted = {"decode-512", "prefill-64"};

  ggml_backend_t backend = ggml_backend_cpu_init();
  ggml_backend_cpu_set_n_threads(backend, threads);
  if (!json)
    std::printf("ggml flash attention (CPU backend, %s; ggml %s, %s), %d threads, median of %d\n",
                KDR_PEER_VERSION, ggml_version(), cpu_flags().c_str(), threads, reps);
  int failures = 0;
  for (const Case& c : all_cases()) {
    if (std::find(wanted.begin(), wanted.end(), c.name) == wanted.end()) continue;
    for (ggml_type type : {GGML_TYPE_F16, GGML_TYPE_BF16}) {
      const char* tname = type == GGML_TYPE_F16 ? "f16" : "bf16";
      if (kv != "all" && kv != tname) continue;
      const Outcome o = run_case(c, type, backend, reps);
      const bool causal = c.seqs[0].q_len > 1;
      // f16 and bf16 K/V round q.k through the cache type: 2e-2 is far above what they cause
      // and far below what a wrong layout or mask gives.
      const bool ok = !o.supported || o.max_abs_err <= 2e-2;
      failures += !ok;
      if (json) {
        std::string times;
        for (double t : o.all_ms) times += (times.empty() ? "" : ",") + std::to_string(t);
        std::printf(
            "{\"peer\": \"ggml\", \"case\": \"%s\", \"kv_dtype\": \"%s\", \"supported\": %s, "
            "\"threads\": %d, \"reps\": %d, \"ms\": %.6f, \"all_ms\": [%s], \"mask\": \"%s\", "
            "\"num_seqs\": %zu, \"max_abs_err\": %.3g, \"within_tolerance\": %s, "
            "\"op\": \"ggml_flash_attn_ext\", \"ggml\": \"%s %s\", \"ggml_cpu\": \"%s\"}\n",
            c.name.c_str(), tname, o.supported ? "true" : "false", threads, reps, o.ms,
            times.c_str(), causal ? "causal" : "none", c.seqs.size(), o.max_abs_err,
            ok ? "true" : "false", KDR_PEER_VERSION, ggml_version(), cpu_flags().c_str());
      } else if (!o.supported) {
        std::printf("%-14s %-5s not supported by this ggml's CPU backend\n", c.name.c_str(), tname);
      } else {
        std::printf("%-14s %-5s %10.3f ms  mask %-6s  max_err %.2e%s\n", c.name.c_str(), tname,
                    o.ms, causal ? "causal" : "none", o.max_abs_err, ok ? "" : "  FAIL");
      }
      std::fflush(stdout);
    }
  }
  ggml_backend_free(backend);
  if (failures)
    std::fprintf(stderr, "ggml_attention: %d case(s) disagree with the reference\n", failures);
  return failures ? 1 : 0;
}
