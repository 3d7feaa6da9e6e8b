// The KV block pool with prefix caching.
//
// Blocks are page ids of model::KvCacheSet. A block is either held (reference count > 0) or
// free. Free blocks sit in an LRU list; a free block that still holds a full, hashed block of
// tokens stays findable by its hash until it is reused, so a later request with the same
// prefix takes it back instead of recomputing it. A block's hash chains its parent's hash with
// its tokens, so equal hashes mean equal whole prefixes; the tokens are kept and compared on
// every hit, so a hash collision can only cost a miss, never a wrong answer.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

namespace kdr::engine {

class BlockPool {
 public:
  BlockPool(int32_t num_blocks, int32_t block_size, bool prefix_caching);

  int32_t num_blocks() const { return static_cast<int32_t>(blocks_.size()); }
  int32_t block_size() const { return block_size_; }
  // Blocks allocate() can hand out now (free ones, cached or not).
  int32_t num_free() const { return num_free_; }
  // Free blocks that still hold a reusable prefix.
  int32_t num_cached_free() const { return num_cached_free_; }
  int32_t num_used() const { return num_blocks() - num_free_; }
  // Held blocks with more than one reference (a prefix several requests, or the samples of
  // one request, read from).
  int32_t num_shared() const { return num_shared_; }

  // A fresh block with reference count 1: the least recently freed one, whose cached
  // contents (if any) are forgotten. -1 when none is free.
  int32_t allocate();
  // Drops one reference; at zero the block goes to the back of the free list (evicted last).
  void release(int32_t block);
  // One more reference to a held block (a forked sample reading the same prompt page).
  void share(int32_t block);

  // The hash of a full block of tokens that follows the block hashed `parent` (0 for the
  // first block of a sequence).
  static uint64_t hash_block(uint64_t parent, std::span<const int32_t> tokens);

  // The held or free block caching exactly these tokens after `parent`, or -1. On a hit the
  // block gains a reference (and leaves the free list if it was there).
  int32_t acquire_cached(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens);
  // Records that held block `block` now holds these tokens, complete, after `parent`. A block
  // already caching the same hash keeps its place (the newer copy is simply not indexed).
  void register_full(int32_t block, uint64_t hash, uint64_t parent,
                     std::span<const int32_t> tokens);

  int32_t ref_count(int32_t block) const { return blocks_[block].refs; }

 private:
  struct Block {
    int32_t refs = 0;
    int32_t prev = -1, next = -1;  // free-list links
    bool in_free_list = false;
    bool cached = false;  // indexed by hash
    uint64_t hash = 0, parent = 0;
    std::vector<int32_t> tokens;
  };
  void unlink(int32_t b);
  void push_back(int32_t b);
  void forget(int32_t b);

  int32_t block_size_;
  bool caching_;
  std::vector<Block> blocks_;
  int32_t head_ = -1, tail_ = -1;  // free list: head is evicted first
  int32_t num_free_ = 0;
  int32_t num_cached_free_ = 0;
  int32_t num_shared_ = 0;
  std::unordered_map<uint64_t, int32_t> by_hash_;
};

}  // namespace kdr::engine
