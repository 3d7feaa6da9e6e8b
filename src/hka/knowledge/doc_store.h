// The document store of the research agent: markdown, text, HTML and PDF files extracted to
// text, cut into located chunks and indexed with SQLite FTS5 (BM25) for search. Citations
// name a chunk id; the verifier resolves them with chunk() and checks quoted passages with
// passage_contains().
//
// Tables are prefixed doc_ so the store can share one SQLite file with the table store. A
// workspace is ingested once: ingest_dir() re-reads only files whose size, mtime or content
// changed, replaces them in one transaction each, and drops documents whose file is gone.
//
// Document text is data: it is stored and returned verbatim, never interpreted (an
// instruction written inside a document is just more text to search).
//
// With an embedder (set_embedder), every chunk also gets an embedding of its heading path and
// text, stored with the model's name, and search() fuses BM25 with embedding similarity
// (retrieval.h); without one, search() is BM25 alone.
//
// Errors are DocStoreErrors naming the file or database that is wrong. A DocStore is not
// thread-safe; use one per thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hka/knowledge/retrieval.h"

struct sqlite3;

namespace kdr::hka {

class DocStoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ChunkOptions {
  size_t target_chars = 1200;  // a chunk is at most this long (in bytes)
  size_t overlap_chars = 150;  // about this much of a chunk's end starts the next one
};

// One paragraph of extracted text and where it was found.
struct TextBlock {
  std::string text;          // trimmed; markdown/text keep their line breaks
  std::string heading_path;  // "Results > Costs"; empty before the first heading
  int page = 0;              // 1-based PDF page; 0 for other formats
  int line_begin = 0;        // 1-based source lines (markdown/text); 0 where lines mean nothing
  int line_end = 0;
};

struct ExtractedDoc {
  std::string title;  // first heading, else the file name
  std::vector<TextBlock> blocks;
};

// A chunk is the byte range [begin, end) of the document's extracted text, which is its
// blocks' texts joined by "\n\n". Chunks never cross a heading or page boundary.
struct ChunkSpan {
  size_t begin = 0;
  size_t end = 0;
  size_t first_block = 0;  // the block holding `begin`
  int line_begin = 0;      // source lines covered (0 when the format has none)
  int line_end = 0;
};

struct DocChunk {
  int64_t id = 0;
  int64_t doc_id = 0;
  std::string source_path;
  std::string title;
  std::string heading_path;
  int page = 0;
  int line_begin = 0;
  int line_end = 0;
  std::string location;    // heading path, page and line range as one readable string
  int64_t char_begin = 0;  // byte offsets into the document's extracted text
  int64_t char_end = 0;
  std::string text;
};

struct ChunkHit {
  DocChunk chunk;
  double score = 0;     // higher is better: BM25 relevance, or the fused RRF score in hybrid
  std::string snippet;  // matched terms in [brackets], elisions as "..."
  int bm25_rank = 0;    // hybrid search: 1-based rank by BM25; 0 when not in that ranking
  int vector_rank = 0;  // hybrid search: 1-based rank by embedding similarity; 0 likewise
};

struct DocIngestReport {
  struct Failure {
    std::string path;
    std::string message;
  };
  std::vector<std::string> added;
  std::vector<std::string> updated;
  std::vector<std::string> unchanged;
  std::vector<std::string> removed;
  std::vector<Failure> failed;  // not ingested (and any older version removed)
  // One note per document ingested in this run whose text was not UTF-8:
  // "<path>: converted from Windows-1252 to UTF-8".
  std::vector<std::string> converted;
  // Chunks embedded in this run (of new or changed documents, and any without a vector of
  // the embedder's model); 0 without an embedder.
  int64_t embedded = 0;
};

class DocStore {
 public:
  // Opens or creates the SQLite file and the doc_ tables in it.
  static DocStore open(const std::string& sqlite_path, ChunkOptions options = {});

  DocStore(DocStore&& other) noexcept;
  DocStore& operator=(DocStore&& other) noexcept;
  DocStore(const DocStore&) = delete;
  DocStore& operator=(const DocStore&) = delete;
  ~DocStore();

  // Ingests .md, .markdown, .txt, .html, .htm and .pdf files under `dir` (recursively). A
  // file that cannot be read or parsed is reported in `failed`; the others still ingest.
  DocIngestReport ingest_dir(const std::filesystem::path& dir);

  // From now on ingest_dir() embeds the chunks and search() is hybrid; an empty embedder
  // returns to BM25 alone. Vectors of the same model name are reused across runs.
  void set_embedder(TextEmbedder embedder) { embedder_ = std::move(embedder); }

  // Top-k chunks for free text (an LLM's query): words become quoted FTS5 terms joined by
  // OR, "double-quoted" runs become phrases, and FTS5 operators are plain words. With an
  // embedder, the BM25 and embedding rankings (kFusionDepth each) are fused by RRF; a chunk
  // found by embedding alone has its opening words as snippet. Chunks without a usable
  // vector of the embedder's model are embedded first, so the search may write to the
  // store. Embedding failures throw DocStoreError naming the model.
  std::vector<ChunkHit> search(std::string_view query, int k) const;

  std::optional<DocChunk> chunk(int64_t id) const;

  // True when `passage` occurs in the chunk's text with every whitespace run treated as one
  // space. False for an empty passage or an unknown chunk.
  bool passage_contains(int64_t chunk_id, std::string_view passage) const;

  int64_t chunk_count() const;

 private:
  DocStore(sqlite3* db, ChunkOptions options) : db_(db), options_(options) {}

  sqlite3* db_ = nullptr;
  ChunkOptions options_;
  TextEmbedder embedder_;
};

// The pieces of ingestion, exposed for tests and for analyzers that read a file directly.

// Each byte that does not start a valid UTF-8 sequence becomes U+FFFD.
std::string to_valid_utf8(std::string_view bytes);

ExtractedDoc extract_markdown(std::string_view text, std::string_view file_name);
ExtractedDoc extract_plain_text(std::string_view text, std::string_view file_name);
ExtractedDoc extract_html(std::string_view html, std::string_view file_name);
// Throws DocStoreError naming `file_name` when the bytes are not a readable PDF.
ExtractedDoc extract_pdf(std::string_view pdf_bytes, std::string_view file_name);

// The extracted text that chunk offsets refer to.
std::string joined_text(const ExtractedDoc& doc);
std::vector<ChunkSpan> chunk_document(const ExtractedDoc& doc, const ChunkOptions& options);

// A safe FTS5 MATCH expression for free text; empty when the text has no words.
std::string to_fts_query(std::string_view free_text);

}  // namespace kdr::hka
