#include "hka/knowledge/doc_store.h"

#include <poppler/cpp/poppler-document.h>
#include <poppler/cpp/poppler-global.h>
#include <poppler/cpp/poppler-page.h>
#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <sstream>
#include <utility>

#include "base/utf8.h"
#include "hka/knowledge/encoding.h"
#include "hka/knowledge/retrieval.h"
#include "hka/knowledge/source_files.h"
#include "hka/knowledge/sqlite_util.h"
#include "hka/text.h"

namespace kdr::hka {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

using text::trim;

// Every whitespace run (ASCII or U+00A0) becomes one space; leading/trailing ones go.
std::string collapse_whitespace(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool pending_space = false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (is_space(s[i])) {
      pending_space = true;
      continue;
    }
    if (s[i] == '\xC2' && i + 1 < s.size() && s[i + 1] == '\xA0') {
      pending_space = true;
      ++i;
      continue;
    }
    if (pending_space && !out.empty()) out += ' ';
    pending_space = false;
    out += s[i];
  }
  return out;
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string file_name_of(std::string_view path) {
  return std::filesystem::path(std::string(path)).filename().string();
}

// The open headings, outermost first; a heading closes every heading of its level or deeper.
class HeadingPath {
 public:
  void enter(int level, std::string text) {
    while (!open_.empty() && open_.back().first >= level) open_.pop_back();
    open_.emplace_back(level, std::move(text));
  }
  std::string str() const {
    std::string out;
    for (const auto& [level, text] : open_) {
      if (!out.empty()) out += " > ";
      out += text;
    }
    return out;
  }

 private:
  std::vector<std::pair<int, std::string>> open_;
};

// Markdown and plain text share one line-oriented reader: blank lines end paragraphs, and
// markdown adds ATX/setext headings and fenced code (whose '#' lines are not headings).
ExtractedDoc extract_lines(std::string_view text, std::string_view file_name, bool markdown) {
  ExtractedDoc doc;
  HeadingPath headings;
  std::vector<std::string_view> para;
  int para_first_line = 0;
  int line_no = 0;
  bool in_fence = false;

  auto flush = [&] {
    if (para.empty()) return;
    std::string joined;
    for (size_t i = 0; i < para.size(); ++i) {
      if (i > 0) joined += '\n';
      joined += para[i];
    }
    std::string_view body = trim(joined);
    if (!body.empty()) {
      doc.blocks.push_back({std::string(body), headings.str(), 0, para_first_line,
                            para_first_line + static_cast<int>(para.size()) - 1});
    }
    para.clear();
  };
  auto add_line = [&](std::string_view line) {
    if (para.empty()) para_first_line = line_no;
    para.push_back(line);
  };
  auto enter_heading = [&](int level, std::string_view heading) {
    if (heading.empty()) return;
    headings.enter(level, std::string(heading));
    if (doc.title.empty()) doc.title = heading;
  };

  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = nl + 1;
    ++line_no;
    if (nl == text.size() && line.empty()) break;

    std::string_view stripped = trim(line);
    size_t indent = line.find_first_not_of(' ');
    bool fence_marker = markdown && indent != std::string_view::npos && indent <= 3 &&
                        (stripped.starts_with("```") || stripped.starts_with("~~~"));
    if (in_fence) {
      add_line(line);
      if (fence_marker) {
        in_fence = false;
        flush();
      }
      continue;
    }
    if (fence_marker) {
      flush();
      in_fence = true;
      add_line(line);
      continue;
    }
    if (markdown && indent != std::string_view::npos && indent <= 3 && stripped[0] == '#') {
      size_t level = stripped.find_first_not_of('#');
      if (level == std::string_view::npos) level = stripped.size();
      if (level <= 6 &&
          (level == stripped.size() || stripped[level] == ' ' || stripped[level] == '\t')) {
        flush();
        std::string_view heading = trim(stripped.substr(level));
        // A closing run of '#' is decoration when a space separates it from the text.
        size_t closing = heading.find_last_not_of('#');
        if (closing != std::string_view::npos && closing + 1 < heading.size() &&
            is_space(heading[closing])) {
          heading = trim(heading.substr(0, closing));
        } else if (closing == std::string_view::npos) {
          heading = {};
        }
        enter_heading(static_cast<int>(level), heading);
        continue;
      }
    }
    if (markdown && para.size() == 1 && !stripped.empty() &&
        (stripped.find_first_not_of('=') == std::string_view::npos ||
         (stripped.size() >= 2 && stripped.find_first_not_of('-') == std::string_view::npos))) {
      std::string heading(trim(para.front()));
      para.clear();
      enter_heading(stripped[0] == '=' ? 1 : 2, heading);
      continue;
    }
    if (stripped.empty()) {
      flush();
    } else {
      add_line(line);
    }
  }
  flush();
  if (doc.title.empty()) doc.title = file_name_of(file_name);
  return doc;
}

