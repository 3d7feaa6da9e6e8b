// The research agent's embedding model: kdr::model::Embedder (a sentence-transformers folder
// such as all-MiniLM-L6-v2) wrapped as the knowledge stores' TextEmbedder (retrieval.h), so
// that the stores never depend on the model runtime.
#pragma once

#include <cstdint>
#include <string>

#include "hka/knowledge/retrieval.h"

namespace kdr::hka {

// Loads the model in `dir` on its own thread pool (`threads`, 0: all cores); the returned
// embedder owns both. Its `model` is the model's name. Throws std::runtime_error naming the
// folder and what is wrong with it.
TextEmbedder load_text_embedder(const std::string& dir, int32_t threads = 0);

// What `--embedding-model` asks for: "none" is no embedder (BM25 alone); empty is the default
// model (models/embedding.path) when it is installed, else no embedder, with `note` saying so
// in one line; anything else is a folder, loaded (errors propagate). `note` is also set to a
// line naming the model loaded.
TextEmbedder choose_text_embedder(const std::string& option, int32_t threads, std::string& note);

}  // namespace kdr::hka
