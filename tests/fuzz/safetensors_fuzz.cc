// libFuzzer harness for the safetensors parser: any bytes must either parse into tensors
// that tile the data buffer exactly, or fail with a ModelFileError.
//
// Build (clang): configure with CC=clang-14 CXX=clang++-14, target safetensors_fuzz. Run:
//   ./safetensors_fuzz -max_len=4096 -max_total_time=60 CORPUS_DIR
#include <cstdint>
#include <cstring>

#include "model/safetensors.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kdr::model;
  try {
    SafetensorsFile f = SafetensorsFile::from_memory(data, size, "fuzz");
    uint64_t header_len;
    std::memcpy(&header_len, data, 8);
    size_t covered = 0;
    uint64_t sum = 0;
    for (const TensorView& t : f.tensors()) {
      check(t.data >= data + 8 + header_len &&
            t.n_bytes <= static_cast<size_t>(data + size - t.data));
      check(t.n_bytes == static_cast<size_t>(t.n_elements()) * dtype_traits(t.type).block_bytes);
      if (t.n_bytes) sum += t.data[0] + t.data[t.n_bytes - 1];
      check(f.find_tensor(t.name) == &t);
      covered += t.n_bytes;
    }
    check(covered == size - 8 - header_len);
    volatile uint64_t sink = sum;
    (void)sink;
  } catch (const ModelFileError& e) {
    check(std::strncmp(e.what(), "file fuzz: ", 11) == 0);
  }
  return 0;
}
