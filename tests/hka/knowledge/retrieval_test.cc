// Hybrid retrieval: reciprocal rank fusion, cosine ranking, the stored vector format, the
// embedder's checks, and both stores searched with a deterministic fake embedder whose
// "meaning" is a table of synonyms.
#include "hka/knowledge/retrieval.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "../../base/seed.h"
#include "hka/knowledge/doc_store.h"
#include "hka/knowledge/table_store.h"

namespace kdr::hka {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------
// The fake embedder: each synonym group is one dimension, so texts sharing no word but
// sharing a group are close; any other word adds a little weight to one of 32 hashed
// dimensions. Deterministic, and it counts the texts it embeds.

const std::vector<std::vector<std::string>> kSynonyms = {
    {"electricity", "power", "grid", "megawatt", "generation", "kilowatt"},
    {"driving", "miles", "vehicle", "motorist", "mileage", "commute"},
    {"employment", "jobs", "payroll", "hiring", "workers", "workforce"},
    {"fertility", "births", "childbearing", "newborns", "maternity", "babies"},
};
constexpr size_t kFakeDim = 4 + 32 + 1;

struct FakeEmbedder {
  std::shared_ptr<int64_t> texts_embedded = std::make_shared<int64_t>(0);

  static std::vector<float> vector_of(const std::string& text) {
    std::vector<float> v(kFakeDim, 0.0f);
    std::string word;
    auto add = [&] {
      if (word.empty()) return;
      bool known = false;
      for (size_t g = 0; g < kSynonyms.size(); ++g) {
        if (std::find(kSynonyms[g].begin(), kSynonyms[g].end(), word) != kSynonyms[g].end()) {
          v[g] += 1.0f;
          known = true;
        }
      }
      if (!known) v[4 + std::hash<std::string>{}(word) % 32] += 0.25f;
      word.clear();
    };
    for (char c : text + " ") {
      if (std::isalnum(static_cast<unsigned char>(c))) {
        word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      } else {
        add();
      }
    }
    v.back() = 0.01f;  // never all zero
    double norm = 0;
    for (float x : v) norm += static_cast<double>(x) * x;
    for (float& x : v) x = static_cast<float>(x / std::sqrt(norm));
    return v;
  }

