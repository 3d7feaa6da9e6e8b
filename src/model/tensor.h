// Tensor views into model files, and the storage types those files use.
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

namespace kdr::model {

// Any problem with a model file or directory. The message always names the file and the
// key or tensor concerned.
class ModelFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Storage type of a tensor. Values are ggml's type ids (as written in GGUF files); types
// ggml does not have (safetensors' U8) use ids >= 1000 so they never collide.
enum class TensorType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
  U8 = 1000,
};

// Layout of one type: `block_size` consecutive values along ne[0] are stored in
// `block_bytes` bytes (1 and sizeof(value) for the plain types).
struct TypeTraits {
  TensorType type;
  const char* name;  // ggml's spelling: "F32", "Q4_K", ...
  int block_size;
  int block_bytes;
};

// Traits of a ggml/GGUF type id, or nullptr when this engine cannot load that type.
const TypeTraits* find_type_traits(uint32_t type_id);
// Traits of a supported type (never nullptr).
const TypeTraits& type_traits(TensorType type);
inline const char* type_name(TensorType type) { return type_traits(type).name; }

// Most dims a tensor may have (ggml's GGML_MAX_DIMS).
inline constexpr int kMaxDims = 4;

// A named tensor inside a mapped model file.
//
// Dims are in ggml order: ne[0] is the contiguous one (a PyTorch weight of shape
// [out, in] has ne = {in, out}). Safetensors shapes are reversed into this order so every
// loader speaks the same convention. Unused trailing dims are 1.
struct TensorView {
  std::string name;
  TensorType type = TensorType::F32;
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
