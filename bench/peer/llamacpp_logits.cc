// Per-position reference results from llama.cpp itself, for scripts/check_real_model.py
// --reference llamacpp: reads token ids (one per line) and a window length, scores each window
// [bos] + ids[start, start + window) with every logit row, and prints one line per position:
// "target top1 nll". Built against llama.cpp's static libraries by bench/peer/build.sh.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "llama.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s MODEL.gguf TOKENS.txt WINDOW THREADS\n", argv[0]);
    return 2;
  }
  const int window = std::atoi(argv[3]);
  std::vector<llama_token> ids;
  if (FILE* f = std::fopen(argv[2], "r")) {
    int t;
    while (std::fscanf(f, "%d", &t) == 1) ids.push_back(t);
    std::fclose(f);
  } else {
    std::fprintf(stderr, "cannot read %s\n", argv[2]);
    return 1;
  }
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) return 1;
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = window + 8;
  cp.n_batch = window + 8;
  cp.n_ubatch = window + 8;
  cp.n_threads = cp.n_threads_batch = std::atoi(argv[4]);
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) return 1;
  const llama_vocab* vocab = llama_model_get_vocab(model);
  const int n_vocab = llama_vocab_n_tokens(vocab);
  const llama_token bos = llama_vocab_bos(vocab);
  for (size_t start = 0; start < ids.size(); start += window) {
    std::vector<llama_token> w{bos};
    for (size_t i = start; i < ids.size() && i < start + window; ++i) w.push_back(ids[i]);
    if (w.size() < 3) break;
    llama_memory_clear(llama_get_memory(ctx), true);
    llama_batch b = llama_batch_init(static_cast<int32_t>(w.size()), 0, 1);
    b.n_tokens = static_cast<int32_t>(w.size());
    for (int i = 0; i < b.n_tokens; ++i) {
      b.token[i] = w[i];
      b.pos[i] = i;
      b.n_seq_id[i] = 1;
      b.seq_id[i][0] = 0;
      b.logits[i] = 1;
    }
    if (llama_decode(ctx, b) != 0) {
      std::fprintf(stderr, "llama_decode failed\n");
      return 1;
    }
    llama_batch_free(b);
    for (size_t r = 1; r + 1 < w.size(); ++r) {
      const float* row = llama_get_logits_ith(ctx, static_cast<int32_t>(r));
      int best = 0;
      double mx = row[0];
      for (int v = 1; v < n_vocab; ++v)
        if (row[v] > mx) mx = row[best = v];
      double sum = 0.0;
      for (int v = 0; v < n_vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
      const int target = w[r + 1];
      std::printf("%d %d %.9g\n", target, best, mx + std::log(sum) - row[target]);
    }
  }
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