// Named entities beyond the five XML ones that documents commonly use.
constexpr std::pair<std::string_view, uint32_t> kNamedEntities[] = {
    {"amp", '&'},      {"lt", '<'},       {"gt", '>'},       {"quot", '"'},      {"apos", '\''},
    {"nbsp", ' '},     {"ndash", 0x2013}, {"mdash", 0x2014}, {"hellip", 0x2026}, {"copy", 0xA9},
    {"reg", 0xAE},     {"trade", 0x2122}, {"euro", 0x20AC},  {"pound", 0xA3},    {"yen", 0xA5},
    {"deg", 0xB0},     {"times", 0xD7},   {"lsquo", 0x2018}, {"rsquo", 0x2019},  {"ldquo", 0x201C},
    {"rdquo", 0x201D}, {"middot", 0xB7},  {"plusmn", 0xB1},  {"sect", 0xA7},
};

// &nbsp; becomes a plain space: to search and to quote, it is a word separator like any other.
std::string decode_entities(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    size_t semi = s.find(';', i + 1);
    if (semi == std::string_view::npos || semi - i > 12) {
      out += '&';
      continue;
    }
    std::string_view name = s.substr(i + 1, semi - i - 1);
    bool decoded = false;
    if (name.size() >= 2 && name[0] == '#') {
      bool hex = name[1] == 'x' || name[1] == 'X';
      std::string_view digits = name.substr(hex ? 2 : 1);
      uint32_t cp = 0;
      bool ok = !digits.empty();
      for (char c : digits) {
        int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                : hex && std::isxdigit(static_cast<unsigned char>(c))
                    ? std::tolower(static_cast<unsigned char>(c)) - 'a' + 10
                    : -1;
        if (d < 0) ok = false;
        // Saturate: anything past U+10FFFF decodes to U+FFFD anyway.
        if (ok && cp <= 0x10FFFF) cp = cp * (hex ? 16 : 10) + static_cast<uint32_t>(d);
      }
      if (ok) {
        append_utf8(out, cp);
        decoded = true;
      }
    } else {
      for (const auto& [entity, cp] : kNamedEntities) {
        if (name == entity) {
          append_utf8(out, cp);
          decoded = true;
          break;
        }
      }
    }
    if (decoded) {
      i = semi;
    } else {
      out += '&';  // not an entity we know: the text stays as written
    }
  }
  return out;
}

bool is_block_tag(std::string_view tag) {
  static const std::set<std::string_view> kBlockTags = {
      "p",       "div",     "br",    "hr",         "li",      "ul",         "ol",
      "dl",      "dt",      "dd",    "tr",         "table",   "thead",      "tbody",
      "tfoot",   "caption", "pre",   "blockquote", "section", "article",    "header",
      "footer",  "nav",     "aside", "main",       "figure",  "figcaption", "form",
      "address", "body",    "html",  "details",    "summary"};
  return kBlockTags.contains(tag);
}

size_t find_case_insensitive(std::string_view haystack, std::string_view needle, size_t from) {
  auto it = std::search(haystack.begin() + static_cast<std::ptrdiff_t>(from), haystack.end(),
                        needle.begin(), needle.end(), [](char a, char b) {
                          return std::tolower(static_cast<unsigned char>(a)) ==
                                 std::tolower(static_cast<unsigned char>(b));
                        });
  return it == haystack.end() ? std::string_view::npos : static_cast<size_t>(it - haystack.begin());
}

// The end of a tag starting at `from` (just past its '>'), skipping quoted attribute values.
size_t tag_end(std::string_view html, size_t from) {
  char quote = 0;
  for (size_t i = from; i < html.size(); ++i) {
    if (quote) {
      if (html[i] == quote) quote = 0;
    } else if (html[i] == '"' || html[i] == '\'') {
      quote = html[i];
    } else if (html[i] == '>') {
      return i + 1;
    }
  }
  return html.size();
}

