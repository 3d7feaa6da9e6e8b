// copy_page: the rows a forked sequence takes over from a shared page read back exactly as
// the original's, for every cache dtype; the slots past the copied ones and every other
// page are left alone.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "rpa/rpa.h"
#include "rpa_test_util.h"

namespace rpa_test {
namespace {

class CopyPageTest : public ::testing::TestWithParam<rpa::KvDType> {};

TEST_P(CopyPageTest, CopiedRowsReadBackBitForBitAndNothingElseChanges) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  Rng rng(seed);
  const int32_t pages = 5, heads = 3, ps = 8, d = 16;
  Cache c;
  c.shape = {pages, heads, ps, d, GetParam()};
  const size_t bytes = c.shape.pool_elements() * rpa::element_size(GetParam());
  c.k.assign(bytes, 0);
  c.v.assign(bytes, 0);
  c.k_row_scales.assign(c.shape.scale_elements(), 0.0f);
  c.v_row_scales.assign(c.shape.scale_elements(), 0.0f);
  c.k_scale = 0.75f;
  c.v_scale = 1.25f;
  rpa::KvCache kv = c.view();
  // Every row of every page random, so an untouched row is told apart from a copied one.
  for (int32_t p = 0; p < pages; ++p)
    for (int32_t h = 0; h < heads; ++h)
      for (int32_t slot = 0; slot < ps; ++slot)
        for (bool is_v : {false, true}) {
          const std::vector<float> x = random_floats(d, rng, -2.0f, 2.0f);
          rpa::store_row(kv, is_v, p, h, slot, x.data());
        }
  auto read = [&](int32_t p, int32_t h, int32_t slot, bool is_v) {
    std::vector<float> x(d);
    rpa::load_row(kv, is_v, p, h, slot, x.data());
    return x;
  };
  std::vector<std::vector<float>> before;
  for (int32_t p = 0; p < pages; ++p)
    for (int32_t h = 0; h < heads; ++h)
      for (int32_t slot = 0; slot < ps; ++slot)
        for (bool is_v : {false, true}) before.push_back(read(p, h, slot, is_v));

  const int32_t src = 3, dst = 1;
  const int32_t slots = std::uniform_int_distribution<int32_t>(1, ps - 1)(rng);
  rpa::copy_page(kv, src, dst, slots);
  size_t i = 0;
  for (int32_t p = 0; p < pages; ++p)
    for (int32_t h = 0; h < heads; ++h)
      for (int32_t slot = 0; slot < ps; ++slot)
        for (bool is_v : {false, true}) {
          const std::vector<float> got = read(p, h, slot, is_v);
          const bool copied = p == dst && slot < slots;
          // The source row as it was before the copy (its index in `before`).
          const size_t from = ((static_cast<size_t>(src) * heads + h) * ps + slot) * 2 + is_v;
          const std::vector<float>& want = copied ? before[from] : before[i];
          ASSERT_EQ(0, std::memcmp(got.data(), want.data(), d * sizeof(float)))
              << "page " << p << " head " << h << " slot " << slot << (is_v ? " V" : " K");
          ++i;
        }
}

TEST_P(CopyPageTest, PagesOutsideTheCacheAreRefused) {
  Cache c;
  c.shape = {2, 1, 4, 8, GetParam()};
  rpa::KvCache kv = c.view();
  EXPECT_THROW(rpa::copy_page(kv, 0, 2, 1), rpa::Error);
  EXPECT_THROW(rpa::copy_page(kv, -1, 1, 1), rpa::Error);
  EXPECT_THROW(rpa::copy_page(kv, 0, 1, 5), rpa::Error);
}

INSTANTIATE_TEST_SUITE_P(AllDTypes, CopyPageTest,
                         ::testing::Values(rpa::KvDType::kF32, rpa::KvDType::kBF16,
                                           rpa::KvDType::kF16, rpa::KvDType::kInt8,
                                           rpa::KvDType::kFp8E4M3),
                         [](const auto& info) { return std::string(rpa::to_string(info.param)); });

}  // namespace
}  // namespace rpa_test
