// Zero-filled memory for large arrays whose pages are read in scattered order (KV-cache
// pools): 2 MiB aligned and advised for transparent huge pages, so a kernel hopping between
// 4 KiB cache pages spread over a pool of gigabytes does not miss the TLB on every hop.
// Falls back to ordinary pages where the kernel has THP off.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace kdr {

struct HugeFree {
  size_t bytes = 0;
  void operator()(void* p) const;
};
using HugeBuffer = std::unique_ptr<uint8_t, HugeFree>;

// Throws std::bad_alloc when the memory cannot be mapped.
HugeBuffer alloc_huge(size_t bytes);

}  // namespace kdr
