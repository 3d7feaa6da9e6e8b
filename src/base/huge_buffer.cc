#include "base/huge_buffer.h"

#include <sys/mman.h>

#include <new>

namespace kdr {

namespace {
constexpr size_t kHuge = size_t{2} << 20;
}

void HugeFree::operator()(void* p) const {
  if (p) munmap(p, bytes);
}

HugeBuffer alloc_huge(size_t bytes) {
  if (bytes == 0) bytes = 1;
  const size_t size = (bytes + kHuge - 1) / kHuge * kHuge;
  // Map one huge page more, then trim to a 2 MiB aligned range (anonymous maps are zeroed).
  void* raw =
      mmap(nullptr, size + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHuge - 1) / kHuge * kHuge;
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t end = start + size + kHuge;
  if (end > aligned + size) munmap(reinterpret_cast<void*>(aligned + size), end - aligned - size);
  void* p = reinterpret_cast<void*>(aligned);
  madvise(p, size, MADV_HUGEPAGE);  // advisory: ignored where THP is off
  return HugeBuffer(static_cast<uint8_t*>(p), HugeFree{size});
}

}  // namespace kdr