uint64_t fnv1a(std::string_view bytes) {
  uint64_t h = 1469598103934665603ull;
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Poppler reports parse problems through one process-wide hook; the messages of the PDF
// being loaded on this thread go into the error we raise.
thread_local std::string t_poppler_messages;

void collect_poppler_message(const std::string& message, void*) {
  if (t_poppler_messages.size() < 1000) {
    if (!t_poppler_messages.empty()) t_poppler_messages += "; ";
    t_poppler_messages += message;
  }
}

std::string location_of(const DocChunk& c) {
  std::string out = c.heading_path;
  auto add = [&out](const std::string& part) {
    if (!out.empty()) out += ", ";
    out += part;
  };
  if (c.page > 0) add("page " + std::to_string(c.page));
  if (c.line_begin > 0) {
    add(c.line_begin == c.line_end
            ? "line " + std::to_string(c.line_begin)
            : "lines " + std::to_string(c.line_begin) + "-" + std::to_string(c.line_end));
  }
  if (out.empty()) {
    add("chars " + std::to_string(c.char_begin) + "-" + std::to_string(c.char_end));
  }
  return out;
}

// --- SQLite plumbing ---------------------------------------------------------------------

// The store's SQLite plumbing, naming the document store in its errors.
class Statement : public sqlite::Statement<DocStoreError> {
 public:
  Statement(sqlite3* db, std::string_view sql)
      : sqlite::Statement<DocStoreError>(db, sql, "doc store") {}
};

void exec(sqlite3* db, const char* sql) { sqlite::exec<DocStoreError>(db, sql, "doc store"); }

// Commits on commit(); rolls back if destroyed first (an exception mid-way).
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) { exec(db_, "BEGIN IMMEDIATE"); }
  ~Transaction() {
    if (db_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit() {
    exec(db_, "COMMIT");
    db_ = nullptr;
  }

 private:
  sqlite3* db_;
};

// Chunk ids are AUTOINCREMENT so a deleted chunk's id is never reused: a stale citation
// must fail to resolve, not resolve to different text.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS doc_documents(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  path TEXT NOT NULL UNIQUE,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  content_hash TEXT NOT NULL,
  chunking TEXT NOT NULL,
  title TEXT NOT NULL,
  format TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS doc_chunks(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  doc_id INTEGER NOT NULL REFERENCES doc_documents(id),
  seq INTEGER NOT NULL,
  title TEXT NOT NULL,
  heading TEXT NOT NULL,
  page INTEGER NOT NULL,
  line_begin INTEGER NOT NULL,
  line_end INTEGER NOT NULL,
  char_begin INTEGER NOT NULL,
  char_end INTEGER NOT NULL,
  text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS doc_chunks_by_doc ON doc_chunks(doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS doc_chunks_fts USING fts5(
  text, title, heading, content='doc_chunks', content_rowid='id',
  tokenize='porter unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS doc_chunks_fts_insert AFTER INSERT ON doc_chunks BEGIN
  INSERT INTO doc_chunks_fts(rowid, text, title, heading)
  VALUES (new.id, new.text, new.title, new.heading);
END;
CREATE TRIGGER IF NOT EXISTS doc_chunks_fts_delete AFTER DELETE ON doc_chunks BEGIN
  INSERT INTO doc_chunks_fts(doc_chunks_fts, rowid, text, title, heading)
  VALUES ('delete', old.id, old.text, old.title, old.heading);
END;
CREATE TABLE IF NOT EXISTS doc_chunk_vectors(
  chunk_id INTEGER PRIMARY KEY,
  model TEXT NOT NULL,
  vector BLOB NOT NULL);
CREATE TRIGGER IF NOT EXISTS doc_chunk_vectors_delete AFTER DELETE ON doc_chunks BEGIN
  DELETE FROM doc_chunk_vectors WHERE chunk_id = old.id;
END;
)sql";

constexpr const char* kChunkColumns =
    "c.id, c.doc_id, d.path, c.title, c.heading, c.page, c.line_begin, c.line_end, "
    "c.char_begin, c.char_end, c.text";

DocChunk read_chunk(const Statement& s) {
  DocChunk c;
  c.id = s.int64(0);
  c.doc_id = s.int64(1);
  c.source_path = s.text(2);
  c.title = s.text(3);
  c.heading_path = s.text(4);
  c.page = static_cast<int>(s.int64(5));
  c.line_begin = static_cast<int>(s.int64(6));
  c.line_end = static_cast<int>(s.int64(7));
  c.char_begin = s.int64(8);
  c.char_end = s.int64(9);
  c.text = s.text(10);
  c.location = location_of(c);
  return c;
}

void delete_document(sqlite3* db, int64_t doc_id) {
  Statement(db, "DELETE FROM doc_chunks WHERE doc_id = ?1").bind(1, doc_id).run();
  Statement(db, "DELETE FROM doc_documents WHERE id = ?1").bind(1, doc_id).run();
}

// --- embeddings (hybrid search) ----------------------------------------------------------

// What a chunk's vector is computed from: where it sits (its heading path, else the
// document's title) and its text.
std::string embedding_text(const std::string& heading, const std::string& title,
                           const std::string& text) {
  return (heading.empty() ? title : heading) + "\n\n" + text;
}

struct ChunkVectors {
  std::vector<int64_t> ids;
  std::vector<std::vector<float>> vectors;  // one per id
  int64_t computed = 0;                     // embedded by this call
};

// Every chunk with its vector of `embedder.model`. Chunks without a usable one (new,
// ingested without an embedder, another model's, unreadable, or not of `dim` dimensions when
// given) are embedded and their vectors stored first.
ChunkVectors chunk_vectors(sqlite3* db, const TextEmbedder& embedder, std::optional<size_t> dim) {
  ChunkVectors out;
  std::vector<size_t> missing;
  {
    Statement s(db,
                "SELECT c.id, v.model, v.vector FROM doc_chunks c "
                "LEFT JOIN doc_chunk_vectors v ON v.chunk_id = c.id ORDER BY c.id");
    while (s.step()) {
      out.ids.push_back(s.int64(0));
      std::optional<std::vector<float>> vector;
      if (s.text(1) == embedder.model) vector = vector_from_blob(s.blob(2));
      if (vector && (!dim || vector->size() == *dim)) {
        out.vectors.push_back(std::move(*vector));
      } else {
        missing.push_back(out.vectors.size());
        out.vectors.emplace_back();
      }
    }
  }
  if (missing.empty()) return out;
  std::vector<std::string> texts;
  {
    Statement s(db, "SELECT heading, title, text FROM doc_chunks WHERE id = ?1");
    for (size_t m : missing) {
      s.bind(1, out.ids[m]);
      texts.push_back(s.step() ? embedding_text(s.text(0), s.text(1), s.text(2)) : "");
      s.run();  // resets for the next id
    }
  }
  std::vector<std::vector<float>> computed;
  try {
    computed = embed_texts(embedder, texts);
  } catch (const EmbeddingError& e) {
    throw DocStoreError(std::string("doc store: ") + e.what());
  }
  Transaction tx(db);
  Statement put(db,
                "INSERT OR REPLACE INTO doc_chunk_vectors(chunk_id, model, vector) "
                "VALUES (?1, ?2, ?3)");
  for (size_t m = 0; m < missing.size(); ++m) {
    put.bind(1, out.ids[missing[m]]).bind(2, embedder.model);
    put.bind_blob(3, vector_to_blob(computed[m])).run();
    out.vectors[missing[m]] = std::move(computed[m]);
  }
  tx.commit();
  out.computed = static_cast<int64_t>(missing.size());
  return out;
}

// The opening words of a chunk found by embedding alone: about 120 bytes, cut at a space.
std::string opening_words(const std::string& text) {
  const std::string flat = collapse_whitespace(text);
  if (flat.size() <= 120) return flat;
  const size_t cut = flat.rfind(' ', 120);
  return flat.substr(0, cut == std::string::npos || cut == 0 ? 120 : cut) + "...";
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (!in) throw DocStoreError(path.string() + ": cannot read the file");
  return std::move(bytes).str();
}

// The format a file extension names, or empty when the store does not ingest it.
std::string format_of(const std::filesystem::path& path) {
  std::string ext = lowercase(path.extension().string());
  if (ext == ".md" || ext == ".markdown") return "markdown";
  if (ext == ".txt") return "text";
  if (ext == ".html" || ext == ".htm") return "html";
  if (ext == ".pdf") return "pdf";
  return "";
}

// `encoding` gets the encoding the text was read as (PDFs hold their own: UTF-8 from Poppler).
ExtractedDoc extract(const std::string& format, const std::string& bytes, const std::string& path,
                     std::string& encoding) {
  encoding = kUtf8;
  if (format == "pdf") return extract_pdf(bytes, path);
  const std::string text = to_utf8(bytes, &encoding);
  if (format == "html") return extract_html(text, path);
  if (format == "markdown") return extract_markdown(text, path);
  return extract_plain_text(text, path);
}

bool is_utf8_continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// Whether a sentence ends just before text[end]: ".", "!" or "?", then up to two closing
// quotes or brackets, then whitespace; or a CJK full stop, exclamation or question mark,
// which need no space after them.
bool ends_sentence(std::string_view text, size_t end) {
  if (end == 0 || end >= text.size()) return false;
  const std::string_view before = text.substr(0, end);
  for (std::string_view mark : {"\xE3\x80\x82", "\xEF\xBC\x81", "\xEF\xBC\x9F"}) {
    if (before.ends_with(mark)) return true;
  }
  if (!is_space(text[end])) return false;
  size_t i = end;
  for (int closing = 0; closing < 2 && i > 0 &&
                        std::string_view("\"')]").find(text[i - 1]) != std::string_view::npos;
       ++closing) {
    --i;
  }
  return i > 0 && (text[i - 1] == '.' || text[i - 1] == '!' || text[i - 1] == '?');
}

// Where a chunk that starts at `pos` ends when more than `target` bytes of its section are
// left: the last paragraph break in the second half of the window [pos, pos + target], else
// the last sentence end there, else the window's last whitespace, else (one word longer than
// the target) its last UTF-8 character boundary. Only the window is searched, so cutting a
// section costs time in proportion to its length.
size_t cut_point(std::string_view text, size_t pos, size_t target) {
  const size_t limit = pos + target;  // text[limit] exists: the section goes on past it
  const size_t half = pos + target / 2;
  const size_t para_break = text.substr(half + 1, limit - half).rfind("\n\n");
  if (para_break != std::string_view::npos) return half + 1 + para_break;
  for (size_t end = limit; end > half; --end) {
    if (ends_sentence(text, end)) return end;
  }
  for (size_t end = limit; end > pos; --end) {
    if (is_space(text[end])) return end;
  }
  size_t end = limit;
  while (end > pos && is_utf8_continuation(text[end])) --end;
  if (end > pos) return end;
  // A target shorter than one character: the chunk is that character.
  end = pos + 1;
  while (end < text.size() && is_utf8_continuation(text[end])) ++end;
  return end;
}

// Newlines in text[0, pos) for positions that move mostly forward, as chunking asks for
// them: each call costs the distance from the previous one.
class NewlineCounter {
 public:
  explicit NewlineCounter(std::string_view text) : text_(text) {}
  size_t operator()(size_t pos) {
    while (pos_ < pos) count_ += text_[pos_++] == '\n';
    while (pos_ > pos) count_ -= text_[--pos_] == '\n';
    return count_;
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;
  size_t count_ = 0;
};

// The files under `root` the store ingests, sorted; entries that cannot be read go into
// `failed` (source_files.h).
std::vector<std::filesystem::path> document_files(const std::filesystem::path& root,
                                                  std::vector<DocIngestReport::Failure>& failed) {
  std::vector<std::filesystem::path> files;
  std::string root_error;
  const auto wanted = [](const std::filesystem::path& path) { return !format_of(path).empty(); };
  const auto skipped = [&](const std::filesystem::path& path, const std::string& message) {
    failed.push_back({path.string(), message});
  };
  if (!list_source_files(root, wanted, skipped, files, &root_error)) {
    throw DocStoreError(root.string() + ": cannot list the directory (" + root_error + ")");
  }
  return files;
}

}  // namespace

std::string to_valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t len = utf8_sequence_length(s, i);
    if (len > 0) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += kReplacement;
      ++i;
    }
  }
  return out;
}

