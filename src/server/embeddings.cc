#include "server/embeddings.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/base64.h"
#include "model/embedder.h"
#include "server/openai_protocol.h"

namespace kdr::server {
namespace {

using nlohmann::json;

// A list of token ids, each in [0, vocab_size); `param` names it in errors.
std::vector<int32_t> token_list(const json& items, int32_t vocab_size, const std::string& param) {
  if (items.empty())
    throw bad_request(param, "'" + param + "' must not be an empty list of tokens");
  std::vector<int32_t> ids;
  ids.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const json& v = items[i];
    const std::string at = param + "[" + std::to_string(i) + "]";
    if (!v.is_number_integer())
      throw bad_request(at, "'" + at + "' must be a token id (an integer), got " + v.dump());
    const int64_t id = v.get<int64_t>();
    if (id < 0 || id >= vocab_size)
      throw bad_request(at, "'" + at + "' is token id " + std::to_string(id) +
                                ", outside the vocabulary of " + std::to_string(vocab_size));
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

}  // namespace

EmbeddingRequest parse_embedding_request(std::string_view text, const std::string& model_id,
                                         int32_t vocab_size) {
  const json body = parse_json_object(text);
  if (const auto m = body.find("model"); m != body.end() && !m->is_null()) {
    if (!m->is_string()) throw bad_request("model", "'model' must be a string");
    // "unknown": what sglang-router forwards for a request that named no model.
    if (m->get<std::string>() != model_id && m->get<std::string>() != "unknown")
      throw ApiError(404,
                     "model '" + m->get<std::string>() +
                         "' does not exist; this server's embedding model is '" + model_id + "'",
                     "model", "model_not_found");
  }
  if (const auto d = body.find("dimensions"); d != body.end() && !d->is_null())
    throw bad_request("dimensions",
                      "'dimensions' is not supported: model '" + model_id +
                          "' has a fixed number of dimensions; leave 'dimensions' out");
  EmbeddingRequest req;
  if (const auto f = body.find("encoding_format"); f != body.end() && !f->is_null()) {
    if (!f->is_string() || (*f != "float" && *f != "base64"))
      throw bad_request("encoding_format",
                        "'encoding_format' must be \"float\" or \"base64\", got " + f->dump());
    req.base64 = *f == "base64";
  }
  const auto in = body.find("input");
  if (in == body.end() || in->is_null())
    throw bad_request("input", "'input' is required: a string, a list of strings, or token ids");
  if (in->is_string()) {
    if (in->get_ref<const std::string&>().empty())
      throw bad_request("input", "'input' must not be an empty string");
    req.texts.push_back(in->get<std::string>());
    return req;
  }
  if (!in->is_array())
    throw bad_request("input", "'input' must be a string, a list of strings, or token ids, got " +
                                   std::string(in->type_name()));
  if (in->empty()) throw bad_request("input", "'input' must not be an empty list");
  if ((*in)[0].is_number_integer()) {  // one input given as token ids
    req.token_inputs.push_back(token_list(*in, vocab_size, "input"));
    return req;
  }
  if (in->size() > kMaxEmbeddingInputs)
    throw bad_request("input", "'input' has " + std::to_string(in->size()) + " items, at most " +
                                   std::to_string(kMaxEmbeddingInputs) + " are allowed");
  const bool as_tokens = (*in)[0].is_array();
  for (size_t i = 0; i < in->size(); ++i) {
    const json& item = (*in)[i];
    const std::string at = "input[" + std::to_string(i) + "]";
    if (as_tokens) {
      if (!item.is_array())
        throw bad_request(at, "'" + at + "' must be a list of token ids like input[0], got " +
                                  std::string(item.type_name()));
      req.token_inputs.push_back(token_list(item, vocab_size, at));
    } else {
      if (!item.is_string())
        throw bad_request(at,
                          "'" + at + "' must be a string, got " + std::string(item.type_name()));
      if (item.get_ref<const std::string&>().empty())
        throw bad_request(at, "'" + at + "' must not be an empty string");
      req.texts.push_back(item.get<std::string>());
    }
  }
  return req;
}

std::string float_array_json(std::span<const float> values) {
  std::string out = "[";
  char buf[32];
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    const float v = std::isfinite(values[i]) ? values[i] : 0.0f;  // JSON has no NaN
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
  }
  out += ']';
  return out;
}

std::string embedding_response(const std::vector<std::vector<float>>& vectors, bool base64,
                               const std::string& model_id, int64_t prompt_tokens) {
  std::string out = R"({"object":"list","data":[)";
  for (size_t i = 0; i < vectors.size(); ++i) {
    if (i) out += ',';
    out += R"({"object":"embedding","index":)" + std::to_string(i) + R"(,"embedding":)";
    if (base64) {
      // x86 and ARM are little-endian: the floats' bytes as they lie in memory.
      std::string bytes(vectors[i].size() * sizeof(float), '\0');
      std::memcpy(bytes.data(), vectors[i].data(), bytes.size());
      out += '"' + base64_encode(bytes) + '"';
    } else {
      out += float_array_json(vectors[i]);
    }
    out += '}';
  }
  out += R"(],"model":)" + dump_json(model_id) + R"(,"usage":{"prompt_tokens":)" +
         std::to_string(prompt_tokens) + R"(,"total_tokens":)" + std::to_string(prompt_tokens) +
         "}}";
  return out;
}

std::string handle_embeddings(std::string_view body, const model::Embedder* embedder) {
  if (!embedder)
    throw ApiError(404,
                   "this server serves no embedding model: start kdr serve with "
                   "--embedding-model DIR (or install the default with scripts/setup)",
                   "model", "model_not_found");
  EmbeddingRequest req =
      parse_embedding_request(body, embedder->name(), embedder->model().config().vocab_size);
  std::vector<std::vector<int32_t>> inputs = std::move(req.token_inputs);
  for (const std::string& t : req.texts) inputs.push_back(embedder->tokenize(t));
  int64_t tokens = 0;
  for (const auto& ids : inputs)
    tokens += std::min<int64_t>(static_cast<int64_t>(ids.size()), embedder->max_tokens());
  return embedding_response(embedder->embed_tokens(inputs), req.base64, embedder->name(), tokens);
}

void add_embedding_model(nlohmann::json& models, const model::Embedder* embedder, int64_t created) {
  if (!embedder) return;
  models["data"].push_back({{"id", embedder->name()},
                            {"object", "model"},
                            {"created", created},
                            {"owned_by", "kdr"},
                            {"max_model_len", embedder->max_tokens()}});
}

}  // namespace kdr::server
