// libFuzzer harness for the GGUF parser: any bytes must either parse into a file whose
// tensors and strings lie inside the input, or fail with a ModelFileError.
//
// Build (clang): configure with CC=clang-14 CXX=clang++-14, target gguf_fuzz. Run:
//   ./gguf_fuzz -max_len=4096 -max_total_time=60 CORPUS_DIR
// A good seed corpus is any small GGUF (GgufWriter output, or the first KiB of a real one).
#include <cstdint>
#include <cstring>

#include "model/gguf.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kdr::model;
  try {
    GgufFile g = GgufFile::from_memory(data, size, "fuzz");
    const uint8_t* end = data + size;
    uint64_t sum = 0;
    for (const TensorView& t : g.tensors()) {
      check(t.data >= data && t.n_bytes <= static_cast<size_t>(end - t.data));
      check(static_cast<size_t>(t.data - data) % g.alignment() == 0);
      const kdr::DTypeTraits& tr = dtype_traits(t.type);
      check(t.ne[0] % tr.block_elems == 0);
      check(t.n_bytes == static_cast<size_t>(t.n_elements() / tr.block_elems * tr.block_bytes));
      if (t.n_bytes) sum += t.data[0] + t.data[t.n_bytes - 1];  // ASan checks both ends
      check(g.find_tensor(t.name) == &t);
    }
    for (const GgufKeyValue& kv : g.metadata()) {
      const GgufValue& v = kv.value;
      if (v.type == GgufType::STRING) {
        check(reinterpret_cast<const uint8_t*>(v.str.data()) >= data);
        if (!v.str.empty()) sum += static_cast<uint8_t>(v.str.back());
      } else if (v.type == GgufType::ARRAY && v.elem_type == GgufType::STRING) {
        for (std::string_view s : g.get_string_array(kv.key))
          if (!s.empty()) sum += static_cast<uint8_t>(s.back());
      } else if (v.type == GgufType::ARRAY && v.elem_type == GgufType::F32) {
        for (float x : g.get_array<float>(kv.key)) sum += x > 0;
      } else if (v.type == GgufType::U32) {
        sum += g.get_u32(kv.key);
      }
    }
    volatile uint64_t sink = sum;
    (void)sink;
  } catch (const ModelFileError& e) {
    check(std::strncmp(e.what(), "file fuzz: ", 11) == 0);
  }
  return 0;
}