ExtractedDoc extract_markdown(std::string_view text, std::string_view file_name) {
  return extract_lines(text, file_name, /*markdown=*/true);
}

ExtractedDoc extract_plain_text(std::string_view text, std::string_view file_name) {
  return extract_lines(text, file_name, /*markdown=*/false);
}

ExtractedDoc extract_html(std::string_view html, std::string_view file_name) {
  ExtractedDoc doc;
  HeadingPath headings;
  std::string para;          // raw text of the open paragraph
  std::string heading_text;  // raw text of the open heading
  int heading_level = 0;

  auto flush = [&] {
    std::string body = collapse_whitespace(decode_entities(para));
    if (!body.empty()) doc.blocks.push_back({std::move(body), headings.str(), 0, 0, 0});
    para.clear();
  };

  size_t i = 0;
  while (i < html.size()) {
    if (html[i] != '<') {
      size_t next = html.find('<', i);
      if (next == std::string_view::npos) next = html.size();
      (heading_level ? heading_text : para).append(html.substr(i, next - i));
      i = next;
      continue;
    }
    if (html.substr(i).starts_with("<!--")) {
      size_t close = html.find("-->", i + 4);
      i = close == std::string_view::npos ? html.size() : close + 3;
      continue;
    }
    size_t name_start = i + 1;
    bool closing = name_start < html.size() && html[name_start] == '/';
    if (closing) ++name_start;
    if (name_start < html.size() && (html[name_start] == '!' || html[name_start] == '?')) {
      i = tag_end(html, name_start);  // doctype, processing instruction
      continue;
    }
    size_t name_end = name_start;
    while (name_end < html.size() && std::isalnum(static_cast<unsigned char>(html[name_end]))) {
      ++name_end;
    }
    if (name_end == name_start) {  // "a < b": a bare '<' is text
      (heading_level ? heading_text : para) += '<';
      ++i;
      continue;
    }
    std::string tag = lowercase(html.substr(name_start, name_end - name_start));
    i = tag_end(html, name_end);

    if (!closing && (tag == "script" || tag == "style" || tag == "head" || tag == "noscript" ||
                     tag == "template" || tag == "title")) {
      size_t close = find_case_insensitive(html, "</" + tag, i);
      // An unclosed <head> ends where the body begins; other unclosed raw blocks run to the
      // end, as browsers treat them.
      if (close == std::string_view::npos && tag == "head") continue;
      i = close == std::string_view::npos ? html.size() : tag_end(html, close + 2 + tag.size());
      continue;
    }
    if (tag.size() == 2 && tag[0] == 'h' && tag[1] >= '1' && tag[1] <= '6') {
      if (!closing) {
        flush();
        heading_level = tag[1] - '0';
        heading_text.clear();
      } else if (heading_level) {
        std::string heading = collapse_whitespace(decode_entities(heading_text));
        if (!heading.empty()) {
          headings.enter(heading_level, heading);
          if (doc.title.empty()) doc.title = heading;
        }
        heading_level = 0;
      }
      continue;
    }
    if (tag == "td" || tag == "th") {
      (heading_level ? heading_text : para) += ' ';
    } else if (is_block_tag(tag)) {
      if (heading_level) {
        heading_text += ' ';
      } else {
        flush();
      }
    }
  }
  if (heading_level) para += heading_text;  // an unclosed heading is still text
  flush();
  if (doc.title.empty()) doc.title = file_name_of(file_name);
  return doc;
}

