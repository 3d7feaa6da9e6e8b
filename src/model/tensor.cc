#include "model/tensor.h"

namespace kdr::model {

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
