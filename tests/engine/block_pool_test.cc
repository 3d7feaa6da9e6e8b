// The KV block pool: reference counts, the LRU free list, and the prefix-cache index.
#include "engine/block_pool.h"

#include <gtest/gtest.h>

#include <vector>

namespace kdr::engine {
namespace {

TEST(BlockPool, AllocatesEveryBlockOnceThenRunsDry) {
  BlockPool pool(4, 2, true);
  std::vector<int32_t> got;
  for (int i = 0; i < 4; ++i) got.push_back(pool.allocate());
  EXPECT_EQ(got, (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(pool.allocate(), -1);
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_EQ(pool.num_used(), 4);
  pool.release(2);
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_EQ(pool.allocate(), 2);
  EXPECT_THROW(BlockPool(0, 2, true), std::invalid_argument);
}

TEST(BlockPool, ReleaseOfAFreeBlockIsALogicError) {
  BlockPool pool(2, 2, true);
  const int32_t b = pool.allocate();
  pool.release(b);
  EXPECT_THROW(pool.release(b), std::logic_error);
}

TEST(BlockPool, ASharedBlockIsFreedWithItsLastReferenceAndCountedWhileShared) {
  BlockPool pool(3, 2, false);
  const int32_t a = pool.allocate();
  EXPECT_EQ(pool.num_shared(), 0);
  pool.share(a);
  pool.share(a);
  EXPECT_EQ(pool.ref_count(a), 3);
  EXPECT_EQ(pool.num_shared(), 1);
  EXPECT_EQ(pool.num_used(), 1);
  pool.release(a);
  EXPECT_EQ(pool.num_shared(), 1);
  pool.release(a);
  EXPECT_EQ(pool.num_shared(), 0);
  EXPECT_EQ(pool.num_used(), 1);
  pool.release(a);
  EXPECT_EQ(pool.num_used(), 0);
  EXPECT_THROW(pool.share(a), std::logic_error);
}

TEST(BlockPool, FreedBlocksAreReusedLeastRecentlyFreedFirst) {
  BlockPool pool(3, 2, true);
  const int32_t a = pool.allocate(), b = pool.allocate(), c = pool.allocate();
  pool.release(b);
  pool.release(c);
  pool.release(a);
  EXPECT_EQ(pool.allocate(), b);
  EXPECT_EQ(pool.allocate(), c);
  EXPECT_EQ(pool.allocate(), a);
}

TEST(BlockPool, CachedPrefixIsFoundUntilItsBlockIsReused) {
  BlockPool pool(2, 2, true);
  const std::vector<int32_t> t1{5, 6}, t2{7, 8};
  const uint64_t h1 = BlockPool::hash_block(0, t1);
  const uint64_t h2 = BlockPool::hash_block(h1, t2);
  EXPECT_NE(h1, h2);
  EXPECT_NE(BlockPool::hash_block(0, t2), h2);  // the parent is part of the hash

  const int32_t b1 = pool.allocate(), b2 = pool.allocate();
  pool.register_full(b1, h1, 0, t1);
  pool.register_full(b2, h2, h1, t2);
  // Held blocks are shared: a second user takes a reference.
  EXPECT_EQ(pool.acquire_cached(h1, 0, t1), b1);
  EXPECT_EQ(pool.ref_count(b1), 2);
  pool.release(b1);
  pool.release(b2);
  pool.release(b1);
  EXPECT_EQ(pool.num_free(), 2);
  EXPECT_EQ(pool.num_cached_free(), 2);
  // Free but cached: a hit takes it out of the free list.
  EXPECT_EQ(pool.acquire_cached(h2, h1, t2), b2);
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_EQ(pool.num_cached_free(), 1);
  // Same hash, different tokens or parent (a collision): a miss, not a wrong block.
  EXPECT_EQ(pool.acquire_cached(h1, 0, t2), -1);
  EXPECT_EQ(pool.acquire_cached(h1, 99, t1), -1);
  // Reusing the free block forgets what it cached.
  EXPECT_EQ(pool.allocate(), b1);
  EXPECT_EQ(pool.num_cached_free(), 0);
  EXPECT_EQ(pool.acquire_cached(h1, 0, t1), -1);
}

TEST(BlockPool, WithoutPrefixCachingNothingIsFound) {
  BlockPool pool(2, 2, false);
  const std::vector<int32_t> t{1, 2};
  const uint64_t h = BlockPool::hash_block(0, t);
  const int32_t b = pool.allocate();
  pool.register_full(b, h, 0, t);
  EXPECT_EQ(pool.acquire_cached(h, 0, t), -1);
  pool.release(b);
  EXPECT_EQ(pool.num_cached_free(), 0);
}

}  // namespace
}  // namespace kdr::engine