ExtractedDoc extract_pdf(std::string_view pdf_bytes, std::string_view file_name) {
  static std::once_flag hook_installed;
  std::call_once(hook_installed,
                 [] { poppler::set_debug_error_function(collect_poppler_message, nullptr); });
  t_poppler_messages.clear();
  std::unique_ptr<poppler::document> pdf(
      poppler::document::load_from_raw_data(pdf_bytes.data(), static_cast<int>(pdf_bytes.size())));
  std::string name(file_name);
  if (!pdf) {
    throw DocStoreError(name + ": not a readable PDF" +
                        (t_poppler_messages.empty() ? "" : " (" + t_poppler_messages + ")"));
  }
  if (pdf->is_locked()) throw DocStoreError(name + ": the PDF is encrypted");
  if (pdf->pages() <= 0) throw DocStoreError(name + ": the PDF has no pages");

  ExtractedDoc doc;
  doc.title = file_name_of(file_name);
  for (int p = 0; p < pdf->pages(); ++p) {
    std::unique_ptr<poppler::page> page(pdf->create_page(p));
    if (!page) throw DocStoreError(name + ": cannot read page " + std::to_string(p + 1));
    poppler::byte_array utf8 = page->text().to_utf8();
    std::string text = to_valid_utf8(std::string_view(utf8.data(), utf8.size()));
    std::replace(text.begin(), text.end(), '\f', '\n');
    // Poppler separates lines with newlines; a blank line is the only paragraph cue.
    size_t pos = 0;
    while (pos < text.size()) {
      size_t gap = text.find("\n\n", pos);
      if (gap == std::string::npos) gap = text.size();
      std::string_view body = trim(std::string_view(text).substr(pos, gap - pos));
      if (!body.empty()) doc.blocks.push_back({std::string(body), "", p + 1, 0, 0});
      pos = gap + 2;
    }
  }
  return doc;
}

