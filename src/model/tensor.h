// Tensor views into model files. Their storage types are base/dtype_registry.h's DType.
//
// A TensorView points into memory owned by the file object it came from (GgufFile,
// SafetensorsFile): it stays valid as long as that object lives.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "base/dtype_registry.h"

namespace kdr::model {

// Any problem with a model file or directory. The message always names the file and the
// key or tensor concerned.
class ModelFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Most dims a tensor may have (ggml's GGML_MAX_DIMS).
inline constexpr int kMaxDims = 4;

// A named tensor inside a mapped model file.
//
// Dims are in ggml order: ne[0] is the contiguous one (a PyTorch weight of shape
// [out, in] has ne = {in, out}). Safetensors shapes are reversed into this order so every
// loader speaks the same convention. Unused trailing dims are 1.
struct TensorView {
  std::string name;
  DType type = DType::F32;
  int n_dims = 0;
  std::array<int64_t, kMaxDims> ne = {1, 1, 1, 1};
  const uint8_t* data = nullptr;  // may be unaligned for safetensors
  size_t n_bytes = 0;

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  // Rows of ne[0] values each; quantized blocks never straddle rows.
  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  size_t row_bytes() const { return n_rows() == 0 ? 0 : n_bytes / static_cast<size_t>(n_rows()); }
  // Dims in ggml order, n_dims of them.
  std::vector<int64_t> dims() const { return {ne.begin(), ne.begin() + n_dims}; }
  // Dims in PyTorch (row-major) order.
  std::vector<int64_t> torch_shape() const {
    return {ne.rbegin() + (kMaxDims - n_dims), ne.rend()};
  }
};

// "[4096, 32000]": for error messages.
std::string format_dims(const std::vector<int64_t>& dims);

// Throws ModelFileError unless `t` has exactly the given dims (ggml order).
// `file` names the source in the message.
void check_shape(const std::string& file, const TensorView& t, const std::vector<int64_t>& dims);

}  // namespace kdr::model
