#include "model/tensor.h"

namespace kdr::model {
namespace {

// Block layouts as ggml defines them (ggml-common.h): bytes per block of values.
constexpr TypeTraits kTypes[] = {
    {TensorType::F32, "F32", 1, 4},       {TensorType::F16, "F16", 1, 2},
    {TensorType::Q4_0, "Q4_0", 32, 18},   {TensorType::Q4_1, "Q4_1", 32, 20},
    {TensorType::Q5_0, "Q5_0", 32, 22},   {TensorType::Q5_1, "Q5_1", 32, 24},
    {TensorType::Q8_0, "Q8_0", 32, 34},   {TensorType::Q8_1, "Q8_1", 32, 36},
    {TensorType::Q2_K, "Q2_K", 256, 84},  {TensorType::Q3_K, "Q3_K", 256, 110},
    {TensorType::Q4_K, "Q4_K", 256, 144}, {TensorType::Q5_K, "Q5_K", 256, 176},
    {TensorType::Q6_K, "Q6_K", 256, 210}, {TensorType::Q8_K, "Q8_K", 256, 292},
    {TensorType::I8, "I8", 1, 1},         {TensorType::I16, "I16", 1, 2},
    {TensorType::I32, "I32", 1, 4},       {TensorType::I64, "I64", 1, 8},
    {TensorType::F64, "F64", 1, 8},       {TensorType::BF16, "BF16", 1, 2},
    {TensorType::U8, "U8", 1, 1},
};

}  // namespace

const TypeTraits* find_type_traits(uint32_t type_id) {
  for (const TypeTraits& t : kTypes)
    if (static_cast<uint32_t>(t.type) == type_id) return &t;
  return nullptr;
}

const TypeTraits& type_traits(TensorType type) {
  const TypeTraits* t = find_type_traits(static_cast<uint32_t>(type));
  if (!t)
    throw std::logic_error("unknown TensorType " + std::to_string(static_cast<uint32_t>(type)));
  return *t;
}

std::string format_dims(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(dims[i]);
  }
  return s + "]";
}

void check_shape(const std::string& file, const TensorView& t, const std::vector<int64_t>& dims) {
  if (t.dims() == dims) return;
  throw ModelFileError("file " + file + ": tensor " + t.name + ": expected shape " +
                       format_dims(dims) + ", found " + format_dims(t.dims()) +
                       " (ggml order, ne[0] contiguous)");
}

}  // namespace kdr::model
