// Hybrid retrieval for the knowledge stores: a BM25 ranking (FTS5) and a ranking by the
// cosine of text embeddings, fused by reciprocal rank fusion (RRF).
//
// The stores reach the embedding model only through TextEmbedder, so the knowledge layer does
// not depend on the model runtime: the pipeline wraps kdr::model::Embedder in one, tests use
// a deterministic fake. A store without an embedder ranks by BM25 alone.
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kdr::hka {

// One vector per text, in order, all of one dimension.
using EmbedFn = std::function<std::vector<std::vector<float>>(std::span<const std::string>)>;

struct TextEmbedder {
  // Stored beside every vector: vectors computed by a model of another name are recomputed.
  std::string model;
  EmbedFn embed;
  explicit operator bool() const { return static_cast<bool>(embed); }
};

// The embedder failed or answered badly (wrong count, mixed dimensions, non-finite values).
// The stores rethrow it as their own error type.
class EmbeddingError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The usual RRF constant: a document's fused score is the sum over rankings of 1/(60 + rank).
inline constexpr double kRrfK = 60.0;
// How many candidates each ranking contributes before fusion.
inline constexpr int kFusionDepth = 50;

template <class Key>
struct FusedHit {
  Key key;
  double score = 0;
  std::vector<int> ranks;  // 1-based rank in each input ranking; 0 where absent
};

// Reciprocal rank fusion: score(key) = sum over rankings holding it of 1 / (k + rank), rank
// 1-based. Best first; equal scores keep the order in which keys first appear reading the
// rankings in turn (so ties favour the first ranking). A key repeated within one ranking
// counts at its first place only.
template <class Key>
std::vector<FusedHit<Key>> fuse_rankings(const std::vector<std::vector<Key>>& rankings,
                                         double k = kRrfK) {
  std::vector<FusedHit<Key>> fused;
  std::map<Key, size_t> index;
  for (size_t r = 0; r < rankings.size(); ++r) {
    for (size_t i = 0; i < rankings[r].size(); ++i) {
      auto [it, added] = index.try_emplace(rankings[r][i], fused.size());
      if (added) fused.push_back({rankings[r][i], 0.0, std::vector<int>(rankings.size(), 0)});
      FusedHit<Key>& hit = fused[it->second];
      if (hit.ranks[r] != 0) continue;
      hit.ranks[r] = static_cast<int>(i) + 1;
      hit.score += 1.0 / (k + static_cast<double>(i + 1));
    }
  }
  std::stable_sort(fused.begin(), fused.end(), [](const FusedHit<Key>& a, const FusedHit<Key>& b) {
    return a.score > b.score;
  });
  return fused;
}

// Indexes into `vectors` by cosine similarity to `query`, best first, at most `depth`; equal
// similarities keep index order. Vectors of another dimension or of zero norm are skipped.
std::vector<std::pair<size_t, double>> rank_by_cosine(
    const std::vector<float>& query, const std::vector<std::vector<float>>& vectors, size_t depth);

// Calls the embedder in batches and checks its answer: one vector per text, one dimension,
// finite values, not all zero. Throws EmbeddingError naming the model otherwise (and when
// the embedder itself throws).
std::vector<std::vector<float>> embed_texts(const TextEmbedder& embedder,
                                            std::span<const std::string> texts);

// A vector as stored in SQLite: little-endian float32, 4 bytes per dimension.
std::string vector_to_blob(const std::vector<float>& vector);
// nullopt for a blob that is empty, not a whole number of floats, or holds a non-finite value.
std::optional<std::vector<float>> vector_from_blob(std::string_view blob);

// Whether free text has anything to search for: a letter, a digit or a non-ASCII byte.
bool has_search_terms(std::string_view text);

}  // namespace kdr::hka
