#include "engine/block_pool.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace kdr::engine {

BlockPool::BlockPool(int32_t num_blocks, int32_t block_size, bool prefix_caching)
    : block_size_(block_size), caching_(prefix_caching) {
  if (num_blocks <= 0) throw std::invalid_argument("BlockPool: no blocks");
  if (block_size <= 0) throw std::invalid_argument("BlockPool: block size must be positive");
  blocks_.resize(static_cast<size_t>(num_blocks));
  for (int32_t b = 0; b < num_blocks; ++b) push_back(b);
}

void BlockPool::unlink(int32_t b) {
  Block& x = blocks_[b];
  if (x.prev >= 0)
    blocks_[x.prev].next = x.next;
  else
    head_ = x.next;
  if (x.next >= 0)
    blocks_[x.next].prev = x.prev;
  else
    tail_ = x.prev;
  x.prev = x.next = -1;
  x.in_free_list = false;
  --num_free_;
  if (x.cached) --num_cached_free_;
}

void BlockPool::push_back(int32_t b) {
  Block& x = blocks_[b];
  x.prev = tail_;
  x.next = -1;
  if (tail_ >= 0)
    blocks_[tail_].next = b;
  else
    head_ = b;
  tail_ = b;
  x.in_free_list = true;
  ++num_free_;
  if (x.cached) ++num_cached_free_;
}

void BlockPool::forget(int32_t b) {
  Block& x = blocks_[b];
  if (!x.cached) return;
  auto it = by_hash_.find(x.hash);
  if (it != by_hash_.end() && it->second == b) by_hash_.erase(it);
  x.cached = false;
  x.tokens.clear();
}

int32_t BlockPool::allocate() {
  if (head_ < 0) return -1;
  const int32_t b = head_;
  unlink(b);
  forget(b);
  blocks_[b].refs = 1;
  return b;
}

void BlockPool::release(int32_t block) {
  Block& x = blocks_.at(static_cast<size_t>(block));
  if (x.refs <= 0)
    throw std::logic_error("BlockPool: block " + std::to_string(block) + " released while free");
  if (x.refs == 2) --num_shared_;
  if (--x.refs == 0) {
    if (!caching_) forget(block);
    push_back(block);
  }
}

void BlockPool::share(int32_t block) {
  Block& x = blocks_.at(static_cast<size_t>(block));
  if (x.refs <= 0)
    throw std::logic_error("BlockPool: block " + std::to_string(block) + " shared while free");
  if (++x.refs == 2) ++num_shared_;
}

uint64_t BlockPool::hash_block(uint64_t parent, std::span<const int32_t> tokens) {
  // FNV-1a over the parent hash and the token ids, then a splitmix64 finalizer so nearby
  // inputs spread over the whole range. Never 0, which stands for "no parent".
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  mix(parent);
  for (int32_t t : tokens) mix(static_cast<uint32_t>(t));
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h == 0 ? 1 : h;
}

int32_t BlockPool::acquire_cached(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) {
  if (!caching_) return -1;
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return -1;
  Block& x = blocks_[it->second];
  if (x.parent != parent ||
      !std::equal(x.tokens.begin(), x.tokens.end(), tokens.begin(), tokens.end()))
    return -1;
  if (x.in_free_list) unlink(it->second);
  if (++x.refs == 2) ++num_shared_;
  return it->second;
}

void BlockPool::register_full(int32_t block, uint64_t hash, uint64_t parent,
                              std::span<const int32_t> tokens) {
  if (!caching_) return;
  Block& x = blocks_.at(static_cast<size_t>(block));
  if (x.cached || by_hash_.count(hash)) return;
  x.cached = true;
  x.hash = hash;
  x.parent = parent;
  x.tokens.assign(tokens.begin(), tokens.end());
  by_hash_.emplace(hash, block);
}

}  // namespace kdr::engine
