#include "hka/knowledge/retrieval.h"

#include <bit>
#include <cmath>
#include <cstdint>

namespace kdr::hka {

namespace {

// Texts per embedder call: large enough to batch, small enough to bound one call's memory.
constexpr size_t kEmbedBatch = 32;

}  // namespace

std::vector<std::pair<size_t, double>> rank_by_cosine(
    const std::vector<float>& query, const std::vector<std::vector<float>>& vectors, size_t depth) {
  std::vector<std::pair<size_t, double>> ranked;
  double query_norm = 0;
  for (float q : query) query_norm += static_cast<double>(q) * q;
  if (query.empty() || query_norm == 0) return ranked;
  for (size_t i = 0; i < vectors.size(); ++i) {
    const std::vector<float>& v = vectors[i];
    if (v.size() != query.size()) continue;
    double dot = 0, norm = 0;
    for (size_t d = 0; d < v.size(); ++d) {
      dot += static_cast<double>(v[d]) * query[d];
      norm += static_cast<double>(v[d]) * v[d];
    }
    if (norm == 0) continue;
    ranked.emplace_back(i, dot / std::sqrt(norm * query_norm));
  }
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  if (ranked.size() > depth) ranked.resize(depth);
  return ranked;
}

std::vector<std::vector<float>> embed_texts(const TextEmbedder& embedder,
                                            std::span<const std::string> texts) {
  const std::string who = "embedding model '" + embedder.model + "'";
  if (!embedder) throw EmbeddingError(who + ": no embedder");
  std::vector<std::vector<float>> out;
  out.reserve(texts.size());
  for (size_t begin = 0; begin < texts.size(); begin += kEmbedBatch) {
    const std::span<const std::string> batch =
        texts.subspan(begin, std::min(kEmbedBatch, texts.size() - begin));
    std::vector<std::vector<float>> vectors;
    try {
      vectors = embedder.embed(batch);
    } catch (const std::exception& e) {
      throw EmbeddingError(who + " failed: " + e.what());
    }
    if (vectors.size() != batch.size()) {
      throw EmbeddingError(who + " returned " + std::to_string(vectors.size()) + " vectors for " +
                           std::to_string(batch.size()) + " texts");
    }
    for (std::vector<float>& v : vectors) {
      const size_t dim = out.empty() ? v.size() : out.front().size();
      if (v.empty() || v.size() != dim) {
        throw EmbeddingError(who + " returned a vector of " + std::to_string(v.size()) +
                             " dimensions where " + std::to_string(dim) + " were expected");
      }
      bool nonzero = false;
      for (float x : v) {
        if (!std::isfinite(x)) throw EmbeddingError(who + " returned a non-finite value");
        nonzero = nonzero || x != 0;
      }
      if (!nonzero) throw EmbeddingError(who + " returned an all-zero vector");
      out.push_back(std::move(v));
    }
  }
  return out;
}

std::string vector_to_blob(const std::vector<float>& vector) {
  std::string blob;
  blob.reserve(vector.size() * 4);
  for (float x : vector) {
    const auto bits = std::bit_cast<uint32_t>(x);
    for (int b = 0; b < 4; ++b) blob += static_cast<char>((bits >> (8 * b)) & 0xFF);
  }
  return blob;
}

std::optional<std::vector<float>> vector_from_blob(std::string_view blob) {
  if (blob.empty() || blob.size() % 4 != 0) return std::nullopt;
  std::vector<float> vector(blob.size() / 4);
  for (size_t i = 0; i < vector.size(); ++i) {
    uint32_t bits = 0;
    for (int b = 0; b < 4; ++b) {
      bits |= static_cast<uint32_t>(static_cast<unsigned char>(blob[4 * i + b])) << (8 * b);
    }
    vector[i] = std::bit_cast<float>(bits);
    if (!std::isfinite(vector[i])) return std::nullopt;
  }
  return vector;
}

bool has_search_terms(std::string_view text) {
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) {
      return true;
    }
  }
  return false;
}

}  // namespace kdr::hka