  TextEmbedder as(const std::string& model) const {
    auto counter = texts_embedded;
    return {model, [counter](std::span<const std::string> texts) {
              *counter += static_cast<int64_t>(texts.size());
              std::vector<std::vector<float>> out;
              for (const std::string& t : texts) out.push_back(vector_of(t));
              return out;
            }};
  }
};

// A random word of 6-9 lowercase letters after an 'x': never a synonym nor an English word.
std::string random_word(std::mt19937_64& rng) {
  std::string w = "x";
  const int n = 6 + static_cast<int>(rng() % 4);
  for (int i = 0; i < n; ++i) w += static_cast<char>('a' + rng() % 26);
  return w;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// A fresh folder per test: sources in src/, the workspace database beside it.
class Workspace {
 public:
  Workspace() {
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::path(testing::TempDir()) /
            (std::string("retrieval_") + info->test_suite_name() + "_" + info->name());
    fs::remove_all(root_);
    fs::create_directories(src());
  }
  ~Workspace() { fs::remove_all(root_); }
  fs::path src() const { return root_ / "src"; }
  fs::path db() const { return root_ / "knowledge.db"; }

  // Rows of `sql`'s first column, as text.
  std::vector<std::string> query(const std::string& sql) const {
    sqlite3* handle = nullptr;
    EXPECT_EQ(sqlite3_open(db().c_str(), &handle), SQLITE_OK);
    std::vector<std::string> out;
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(handle, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sql;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
      out.push_back(p ? p : "");
    }
    sqlite3_finalize(stmt);
    sqlite3_close(handle);
    return out;
  }
  void exec(const std::string& sql) const {
    sqlite3* handle = nullptr;
    ASSERT_EQ(sqlite3_open(db().c_str(), &handle), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(handle, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sql;
    sqlite3_close(handle);
  }

 private:
  fs::path root_;
};

// `count` tables of random words (title, two columns, three rows) plus one about electricity
// generation written without any word of the query "power grid": t0.csv ... and target.csv.
void write_random_tables(const fs::path& dir, std::mt19937_64& rng, int count) {
  for (int t = 0; t < count; ++t) {
    write_text(dir / ("t" + std::to_string(t) + ".csv"),
               random_word(rng) + "," + random_word(rng) + "\n" + random_word(rng) + ",1\n" +
                   random_word(rng) + ",2\n" + random_word(rng) + ",3\n");
  }
  write_text(dir / "target.csv", "plant,megawatt generation\nalpha,10\nbeta,20\n");
}

std::vector<std::string> names_of(const std::vector<TableHit>& hits) {
  std::vector<std::string> out;
  for (const TableHit& h : hits) out.push_back(h.table);
  return out;
}

// ---------------------------------------------------------------------------------------
// Reciprocal rank fusion

TEST(FuseRankingsTest, FixedRanksGiveTheTextbookScoresAndStableTies) {
  const std::vector<std::vector<std::string>> rankings = {{"a", "b", "c"}, {"c", "d", "a"}};
  const std::vector<FusedHit<std::string>> fused = fuse_rankings(rankings);
  ASSERT_EQ(fused.size(), 4u);
  // a and c tie (1/61 + 1/63): a comes first, as it appears first in the first ranking; b
  // and d tie at 1/62 likewise.
  EXPECT_EQ(fused[0].key, "a");
  EXPECT_EQ(fused[1].key, "c");
  EXPECT_EQ(fused[2].key, "b");
  EXPECT_EQ(fused[3].key, "d");
  EXPECT_DOUBLE_EQ(fused[0].score, 1.0 / 61 + 1.0 / 63);
  EXPECT_DOUBLE_EQ(fused[1].score, 1.0 / 63 + 1.0 / 61);
  EXPECT_DOUBLE_EQ(fused[2].score, 1.0 / 62);
  EXPECT_DOUBLE_EQ(fused[3].score, 1.0 / 62);
  EXPECT_EQ(fused[0].ranks, (std::vector<int>{1, 3}));
  EXPECT_EQ(fused[3].ranks, (std::vector<int>{0, 2}));
}

TEST(FuseRankingsTest, BothListsBeatOneAndARepeatCountsOnce) {
  // x is 2nd in both lists: 2/62 beats y, 1st in one list only (1/61).
  const auto fused = fuse_rankings<int64_t>({{7, 5, 7}, {9, 5}}, 60.0);
  ASSERT_EQ(fused.size(), 3u);
  EXPECT_EQ(fused[0].key, 5);
  EXPECT_DOUBLE_EQ(fused[0].score, 2.0 / 62);
  EXPECT_EQ(fused[1].key, 7);
  EXPECT_DOUBLE_EQ(fused[1].score, 1.0 / 61);  // its repeat at rank 3 does not count
  EXPECT_EQ(fused[2].key, 9);
  EXPECT_TRUE(fuse_rankings<int64_t>({}).empty());
  EXPECT_DOUBLE_EQ(fuse_rankings<int64_t>({{1}}, 1.0)[0].score, 0.5);  // another k
}

// Random rankings against a direct computation: the score of each key summed over the lists,
// and the order of a sort by score with ties in first-appearance order.
TEST(FuseRankingsTest, RandomRankingsMatchADirectComputation) {
  std::mt19937_64 rng(kdr_test::test_seed());
  for (int round = 0; round < 200; ++round) {
    const int lists = 1 + static_cast<int>(rng() % 3);
    std::vector<std::vector<int64_t>> rankings(lists);
    for (auto& r : rankings) {
      std::vector<int64_t> pool(20);
      for (size_t i = 0; i < pool.size(); ++i) pool[i] = static_cast<int64_t>(i);
      std::shuffle(pool.begin(), pool.end(), rng);
      pool.resize(rng() % 12);
      r = pool;
    }
    std::vector<int64_t> first_seen;
    std::map<int64_t, double> expected;
    for (const auto& r : rankings) {
      for (size_t i = 0; i < r.size(); ++i) {
        if (!expected.count(r[i])) first_seen.push_back(r[i]);
        expected[r[i]] += 1.0 / (60.0 + static_cast<double>(i) + 1.0);
      }
    }
    const auto fused = fuse_rankings(rankings);
    ASSERT_EQ(fused.size(), expected.size());
    for (size_t i = 0; i < fused.size(); ++i) {
      EXPECT_NEAR(fused[i].score, expected[fused[i].key], 1e-15);
      if (i == 0) continue;
      const auto& prev = fused[i - 1];
      ASSERT_GE(prev.score, fused[i].score);
      if (prev.score == fused[i].score) {
        const auto pos = [&](int64_t key) {
          return std::find(first_seen.begin(), first_seen.end(), key) - first_seen.begin();
        };
        EXPECT_LT(pos(prev.key), pos(fused[i].key)) << "tie not in first-appearance order";
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Cosine ranking, the stored format, the embedder's checks

TEST(RankByCosineTest, RandomVectorsRankedByTheirCosine) {
  std::mt19937_64 rng(kdr_test::test_seed());
  std::normal_distribution<float> normal;
  const size_t dim = 1 + rng() % 16;
  std::vector<float> query(dim);
  for (float& x : query) x = normal(rng);
  std::vector<std::vector<float>> vectors(40);
  for (auto& v : vectors) {
    v.resize(dim);
    for (float& x : v) x = normal(rng) * 3.0f;  // not normalised
  }
  vectors[5].assign(dim + 1, 1.0f);  // another dimension: skipped
  vectors[9].assign(dim, 0.0f);      // zero norm: skipped
  const auto ranked = rank_by_cosine(query, vectors, 10);
  ASSERT_EQ(ranked.size(), 10u);
  std::vector<std::pair<double, size_t>> reference;
  for (size_t i = 0; i < vectors.size(); ++i) {
    if (i == 5 || i == 9) continue;
    double dot = 0, qq = 0, vv = 0;
    for (size_t d = 0; d < dim; ++d) {
      dot += double(query[d]) * vectors[i][d];
      qq += double(query[d]) * query[d];
      vv += double(vectors[i][d]) * vectors[i][d];
    }
    reference.push_back({-dot / std::sqrt(qq) / std::sqrt(vv), i});
  }
  std::sort(reference.begin(), reference.end());
  for (size_t r = 0; r < ranked.size(); ++r) {
    EXPECT_EQ(ranked[r].first, reference[r].second) << "rank " << r;
    EXPECT_NEAR(ranked[r].second, -reference[r].first, 1e-12);
  }
  EXPECT_TRUE(rank_by_cosine(std::vector<float>(dim, 0.0f), vectors, 10).empty());
}

TEST(VectorBlobTest, RoundTripIsExactAndLittleEndian) {
  std::mt19937_64 rng(kdr_test::test_seed());
  std::uniform_real_distribution<float> any(-1e6f, 1e6f);
  std::vector<float> v(1 + rng() % 400);
  for (float& x : v) x = any(rng);
  v[0] = std::numeric_limits<float>::denorm_min();
  EXPECT_EQ(vector_from_blob(vector_to_blob(v)), v);
  EXPECT_EQ(vector_to_blob({1.0f}), std::string("\x00\x00\x80\x3f", 4));
  EXPECT_EQ(vector_from_blob(""), std::nullopt);
  EXPECT_EQ(vector_from_blob("abc"), std::nullopt);  // not whole floats
  EXPECT_EQ(vector_from_blob(vector_to_blob({1.0f, std::nanf("")})), std::nullopt);
}

TEST(EmbedTextsTest, BatchesInOrderAndChecksTheAnswer) {
  std::vector<size_t> batch_sizes;
  TextEmbedder counting{"count", [&](std::span<const std::string> texts) {
                          batch_sizes.push_back(texts.size());
                          std::vector<std::vector<float>> out;
                          for (const std::string& t : texts) out.push_back({float(t.size()), 1});
                          return out;
                        }};
  std::vector<std::string> texts;
  for (int i = 0; i < 70; ++i) texts.push_back(std::string(static_cast<size_t>(i), 'a'));
  const auto vectors = embed_texts(counting, texts);
  EXPECT_EQ(batch_sizes, (std::vector<size_t>{32, 32, 6}));
  ASSERT_EQ(vectors.size(), 70u);
  for (int i = 0; i < 70; ++i) EXPECT_EQ(vectors[i][0], float(i));

  const auto error_of = [&](EmbedFn fn) {
    try {
      embed_texts({"m-x", std::move(fn)}, texts);
    } catch (const EmbeddingError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  using Vectors = std::vector<std::vector<float>>;
  EXPECT_EQ(error_of([](std::span<const std::string>) { return Vectors{{1}}; }),
            "embedding model 'm-x' returned 1 vectors for 32 texts");
  EXPECT_EQ(error_of([](std::span<const std::string> t) {
              Vectors out(t.size(), std::vector<float>{1, 2});
              out.back() = {1, 2, 3};
              return out;
            }),
            "embedding model 'm-x' returned a vector of 3 dimensions where 2 were expected");
  EXPECT_EQ(error_of([](std::span<const std::string> t) {
              return Vectors(t.size(), std::vector<float>{1, std::nanf("")});
            }),
            "embedding model 'm-x' returned a non-finite value");
  EXPECT_EQ(error_of([](std::span<const std::string> t) {
              return Vectors(t.size(), std::vector<float>{0, 0});
            }),
            "embedding model 'm-x' returned an all-zero vector");
  EXPECT_EQ(error_of([](std::span<const std::string>) -> Vectors {
              throw std::runtime_error("out of memory");
            }),
            "embedding model 'm-x' failed: out of memory");
}

// ---------------------------------------------------------------------------------------
// The table store

// "power grid" shares no word with any table, but its meaning is the target's: hybrid search
// ranks the target first, BM25 does not find it at all.
TEST(HybridTableSearchTest, MeaningWithoutSharedWordsRanksFirst) {
  std::mt19937_64 rng(kdr_test::test_seed());
  Workspace ws;
  write_random_tables(ws.src(), rng, 5 + static_cast<int>(rng() % 10));
  FakeEmbedder fake;
  TableStore store = TableStore::open(ws.db());
  store.set_embedder(fake.as("fake-1"));
  const TableIngestReport report = store.ingest_dir(ws.src());
  EXPECT_EQ(report.embedded, static_cast<int64_t>(report.added.size()));

  const std::vector<TableHit> hybrid = store.search("power grid", 3);
  ASSERT_FALSE(hybrid.empty());
  EXPECT_EQ(hybrid[0].table, "target");
  EXPECT_EQ(hybrid[0].bm25_rank, 0);
  EXPECT_EQ(hybrid[0].vector_rank, 1);
  EXPECT_DOUBLE_EQ(hybrid[0].score, 1.0 / 61);
  EXPECT_EQ(hybrid.size(), 3u);

  store.set_embedder({});
  const std::vector<std::string> bm25 = names_of(store.search("power grid", 3));
  EXPECT_EQ(std::count(bm25.begin(), bm25.end(), "target"), 0);
  // A word of the target's own still finds it by BM25.
  EXPECT_EQ(names_of(store.search("megawatt", 3)), (std::vector<std::string>{"target"}));
}

// Vectors are stored with the workspace: an unchanged re-ingest (even by a new store object)
// embeds nothing, a changed source is embedded again, a deleted one loses its vector.
TEST(HybridTableSearchTest, ReingestKeepsVectorsAndReplacesOnlyChangedOnes) {
  std::mt19937_64 rng(kdr_test::test_seed());
  Workspace ws;
  const int count = 3 + static_cast<int>(rng() % 5);
  write_random_tables(ws.src(), rng, count);
  FakeEmbedder fake;
  {
    TableStore store = TableStore::open(ws.db());
    store.set_embedder(fake.as("fake-1"));
    EXPECT_EQ(store.ingest_dir(ws.src()).embedded, count + 1);
  }
  EXPECT_EQ(*fake.texts_embedded, count + 1);
  const std::vector<std::string> stored = ws.query("SELECT hex(vector) FROM _hka_table_vectors");
  TableStore store = TableStore::open(ws.db());
  store.set_embedder(fake.as("fake-1"));
  EXPECT_EQ(store.ingest_dir(ws.src()).embedded, 0);
  EXPECT_EQ(*fake.texts_embedded, count + 1);
  EXPECT_EQ(ws.query("SELECT hex(vector) FROM _hka_table_vectors"), stored);
  EXPECT_EQ(store.search("power grid", 1).at(0).table, "target");
  EXPECT_EQ(*fake.texts_embedded, count + 2) << "a search embeds only its query";

  write_text(ws.src() / "t0.csv", "kilowatt,payroll\nz,1\n");
  fs::remove(ws.src() / "t1.csv");
  const TableIngestReport changed = store.ingest_dir(ws.src());
  EXPECT_EQ(changed.replaced, (std::vector<std::string>{"t0"}));
  EXPECT_EQ(changed.removed, (std::vector<std::string>{"t1"}));
  EXPECT_EQ(changed.embedded, 1);
  EXPECT_EQ(ws.query("SELECT count(*) FROM _hka_table_vectors WHERE name = 't1'"),
            (std::vector<std::string>{"0"}));
  EXPECT_EQ(ws.query("SELECT count(*) FROM _hka_table_vectors"),
            (std::vector<std::string>{std::to_string(count)}));
}

TEST(HybridTableSearchTest, AnotherModelNameRecomputesEveryVector) {
  std::mt19937_64 rng(kdr_test::test_seed());
  Workspace ws;
  const int count = 2 + static_cast<int>(rng() % 5);
  write_random_tables(ws.src(), rng, count);
  FakeEmbedder fake;
  TableStore store = TableStore::open(ws.db());
  store.set_embedder(fake.as("fake-1"));
  store.ingest_dir(ws.src());
  store.set_embedder(fake.as("fake-2"));
  EXPECT_EQ(store.ingest_dir(ws.src()).embedded, count + 1);
  EXPECT_EQ(ws.query("SELECT DISTINCT model FROM _hka_table_vectors"),
            (std::vector<std::string>{"fake-2"}));
  EXPECT_EQ(store.ingest_dir(ws.src()).embedded, 0);
}

// A workspace ingested without an embedder, then searched with one: the search embeds what
// is missing (and replaces an unreadable vector) before ranking.
TEST(HybridTableSearchTest, MissingOrBadVectorsAreEmbeddedAtSearch) {
  std::mt19937_64 rng(kdr_test::test_seed());
  Workspace ws;
  const int count = 2 + static_cast<int>(rng() % 5);
  write_random_tables(ws.src(), rng, count);
  TableStore store = TableStore::open(ws.db());
  store.ingest_dir(ws.src());
  FakeEmbedder fake;
  store.set_embedder(fake.as("fake-1"));
  EXPECT_EQ(store.search("power grid", 2).at(0).table, "target");
  EXPECT_EQ(*fake.texts_embedded, count + 2);  // every table and the query
  ws.exec("UPDATE _hka_table_vectors SET vector = x'0102' WHERE name = 'target'");
  EXPECT_EQ(store.search("power grid", 2).at(0).table, "target");
  EXPECT_EQ(*fake.texts_embedded, count + 4);  // the bad vector and the query
  EXPECT_TRUE(store.search("  ,;  ", 2).empty()) << "a query without words finds nothing";
}

TEST(HybridTableSearchTest, FailingEmbedderIsAnErrorNamingTheModel) {
  std::mt19937_64 rng(kdr_test::test_seed());
  Workspace ws;
  write_random_tables(ws.src(), rng, 3);
  TableStore store = TableStore::open(ws.db());
  store.ingest_dir(ws.src());
  store.set_embedder({"broken-model", [](std::span<const std::string> texts) {
                        return std::vector<std::vector<float>>(texts.size() + 1, {1.0f});
                      }});
  try {
    store.search("power grid", 2);
    FAIL() << "no error";
  } catch (const TableStoreError& e) {
    EXPECT_NE(std::string(e.what()).find("'broken-model' returned 2 vectors for 1 texts"),
              std::string::npos)
        << e.what();
  }
  store.set_embedder({});
  EXPECT_EQ(names_of(store.search("megawatt", 1)), (std::vector<std::string>{"target"}));
}

// Without an embedder, search is BM25 exactly as before: vectors in the workspace change
// nothing, hit for hit and score for score, on random tables and random queries.
TEST(HybridTableSearchTest, NoEmbedderGivesIdenticalResults) {
  std::mt19937_64 rng(kdr_test::test_seed());
  Workspace plain_ws, embedded_ws;
  std::vector<std::string> vocabulary;
  for (int i = 0; i < 30; ++i) vocabulary.push_back(random_word(rng));
  for (int t = 0; t < 12; ++t) {
    std::string text =
        vocabulary[rng() % 30] + " " + vocabulary[rng() % 30] + "," + vocabulary[rng() % 30] + "\n";
    for (int r = 0; r < 3; ++r) text += vocabulary[rng() % 30] + "," + std::to_string(r) + "\n";
    for (const Workspace* ws : {&plain_ws, &embedded_ws})
      write_text(ws->src() / ("t" + std::to_string(t) + ".csv"), text);
  }
  TableStore plain = TableStore::open(plain_ws.db());
  plain.ingest_dir(plain_ws.src());
  TableStore embedded = TableStore::open(embedded_ws.db());
  FakeEmbedder fake;
  embedded.set_embedder(fake.as("fake-1"));
  embedded.ingest_dir(embedded_ws.src());
  embedded.search(vocabulary[0], 3);
  embedded.set_embedder({});
  for (int q = 0; q < 50; ++q) {
    const std::string query = vocabulary[rng() % 30] + " " + vocabulary[rng() % 30];
    const int k = 1 + static_cast<int>(rng() % 6);
    const std::vector<TableHit> a = plain.search(query, k), b = embedded.search(query, k);
    ASSERT_EQ(a.size(), b.size()) << query;
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].table, b[i].table) << query;
      EXPECT_EQ(a[i].score, b[i].score) << query;
      EXPECT_EQ(b[i].bm25_rank, 0);
      EXPECT_EQ(b[i].vector_rank, 0);
    }
  }
}

// ---------------------------------------------------------------------------------------
// The document store

// `count` documents of random words, and one on electricity generation that never says
// "power" or "grid".
void write_random_docs(const fs::path& dir, std::mt19937_64& rng, int count) {
  for (int d = 0; d < count; ++d) {
    std::string text = "# " + random_word(rng) + "\n\n";
    for (int w = 0; w < 20; ++w) text += random_word(rng) + " ";
    write_text(dir / ("d" + std::to_string(d) + ".md"), text + "\n");
  }
  write_text(dir / "target.md",
             "# Plant notes\n\nThe plant reached record megawatt generation in 2017.\n");
}

TEST(HybridDocSearchTest, MeaningWithoutSharedWordsRanksFirst) {
  std::mt19937_64 rng(kdr_test::test_seed());
  Workspace ws;
  const int count = 4 + static_cast<int>(rng() % 8);
  write_random_docs(ws.src(), rng, count);
  DocStore store = DocStore::open(ws.db().string());
  FakeEmbedder fake;
  store.set_embedder(fake.as("fake-1"));
  EXPECT_EQ(store.ingest_dir(ws.src()).embedded, count + 1);

  const std::vector<ChunkHit> hybrid = store.search("power grid", 3);
  ASSERT_EQ(hybrid.size(), 3u);
  EXPECT_EQ(fs::path(hybrid[0].chunk.source_path).filename(), "target.md");
  EXPECT_EQ(hybrid[0].vector_rank, 1);
  EXPECT_EQ(hybrid[0].bm25_rank, 0);
  EXPECT_EQ(hybrid[0].snippet, "The plant reached record megawatt generation in 2017.");

  store.set_embedder({});
  EXPECT_TRUE(store.search("power grid", 3).empty());
  // A word the target shares with the query keeps BM25's snippet in hybrid results.
  store.set_embedder(fake.as("fake-1"));
  const std::vector<ChunkHit> both = store.search("record power", 1);
  ASSERT_EQ(both.size(), 1u);
  EXPECT_EQ(both[0].bm25_rank, 1);
  EXPECT_EQ(both[0].vector_rank, 1);
  EXPECT_NE(both[0].snippet.find("[record]"), std::string::npos) << both[0].snippet;
}

TEST(HybridDocSearchTest, VectorsKeptAcrossReingestRecomputedForAnotherModel) {
  std::mt19937_64 rng(kdr_test::test_seed());
  Workspace ws;
  const int count = 2 + static_cast<int>(rng() % 6);
  write_random_docs(ws.src(), rng, count);
  FakeEmbedder fake;
  {
    DocStore store = DocStore::open(ws.db().string());
    store.set_embedder(fake.as("fake-1"));
    store.ingest_dir(ws.src());
  }
  DocStore store = DocStore::open(ws.db().string());
  store.set_embedder(fake.as("fake-1"));
  EXPECT_EQ(store.ingest_dir(ws.src()).embedded, 0);
  EXPECT_EQ(*fake.texts_embedded, count + 1);

  fs::remove(ws.src() / "d0.md");
  write_text(ws.src() / "d1.md", "# Changed\n\nNow about hiring.\n");
  const DocIngestReport changed = store.ingest_dir(ws.src());
  EXPECT_EQ(changed.removed.size(), 1u);
  EXPECT_EQ(changed.embedded, 1);
  EXPECT_EQ(ws.query("SELECT count(*) FROM doc_chunk_vectors"),
            (std::vector<std::string>{std::to_string(store.chunk_count())}));
  EXPECT_EQ(ws.query("SELECT count(*) FROM doc_chunk_vectors WHERE chunk_id NOT IN "
                     "(SELECT id FROM doc_chunks)"),
            (std::vector<std::string>{"0"}));
  EXPECT_EQ(fs::path(store.search("workforce", 1).at(0).chunk.source_path).filename(), "d1.md");

  store.set_embedder(fake.as("fake-2"));
  EXPECT_EQ(store.ingest_dir(ws.src()).embedded, store.chunk_count());
  EXPECT_EQ(ws.query("SELECT DISTINCT model FROM doc_chunk_vectors"),
            (std::vector<std::string>{"fake-2"}));
}

TEST(HybridDocSearchTest, IngestedWithoutEmbedderSearchedWithOne) {
  std::mt19937_64 rng(kdr_test::test_seed());
  Workspace ws;
  write_random_docs(ws.src(), rng, 3);
  DocStore store = DocStore::open(ws.db().string());
  store.ingest_dir(ws.src());
  FakeEmbedder fake;
  store.set_embedder(fake.as("fake-1"));
  ws.exec(
      "INSERT INTO doc_chunk_vectors(chunk_id, model, vector) "
      "SELECT id, 'fake-1', x'00' FROM doc_chunks LIMIT 1");  // one unreadable vector
  EXPECT_EQ(fs::path(store.search("power grid", 1).at(0).chunk.source_path).filename(),
            "target.md");
  EXPECT_EQ(*fake.texts_embedded, store.chunk_count() + 1);
}

TEST(HybridDocSearchTest, NoEmbedderGivesIdenticalResults) {
  std::mt19937_64 rng(kdr_test::test_seed());
  Workspace plain_ws, embedded_ws;
  std::vector<std::string> vocabulary;
  for (int i = 0; i < 40; ++i) vocabulary.push_back(random_word(rng));
  for (int d = 0; d < 10; ++d) {
    std::string text;
    for (int w = 0; w < 30; ++w) text += vocabulary[rng() % 40] + (w % 10 == 9 ? ".\n\n" : " ");
    for (const Workspace* ws : {&plain_ws, &embedded_ws})
      write_text(ws->src() / ("d" + std::to_string(d) + ".txt"), text);
  }
  DocStore plain =
      DocStore::open(plain_ws.db().string(), {.target_chars = 120, .overlap_chars = 20});
  plain.ingest_dir(plain_ws.src());
  DocStore embedded =
      DocStore::open(embedded_ws.db().string(), {.target_chars = 120, .overlap_chars = 20});
  FakeEmbedder fake;
  embedded.set_embedder(fake.as("fake-1"));
  embedded.ingest_dir(embedded_ws.src());
  embedded.set_embedder({});
  for (int q = 0; q < 50; ++q) {
    const std::string query = vocabulary[rng() % 40] + " " + vocabulary[rng() % 40];
    const int k = 1 + static_cast<int>(rng() % 6);
    const std::vector<ChunkHit> a = plain.search(query, k), b = embedded.search(query, k);
    ASSERT_EQ(a.size(), b.size()) << query;
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].chunk.id, b[i].chunk.id) << query;
      EXPECT_EQ(a[i].score, b[i].score) << query;
      EXPECT_EQ(a[i].snippet, b[i].snippet) << query;
    }
  }
}

}  // namespace
}  // namespace kdr::hka