std::string joined_text(const ExtractedDoc& doc) {
  std::string out;
  for (size_t b = 0; b < doc.blocks.size(); ++b) {
    if (b > 0) out += "\n\n";
    out += doc.blocks[b].text;
  }
  return out;
}

std::vector<ChunkSpan> chunk_document(const ExtractedDoc& doc, const ChunkOptions& options) {
  const std::string text = joined_text(doc);
  std::vector<size_t> block_begin;
  std::vector<size_t> newlines_before_block;  // in `text`, the "\n\n" separators included
  size_t offset = 0;
  size_t newlines = 0;
  for (const TextBlock& block : doc.blocks) {
    block_begin.push_back(offset);
    newlines_before_block.push_back(newlines);
    offset += block.text.size() + 2;
    newlines += static_cast<size_t>(std::count(block.text.begin(), block.text.end(), '\n')) + 2;
  }
  auto block_at = [&](size_t pos) {
    return static_cast<size_t>(std::upper_bound(block_begin.begin(), block_begin.end(), pos) -
                               block_begin.begin() - 1);
  };
  NewlineCounter newlines_before(text);
  auto line_at = [&](size_t pos) {
    const size_t b = block_at(pos);
    if (doc.blocks[b].line_begin == 0) return 0;
    return doc.blocks[b].line_begin +
           static_cast<int>(newlines_before(pos) - newlines_before_block[b]);
  };
  const size_t target = std::max<size_t>(options.target_chars, 1);

  std::vector<ChunkSpan> spans;
  for (size_t first = 0; first < doc.blocks.size();) {
    // A section is a run of blocks under one heading on one page.
    size_t last = first;
    while (last + 1 < doc.blocks.size() &&
           doc.blocks[last + 1].heading_path == doc.blocks[first].heading_path &&
           doc.blocks[last + 1].page == doc.blocks[first].page) {
      ++last;
    }
    const size_t section_end = block_begin[last] + doc.blocks[last].text.size();
    size_t pos = block_begin[first];
    while (pos < section_end) {
      const size_t end = section_end - pos > target ? cut_point(text, pos, target) : section_end;
      size_t trimmed_end = end;
      while (trimmed_end > pos && is_space(text[trimmed_end - 1])) --trimmed_end;
      spans.push_back({pos, trimmed_end, block_at(pos), line_at(pos), line_at(trimmed_end - 1)});
      if (end >= section_end) break;

      // The next chunk starts at the first word beginning inside the overlap window.
      size_t next = end;
      if (options.overlap_chars > 0 && trimmed_end > pos + 1) {
        size_t start =
            std::max(pos + 1, trimmed_end - std::min(options.overlap_chars, trimmed_end - pos - 1));
        while (start < trimmed_end && !(is_space(text[start - 1]) && !is_space(text[start]))) {
          ++start;
        }
        if (start < trimmed_end) next = start;
      }
      while (next < section_end && is_space(text[next])) ++next;
      pos = next;
    }
    first = last + 1;
  }
  return spans;
}

std::string to_fts_query(std::string_view free_text) {
  // Only letters, digits and non-ASCII bytes survive, each term inside double quotes, so
  // nothing the caller writes can be FTS5 syntax: AND/OR/NOT/NEAR, '*', ':', '-', '(' and
  // '^' are either dropped or searched as plain words.
  constexpr size_t kMaxTerms = 64;
  std::vector<std::string> terms;
  std::vector<std::string> phrase;
  std::string word;
  bool in_quote = false;
  auto end_word = [&] {
    if (word.empty()) return;
    (in_quote ? phrase : terms).push_back(std::move(word));
    word.clear();
  };
  auto end_phrase = [&] {
    if (phrase.empty()) return;
    std::string joined;
    for (const std::string& w : phrase) joined += (joined.empty() ? "" : " ") + w;
    terms.push_back(std::move(joined));
    phrase.clear();
  };
  for (char ch : free_text) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"') {
      end_word();
      if (in_quote) end_phrase();
      in_quote = !in_quote;
    } else if (std::isalnum(c) || c >= 0x80) {
      word += ch;
    } else {
      end_word();
    }
  }
  end_word();
  end_phrase();

  std::string query;
  std::set<std::string> seen;
  size_t count = 0;
  for (const std::string& term : terms) {
    if (count == kMaxTerms) break;
    if (!seen.insert(lowercase(term)).second) continue;
    if (!query.empty()) query += " OR ";
    query += '"' + term + '"';
    ++count;
  }
  return query;
}

