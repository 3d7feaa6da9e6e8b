// POST /v1/embeddings, OpenAI's embeddings API over a model::Embedder: the request parsed
// and validated (every refusal an ApiError naming the field), the vectors computed, and the
// response body written ("float" lists, or "base64": little-endian f32 bytes, as OpenAI).
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kdr::model {
class Embedder;
}

namespace kdr::server {

// Inputs one request may carry (OpenAI's limit).
inline constexpr size_t kMaxEmbeddingInputs = 2048;

struct EmbeddingRequest {
  // "input" as text (a string or a list of strings), or as token ids (a list of ids, or a
  // list of such lists); exactly one of the two is filled.
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> token_inputs;
  bool base64 = false;  // encoding_format "base64"
};

// Throws ApiError: 400 naming the field (input, input[i], encoding_format, dimensions, ...),
// 404 when "model" is not `model_id`. Token ids must be below `vocab_size`.
EmbeddingRequest parse_embedding_request(std::string_view body, const std::string& model_id,
                                         int32_t vocab_size);

// {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": ...}],
//  "model": ..., "usage": {"prompt_tokens": n, "total_tokens": n}}
std::string embedding_response(const std::vector<std::vector<float>>& vectors, bool base64,
                               const std::string& model_id, int64_t prompt_tokens);

// "[0.5,-0.25]": each float in the shortest form that reads back to the same float.
std::string float_array_json(std::span<const float> values);

// Appends the embedding model (when one is served) to a GET /v1/models answer.
void add_embedding_model(nlohmann::json& models, const model::Embedder* embedder, int64_t created);

// The whole route: parse, embed (on the calling thread; the Embedder serialises its forward
// passes), answer. A null embedder (none served) is a 404 that says how to serve one.
std::string handle_embeddings(std::string_view body, const model::Embedder* embedder);

}  // namespace kdr::server