DocStore DocStore::open(const std::string& sqlite_path, ChunkOptions options) {
  if (options.target_chars == 0) throw DocStoreError("doc store: target_chars must be > 0");
  if (options.overlap_chars >= options.target_chars) {
    throw DocStoreError("doc store: overlap_chars (" + std::to_string(options.overlap_chars) +
                        ") must be smaller than target_chars (" +
                        std::to_string(options.target_chars) + ")");
  }
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(sqlite_path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                           nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    throw DocStoreError(sqlite_path + ": cannot open the SQLite file (" + message + ")");
  }
  DocStore store(db, options);
  // The table store may hold the file at the same moment; wait for it rather than fail.
  sqlite3_busy_timeout(db, 5000);
  exec(db, kSchema);
  return store;
}

DocStore::DocStore(DocStore&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      options_(other.options_),
      embedder_(std::move(other.embedder_)) {}

DocStore& DocStore::operator=(DocStore&& other) noexcept {
  if (this != &other) {
    sqlite3_close(db_);
    db_ = std::exchange(other.db_, nullptr);
    options_ = other.options_;
    embedder_ = std::move(other.embedder_);
  }
  return *this;
}

DocStore::~DocStore() { sqlite3_close(db_); }

DocIngestReport DocStore::ingest_dir(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path root = fs::canonical(dir, ec);
  if (ec || !fs::is_directory(root)) {
    throw DocStoreError(dir.string() + ": not a readable directory" +
                        (ec ? " (" + ec.message() + ")" : ""));
  }
  DocIngestReport report;
  const std::vector<fs::path> files = document_files(root, report.failed);

  // Changing the chunk options re-chunks every document on the next ingest.
  const std::string chunking =
      std::to_string(options_.target_chars) + "/" + std::to_string(options_.overlap_chars);
  std::set<std::string> seen;
  for (const fs::path& file : files) {
    const std::string path = file.string();
    const std::string format = format_of(file);
    seen.insert(path);

    std::optional<int64_t> old_id;
    int64_t old_size = -1;
    int64_t old_mtime = -1;
    std::string old_hash;
    std::string old_chunking;
    {
      Statement s(db_,
                  "SELECT id, size, mtime_ns, content_hash, chunking FROM doc_documents "
                  "WHERE path = ?1");
      s.bind(1, path);
      if (s.step()) {
        old_id = s.int64(0);
        old_size = s.int64(1);
        old_mtime = s.int64(2);
        old_hash = s.text(3);
        old_chunking = s.text(4);
      }
    }

    int64_t size = -1;
    int64_t mtime = -1;
    std::string hash;
    std::optional<ExtractedDoc> doc;
    std::string encoding;
    std::string failure;
    try {
      std::error_code stat_error;
      size = static_cast<int64_t>(fs::file_size(file, stat_error));
      auto time = fs::last_write_time(file, stat_error);
      if (stat_error) throw DocStoreError(path + ": cannot stat (" + stat_error.message() + ")");
      mtime = std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count();
      if (old_id && old_size == size && old_mtime == mtime && old_chunking == chunking) {
        report.unchanged.push_back(path);
        continue;
      }
      const std::string bytes = read_file(file);
      hash = hex64(fnv1a(bytes));
      if (old_id && old_hash == hash && old_chunking == chunking) {
        // Touched but not edited: remember the new mtime so the next run skips the read.
        Statement(db_, "UPDATE doc_documents SET size = ?1, mtime_ns = ?2 WHERE id = ?3")
            .bind(1, size)
            .bind(2, mtime)
            .bind(3, *old_id)
            .run();
        report.unchanged.push_back(path);
        continue;
      }
      doc = extract(format, bytes, path, encoding);
    } catch (const DocStoreError& e) {
      failure = e.what();
    }

    Transaction tx(db_);
    if (old_id) delete_document(db_, *old_id);
    if (!doc) {
      tx.commit();
      report.failed.push_back({path, failure});
      continue;
    }
    Statement insert_doc(db_,
                         "INSERT INTO doc_documents(path, size, mtime_ns, content_hash, "
                         "chunking, title, format) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    insert_doc.bind(1, path).bind(2, size).bind(3, mtime).bind(4, hash).bind(5, chunking);
    insert_doc.bind(6, doc->title).bind(7, format).run();
    const int64_t doc_id = sqlite3_last_insert_rowid(db_);

    const std::string text = joined_text(*doc);
    Statement insert_chunk(db_,
                           "INSERT INTO doc_chunks(doc_id, seq, title, heading, page, "
                           "line_begin, line_end, char_begin, char_end, text) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    int64_t seq = 0;
    for (const ChunkSpan& span : chunk_document(*doc, options_)) {
      const TextBlock& block = doc->blocks[span.first_block];
      insert_chunk.bind(1, doc_id).bind(2, seq++).bind(3, doc->title).bind(4, block.heading_path);
      insert_chunk.bind(5, block.page).bind(6, span.line_begin).bind(7, span.line_end);
      insert_chunk.bind(8, static_cast<int64_t>(span.begin))
          .bind(9, static_cast<int64_t>(span.end));
      insert_chunk.bind(10, std::string_view(text).substr(span.begin, span.end - span.begin));
      insert_chunk.run();
    }
    tx.commit();
    (old_id ? report.updated : report.added).push_back(path);
    if (encoding != kUtf8) report.converted.push_back(conversion_note(path, encoding));
  }

  // Documents under this directory whose file is gone.
  std::vector<std::pair<int64_t, std::string>> gone;
  {
    const std::string prefix = root.string() + "/";
    Statement s(db_, "SELECT id, path FROM doc_documents");
    while (s.step()) {
      std::string path = s.text(1);
      if (path.starts_with(prefix) && !seen.contains(path)) gone.emplace_back(s.int64(0), path);
    }
  }
  for (const auto& [id, path] : gone) {
    Transaction tx(db_);
    delete_document(db_, id);
    tx.commit();
    report.removed.push_back(path);
  }
  if (embedder_) report.embedded = chunk_vectors(db_, embedder_, std::nullopt).computed;
  return report;
}

namespace {

std::vector<ChunkHit> bm25_search(sqlite3* db, std::string_view query, int k) {
  const std::string match = to_fts_query(query);
  if (match.empty() || k <= 0) return {};
  const std::string sql =
      std::string("SELECT ") + kChunkColumns +
      ", bm25(doc_chunks_fts) AS score, snippet(doc_chunks_fts, -1, '[', ']', '...', 16) "
      "FROM doc_chunks_fts JOIN doc_chunks c ON c.id = doc_chunks_fts.rowid "
      "JOIN doc_documents d ON d.id = c.doc_id "
      "WHERE doc_chunks_fts MATCH ?1 ORDER BY score, c.id LIMIT ?2";
  Statement s(db, sql.c_str());
  s.bind(1, match).bind(2, static_cast<int64_t>(k));
  std::vector<ChunkHit> hits;
  while (s.step()) {
    // bm25() is lower-is-better; callers get higher-is-better.
    hits.push_back({read_chunk(s), -s.real(11), s.text(12)});
  }
  return hits;
}

}  // namespace

std::vector<ChunkHit> DocStore::search(std::string_view query, int k) const {
  if (!embedder_) return bm25_search(db_, query, k);
  if (k <= 0 || to_fts_query(query).empty()) return {};
  std::vector<ChunkHit> lexical = bm25_search(db_, query, std::max(k, kFusionDepth));
  const std::string query_text(query);
  std::vector<float> query_vector;
  try {
    query_vector = embed_texts(embedder_, std::span<const std::string>(&query_text, 1)).front();
  } catch (const EmbeddingError& e) {
    throw DocStoreError(std::string("doc store: ") + e.what());
  }
  const ChunkVectors stored = chunk_vectors(db_, embedder_, query_vector.size());
  std::vector<std::vector<int64_t>> rankings(2);
  for (const ChunkHit& h : lexical) rankings[0].push_back(h.chunk.id);
  for (const auto& [i, similarity] : rank_by_cosine(query_vector, stored.vectors, kFusionDepth)) {
    rankings[1].push_back(stored.ids[i]);
  }
  std::vector<ChunkHit> hits;
  for (const FusedHit<int64_t>& f : fuse_rankings(rankings)) {
    if (static_cast<int>(hits.size()) == k) break;
    ChunkHit hit;
    if (f.ranks[0] > 0) {
      hit = std::move(lexical[static_cast<size_t>(f.ranks[0] - 1)]);
    } else if (std::optional<DocChunk> c = chunk(f.key)) {
      hit.chunk = std::move(*c);
      hit.snippet = opening_words(hit.chunk.text);
    } else {
      continue;
    }
    hit.score = f.score;
    hit.bm25_rank = f.ranks[0];
    hit.vector_rank = f.ranks[1];
    hits.push_back(std::move(hit));
  }
  return hits;
}

std::optional<DocChunk> DocStore::chunk(int64_t id) const {
  const std::string sql = std::string("SELECT ") + kChunkColumns +
                          " FROM doc_chunks c JOIN doc_documents d ON d.id = c.doc_id "
                          "WHERE c.id = ?1";
  Statement s(db_, sql.c_str());
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return read_chunk(s);
}

bool DocStore::passage_contains(int64_t chunk_id, std::string_view passage) const {
  const std::string needle = collapse_whitespace(passage);
  if (needle.empty()) return false;
  std::optional<DocChunk> c = chunk(chunk_id);
  return c && collapse_whitespace(c->text).find(needle) != std::string::npos;
}

int64_t DocStore::chunk_count() const {
  Statement s(db_, "SELECT count(*) FROM doc_chunks");
  s.step();
  return s.int64(0);
}

}  // namespace kdr::hka
