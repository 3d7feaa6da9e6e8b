// The structured-knowledge analyst: data facts for each part of the question (computed from
// the retrieved tables, ranked, chosen with the model), and the SQL the coder model writes
// when a part needs something the facts do not hold.
#include <algorithm>
#include <cmath>

#include "hka/analysis/fact_text.h"
#include "hka/chart/chart.h"
#include "hka/pipeline/prose.h"
#include "hka/pipeline/run.h"
#include "hka/text.h"

namespace kdr::hka {

namespace {

constexpr size_t kCandidates = 14;  // facts offered to the model per part
constexpr size_t kChosenAtMost = 7;
// The best-ranked facts are stated whatever the model picks: more when the question has fewer
// parts, so that a one-part question still gets a full section.
size_t always_top(size_t parts) { return parts <= 1 ? 5 : parts == 2 ? 4 : 3; }

// A query's text for comparing queries: whitespace runs as one space, no trailing `;`.
std::string normalized_sql(const std::string& sql) {
  std::string out;
  for (char c : sql) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == ';')) out.pop_back();
  return out;
}

std::string csv_preview(const QueryResult& result, size_t max_rows) {
  QueryResult head;
  head.columns = result.columns;
  for (size_t i = 0; i < result.rows.size() && i < max_rows; ++i)
    head.rows.push_back(result.rows[i]);
  std::string csv = to_csv(head);
  if (result.rows.size() > max_rows) {
    csv += "... (" + std::to_string(result.rows.size() - max_rows) + " more rows)\r\n";
  }
  return csv;
}

}  // namespace

const analysis::Fact* Run::fact(const std::string& id) const {
  for (const analysis::Fact& f : facts_) {
    if (f.id == id) return &f;
  }
  return nullptr;
}

std::string Run::cite_fact(const std::string& id) {
  auto [it, inserted] = fact_keys_.try_emplace(id, "");
  if (inserted) it->second = "A" + std::to_string(fact_keys_.size());
  return it->second;
}

void Run::find_facts(Subtask& subtask) {
  // The tables this part is about: retrieval over the catalogue (BM25, or hybrid with an
  // embedding model) for the part and the question, at most five; every table when there
  // are few.
  std::vector<TableInfo> all = tables_->tables();
  std::vector<TableInfo> picked;
  if (all.size() <= 3) {
    picked = all;
  } else {
    std::vector<std::string> names;
    for (const std::string& q : {subtask.part + " " + o_.question, o_.question}) {
      for (const TableHit& h : tables_->search(q, 4)) {
        if (std::find(names.begin(), names.end(), h.table) == names.end()) names.push_back(h.table);
      }
    }
    for (const std::string& n : names) {
      for (const TableInfo& t : all) {
        if (t.name == n && picked.size() < 5) picked.push_back(t);
      }
    }
    if (picked.empty()) picked.assign(all.begin(), all.begin() + std::min<size_t>(all.size(), 3));
  }
  std::vector<std::string> problems;
  subtask.candidates = finder_->facts(picked, subtask.profile, 80, &problems);
  subtask.tables.clear();
  for (const TableInfo& t : picked) subtask.tables.push_back(t.name);
  for (const std::string& p : problems) trace({{"type", "facts_skipped"}, {"reason", p}});
  for (const analysis::Fact& f : subtask.candidates) {
    if (!fact(f.id)) facts_.push_back(f);
  }
  json ids = json::array();
  for (size_t i = 0; i < subtask.candidates.size() && i < kCandidates; ++i)
    ids.push_back(subtask.candidates[i].id);
  trace({{"type", "facts"},
         {"part", subtask.part},
         {"tables", subtask.tables},
         {"candidates", subtask.candidates.size()},
         {"top", ids}});
}

void Run::choose_facts(Subtask& subtask) {
  // Facts an earlier part already states are not stated again.
  std::set<std::string> earlier;
  for (const Subtask& s : subtasks_) {
    if (&s == &subtask) break;
    earlier.insert(s.chosen.begin(), s.chosen.end());
  }
  std::vector<analysis::Fact> fresh;
  for (const analysis::Fact& f : subtask.candidates) {
    if (!earlier.count(f.id)) fresh.push_back(f);
  }
  subtask.candidates = std::move(fresh);
  const size_t n = std::min(kCandidates, subtask.candidates.size());
  if (n == 0) return;
  // What the part asks for comes first: for each kind of question it is, the best facts of
  // the types that answer it; then the best ranked.
  std::vector<std::string> picks;
  for (const std::string& kind : analysis::kinds_in_order()) {
    if (!subtask.profile.kinds.count(kind)) continue;
    for (const std::string& type : analysis::answer_types(kind)) {
      for (size_t i = 0; i < subtask.candidates.size(); ++i) {
        const analysis::Fact& f = subtask.candidates[i];
        if (f.type != type || !analysis::answers(f, kind)) continue;
        // Only a fact about the question: one far less relevant than the best is not its answer.
        if (f.relevance < 0.6 * subtask.candidates.front().relevance) continue;
        if (std::find(picks.begin(), picks.end(), f.id) == picks.end() &&
            picks.size() < always_top(subtasks_.size()) + 1)
          picks.push_back(f.id);
        break;
      }
    }
  }
  // Facts that answer what a later part asks (and this one does not) are left to that part.
  std::set<std::string> later_kinds;
  bool after = false;
  for (const Subtask& s : subtasks_) {
    if (after) later_kinds.insert(s.profile.kinds.begin(), s.profile.kinds.end());
    after = after || &s == &subtask;
  }
  auto for_later = [&](const analysis::Fact& f) {
    for (const std::string& k : later_kinds) {
      if (!subtask.profile.kinds.count(k) && analysis::answers(f, k)) return true;
    }
    return false;
  };
  for (size_t i = 0; i < n && picks.size() < always_top(subtasks_.size()); ++i) {
    const analysis::Fact& f = subtask.candidates[i];
    if (std::find(picks.begin(), picks.end(), f.id) == picks.end() && !for_later(f))
      picks.push_back(f.id);
  }
  // The model picks among the candidates by their ids (an enum: even a small model answers
  // validly). Its picks join the best-ranked ones.
  std::vector<std::string> ids;
  std::string listing;
  for (size_t i = 0; i < n; ++i) {
    ids.push_back("c" + std::to_string(i + 1));
    listing += "c" + std::to_string(i + 1) + ": " + subtask.candidates[i].text + "\n";
  }
  const ojson schema = prompts::choose_facts_schema(ids, 4);
  std::optional<json> answer;
  bool out_of_budget = false;
  try {
    answer = ask_json("supervisor",
                      {{"system", prompts::system_prompt(prompts::kChooseFacts, schema), {}},
                       {"user",
                        "Research question: " + o_.question + "\nThis part: " + subtask.part +
                            "\n\nCandidate facts:\n<data>\n" + listing + "</data>",
                        {}}},
                      schema);
  } catch (const BudgetExhausted&) {
    out_of_budget = true;  // the facts ranked first still make the section
  }
  json model_picks = json::array();
  if (answer) {
    for (const json& id : (*answer)["facts"]) {
      const std::string s = id.get<std::string>();
      const size_t i = static_cast<size_t>(std::stoul(s.substr(1))) - 1;
      if (i >= n) continue;
      model_picks.push_back(subtask.candidates[i].id);
      if (std::find(picks.begin(), picks.end(), subtask.candidates[i].id) == picks.end() &&
          picks.size() < kChosenAtMost) {
        picks.push_back(subtask.candidates[i].id);
      }
    }
  }
  // The section states them in rank order.
  std::vector<std::string> ordered;
  for (const analysis::Fact& f : subtask.candidates) {
    if (std::find(picks.begin(), picks.end(), f.id) != picks.end()) ordered.push_back(f.id);
  }
  subtask.chosen = ordered;
  trace({{"type", "tool"},
         {"tool", "choose_facts"},
         {"part", subtask.part},
         {"model_picks", model_picks},
         {"chosen", subtask.chosen}});
  if (out_of_budget) throw BudgetExhausted{};
}

std::string Run::table_context(const std::vector<std::string>& names,
                               const std::string& question) const {
  // Prompts must fit a small model's context: a table with many columns (one per year, say)
  // is described by its first columns, the columns the question names, and a summary of the
  // rest; three sample rows of at most those columns.
  constexpr size_t kColumnsShown = 16;
  const std::vector<std::string> qwords = text::words(question);
  std::string out;
  for (const std::string& name : names) {
    const std::vector<TableInfo> all = tables_->tables();
    const auto it =
        std::find_if(all.begin(), all.end(), [&](const TableInfo& t) { return t.name == name; });
    if (it == all.end()) continue;
    const TableInfo& t = *it;
    std::vector<size_t> shown;
    for (size_t c = 0; c < t.columns.size(); ++c) {
      if (shown.size() < kColumnsShown / 2) shown.push_back(c);
    }
    for (size_t c = 0; c < t.columns.size() && shown.size() < kColumnsShown; ++c) {
      if (std::find(shown.begin(), shown.end(), c) != shown.end()) continue;
      if (analysis::names(qwords, t.columns[c].header)) shown.push_back(c);
    }
    for (size_t c = t.columns.size(); c-- > 0 && shown.size() < kColumnsShown;) {
      if (std::find(shown.begin(), shown.end(), c) == shown.end()) shown.push_back(c);
    }
    std::sort(shown.begin(), shown.end());
    out += "TABLE " + t.name + " -- " + t.title + " (" + std::to_string(t.row_count) +
           " rows)\n  " + text::shorten(t.description, 400) + "\n";
    std::string cols;
    for (size_t c : shown) {
      const ColumnInfo& col = t.columns[c];
      out += "  " + col.name + " " + col.type +
             (col.unit.empty() ? "" : " [unit " + col.unit + "]") +
             (col.type == "DATE" ? " [ISO yyyy-mm-dd text]" : "") + " -- header \"" +
             text::shorten(col.header, 60) + "\"";
      if (!col.samples.empty()) out += "; e.g. " + text::shorten(col.samples[0], 40);
      out += "\n";
      cols += (cols.empty() ? "" : ", ") + std::string("\"") + col.name + "\"";
    }
    if (shown.size() < t.columns.size()) {
      out += "  ... and " + std::to_string(t.columns.size() - shown.size()) + " more columns (" +
             t.columns[t.columns.size() / 2].name + " ...), of the same kind\n";
    }
    try {
      Limits limits;
      limits.max_rows = 3;
      const QueryResult sample =
          run_readonly(db_path_, "SELECT " + cols + " FROM \"" + name + "\" LIMIT 3", limits);
      out += "  first rows (CSV):\n" + text::truncate(to_csv(sample), 1200);
    } catch (const SqlError&) {
      // The schema alone still lets the coder write SQL.
    }
    out += "\n";
  }
  return text::truncate(out, 6000);
}

std::vector<std::string> Run::pick_tables(Subtask& subtask, const std::string& question) {
  // Retrieval over titles, descriptions, columns and sample values, then the model keeps the
  // tables the question needs (several may be joined).
  std::vector<TableHit> hits = tables_->search(question + " " + subtask.goal, o_.rerank_candidates);
  if (hits.empty()) {
    for (const TableInfo& t : tables_->tables()) {
      if (static_cast<int32_t>(hits.size()) == o_.rerank_candidates) break;
      hits.push_back({t.name, t.title, 0.0});
    }
  }
  std::vector<std::string> chosen;
  if (hits.size() == 1) {
    chosen.push_back(hits[0].table);
  } else {
    std::vector<std::string> names;
    std::string listing;
    for (const TableHit& h : hits) {
      names.push_back(h.table);
      listing += text::truncate(tables_->describe(h.table), 600) + "\n";
    }
    const ojson schema = prompts::rerank_schema(names, o_.max_tables_per_analysis);
    std::optional<json> answer = ask_json(
        "rerank",
        {{"system", prompts::system_prompt(prompts::kRerank, schema), {}},
         {"user",
          "Question: " + question + "\n\nCandidate tables:\n<data>\n" + listing + "</data>",
          {}}},
        schema);
    if (answer) {
      for (const json& t : (*answer)["tables"]) {
        const std::string name = t.get<std::string>();
        if (std::find(chosen.begin(), chosen.end(), name) == chosen.end()) chosen.push_back(name);
      }
    }
    if (chosen.empty()) chosen.push_back(hits[0].table);
  }
  json candidates = json::array();
  for (const TableHit& h : hits) candidates.push_back(h.table);
  trace({{"type", "tool"},
         {"tool", "retrieve_tables"},
         {"input", question},
         {"candidates", candidates},
         {"chosen", chosen}});
  return chosen;
}

std::string Run::table_titles(const std::vector<std::string>& names) const {
  std::string titles;
  for (const std::string& name : names) {
    for (const TableInfo& t : tables_->tables()) {
      if (t.name == name) titles += (titles.empty() ? "" : "; ") + t.title;
    }
  }
  return titles;
}

Run::Query Run::write_query(Subtask& subtask, const std::string& question,
                            std::vector<std::string>& chosen) {
  // The coder writes SQL and a chart; each candidate runs read-only and is checked, with repair
  // rounds fed the problem. Only the latest answer and its problem stay in the prompt, so that
  // repairs fit a small model's context.
  Query q;
  const ojson schema = prompts::coder_schema();
  const std::string context = table_context(chosen, question + " " + subtask.goal);
  const std::vector<ChatMessage> base = {
      {"system", prompts::system_prompt(prompts::kCoder, schema), {}},
      {"user",
       "Question: " + question + "\nPurpose: " + subtask.goal + "\n\nTables:\n<data>\n" + context +
           "</data>",
       {}}};
  std::vector<ChatMessage> messages = base;
  // Runs one candidate (SQL + chart spec); returns what is wrong with it, empty when it passed.
  // A result that runs is kept even when its chart fails (it becomes a table).
  auto attempt = [&](const std::string& candidate_sql, const json& chart_json,
                     int32_t round) -> std::string {
    std::string problem;
    std::optional<QueryResult> rows;
    try {
      rows = run_readonly(db_path_, candidate_sql, o_.sql_limits);
      if (rows->rows.empty()) {
        problem =
            "The query ran but returned no rows. Check the filters against the sample values "
            "(spelling, case, date format) and the joins.";
      }
    } catch (const SqlError& e) {
      problem = std::string("The SQL failed: ") + e.what();
    }
    trace({{"type", "tool"},
           {"tool", "run_sql"},
           {"round", round},
           {"sql", candidate_sql},
           {"ok", problem.empty()},
           {"rows", rows ? rows->rows.size() : 0},
           {"error", problem}});
    if (!problem.empty()) return problem;
    q.result = rows;
    q.sql = candidate_sql;
    try {
      ChartSpec s = parse_chart_spec(chart_json);
      const FigureCheck check = check_chart(s, *rows);
      if (!check.ok) {
        for (const std::string& p : check.problems) problem += (problem.empty() ? "" : " ") + p;
        problem = "The chart does not fit the query result: " + problem;
      } else {
        RenderedChart rendered = render_chart(s, *rows);
        if (llm_.accepts_images("vision")) {
          const ojson vschema = prompts::vision_schema();
          std::optional<json> verdict =
              ask_json("vision",
                       {{"system", prompts::system_prompt(prompts::kVision, vschema), {}},
                        {"user", "Question: " + question, rendered.png}},
                       vschema);
          if (verdict && !(*verdict)["acceptable"].get<bool>()) {
            problem = "A reviewer rejected the chart: " + (*verdict)["problem"].get<std::string>();
          }
        }
        if (problem.empty()) {
          q.spec = s;
          q.chart = std::move(rendered);
        }
      }
    } catch (const ChartError& e) {
      problem = std::string("The chart spec is wrong: ") + e.what();
    }
    q.figure_rejected = !problem.empty();
    trace({{"type", "figure_check"},
           {"round", round},
           {"ok", problem.empty()},
           {"problem", problem}});
    return problem;
  };
  for (int32_t round = 0; round <= o_.max_repair_rounds; ++round) {
    std::optional<json> answer = ask_json("coder", messages, schema);
    if (!answer) {
      q.last_problem = "the coder gave no valid answer";
      break;
    }
    const std::string problem =
        attempt((*answer)["sql"].get<std::string>(), (*answer)["chart"], round);
    if (problem.empty()) break;
    q.last_problem = problem;
    messages = base;
    messages.push_back({"assistant", answer->dump(), {}});
    messages.push_back(
        {"user", problem + "\nAnswer again with the corrected JSON (SQL and chart).", {}});
  }
  // Guided fallback: when no SQL ran, the coder picks columns and an aggregate from lists and
  // the SQL is built here. It runs through the same read-only path and checks.
  if (!q.result) {
    if (std::optional<json> guided =
            guided_query(chosen.front(), question, subtask.goal, context)) {
      const std::string problem = attempt((*guided)["sql"].get<std::string>(), (*guided)["chart"],
                                          o_.max_repair_rounds + 1);
      if (!problem.empty()) q.last_problem = problem;
      trace({{"type", "tool"}, {"tool", "guided_query"}, {"ok", q.result.has_value()}});
      if (q.result) chosen.resize(1);  // the guided query reads the first table only
    }
  }
  return q;
}

Finding Run::keep_query(const std::string& question, const std::vector<std::string>& chosen,
                        const Query& q, ReportSource& source) {
  // The SQL and CSV in analysis/, the source, the result table, the figure.
  ++queries_;
  const std::string n = std::to_string(queries_);
  const std::string sql_file = "analysis/q" + n + ".sql";
  const std::string csv_file = "analysis/q" + n + ".csv";
  std::ofstream(o_.out_dir / sql_file, std::ios::binary) << q.sql << "\n";
  std::ofstream(o_.out_dir / csv_file, std::ios::binary) << to_csv(*q.result);

  source.key = "T" + n;
  source.kind = "table";
  source.title = table_titles(chosen) + (q.spec ? ": " + q.spec->title : "");
  std::string files;
  for (const std::string& name : chosen) {
    for (const TableInfo& t : tables_->tables()) {
      if (t.name == name)
        files += (files.empty() ? "" : ", ") + fs::path(t.source_path).filename().string();
    }
  }
  source.location = files;
  source.sql = q.sql;
  source.csv_path = csv_file;
  source.columns = q.result->columns;
  for (const json& row : q.result->rows) {
    std::vector<std::string> cells;
    for (const json& cell : row) cells.push_back(text::format_cell(cell));
    source.rows.push_back(std::move(cells));
  }
  draft_.sources.push_back(source);

  Finding finding;
  ReportTable table;
  table.key = "R" + n;
  table.title = q.spec ? q.spec->title : text::truncate(question, 120);
  table.columns = source.columns;
  for (size_t i = 0;
       i < source.rows.size() && static_cast<int32_t>(i) < o_.max_result_rows_in_report; ++i) {
    table.rows.push_back(source.rows[i]);
  }
  if (static_cast<int32_t>(source.rows.size()) > o_.max_result_rows_in_report) {
    table.title += " (first " + std::to_string(o_.max_result_rows_in_report) + " of " +
                   std::to_string(source.rows.size()) + " rows; all in " + csv_file + ")";
  }
  table.source_key = source.key;
  draft_.tables.push_back(table);
  finding.table_key = table.key;
  if (q.chart) {
    ++charts_;
    ReportFigure fig;
    fig.key = "F" + std::to_string(charts_);
    fig.title = q.spec->title;
    fig.svg = q.chart->svg;
    fig.svg_path = "figures/fig" + std::to_string(charts_) + ".svg";
    fig.png_path = "figures/fig" + std::to_string(charts_) + ".png";
    fig.source_key = source.key;
    std::ofstream(o_.out_dir / fig.svg_path, std::ios::binary) << q.chart->svg;
    std::ofstream(o_.out_dir / fig.png_path, std::ios::binary) << q.chart->png;
    draft_.figures.push_back(fig);
    finding.figure_key = fig.key;
  } else if (q.figure_rejected) {
    trace({{"type", "figure_rejected"}, {"question", question}, {"problem", q.last_problem}});
  }
  // What the coder computed is a fact too: its cells are its values (analysis/facts.json),
  // cited through its source key.
  analysis::Fact computed = analysis::query_fact(source.title, files, q.sql, *q.result,
                                                 "The result of the query in " + sql_file + ".");
  computed.subspace.push_back("cited as [" + source.key + "]");
  if (!fact(computed.id)) facts_.push_back(std::move(computed));
  return finding;
}

std::string Run::analyze_tables(Subtask& subtask, const std::string& question) {
  std::vector<std::string> chosen = pick_tables(subtask, question);
  const Query q = write_query(subtask, question, chosen);
  if (!q.result) {
    trace({{"type", "analysis_failed"}, {"question", question}, {"problem", q.last_problem}});
    return "failed: " + text::truncate(q.last_problem, 300);
  }
  // A query that repeats one of this run's earlier analyses adds no source, table or figure.
  const std::string sql_key = normalized_sql(q.sql);
  if (auto same = analyses_.find(sql_key); same != analyses_.end()) {
    const Finding& earlier = same->second;
    subtask.findings.push_back(earlier);
    trace({{"type", "duplicate_analysis"}, {"same_as", earlier.table_key}});
    return "The same query as an earlier analysis: " +
           (earlier.figure_key.empty() ? "" : "Figure " + earlier.figure_key + " and ") + "Table " +
           earlier.table_key + " already hold its result. Ask a different question, or complete.";
  }
  ReportSource source;
  Finding finding = keep_query(question, chosen, q, source);

  // The insight, from the result itself.
  const ojson ischema = prompts::insight_schema();
  std::string insight;
  bool out_of_budget = false;
  try {
    std::optional<json> answer = ask_json(
        "insight",
        {{"system", prompts::system_prompt(prompts::insight_instructions(source.key), ischema), {}},
         {"user",
          "Question: " + question + "\nResult (CSV):\n<data>\n" + csv_preview(*q.result, 40) +
              "</data>",
          {}}},
        ischema);
    if (answer) insight = tidy_prose((*answer)["insight"].get<std::string>(), 500);
    if (!reads_as_prose(insight)) insight.clear();
  } catch (const BudgetExhausted&) {
    out_of_budget = true;  // keep the result found; stop after recording it
  }
  if (insight.empty()) insight = describe_result(*q.result);
  if (insight.find("[" + source.key + "]") == std::string::npos) insight += " [" + source.key + "]";
  if (q.chart) draft_.figures.back().caption = insight;
  finding.text = insight;
  subtask.findings.push_back(finding);
  analyses_[sql_key] = finding;
  if (out_of_budget) throw BudgetExhausted{};
  return (q.chart ? "Figure " + finding.figure_key + " \"" + q.spec->title + "\" and " : "") +
         std::string("Table ") + finding.table_key + " (" + std::to_string(q.result->rows.size()) +
         " rows) from " + table_titles(chosen) + ": " + insight;
}

std::optional<json> Run::guided_query(const std::string& table, const std::string& question,
                                      const std::string& goal, const std::string& context) {
  const std::vector<TableInfo> all = tables_->tables();
  const auto info =
      std::find_if(all.begin(), all.end(), [&](const TableInfo& t) { return t.name == table; });
  if (info == all.end()) return std::nullopt;
  std::vector<std::string> columns, numeric;
  for (const ColumnInfo& c : info->columns) {
    columns.push_back(c.name);
    if (c.type == "INTEGER" || c.type == "REAL") numeric.push_back(c.name);
  }
  if (numeric.empty()) return std::nullopt;
  const ojson schema = prompts::guided_schema(columns, numeric);
  std::optional<json> a =
      ask_json("coder",
               {{"system", prompts::system_prompt(prompts::kGuidedQuery, schema), {}},
                {"user",
                 "Question: " + question + "\nPurpose: " + goal + "\n\nTable:\n<data>\n" + context +
                     "</data>",
                 {}}},
               schema);
  if (!a) return std::nullopt;
  auto quote = [](const std::string& id) { return "\"" + id + "\""; };
  const std::string x = (*a)["x"], y = (*a)["y"], agg = (*a)["aggregate"];
  std::string by = (*a)["series"];
  if (by == "none" || by == x || by == y) by.clear();
  const std::string value = agg + "_" + y;
  const std::string fn = agg == "avg" ? "AVG" : agg == "sum" ? "SUM" : agg == "min" ? "MIN" : "MAX";
  std::string sql = "SELECT " + quote(x) + (by.empty() ? "" : ", " + quote(by)) + ", ROUND(" + fn +
                    "(" + quote(y) + "), 4) AS " + quote(value) + " FROM " + quote(table) +
                    " GROUP BY " + quote(x) + (by.empty() ? "" : ", " + quote(by)) + " ORDER BY " +
                    quote(x) + (by.empty() ? "" : ", " + quote(by)) + " LIMIT 60";
  std::string mark = (*a)["mark"];
  if (mark == "pie" && !by.empty()) mark = "bar";  // a pie has one series
  // Titles come from the source's own headers and units, not from the model.
  auto header = [&](const std::string& name) {
    for (const ColumnInfo& c : info->columns) {
      if (c.name == name) return c.header.empty() ? name : c.header;
    }
    return name;
  };
  std::string unit;
  for (const ColumnInfo& c : info->columns) {
    if (c.name == y) unit = c.unit;
  }
  static const std::map<std::string, std::string> kAgg = {
      {"sum", "Total"}, {"avg", "Mean"}, {"min", "Minimum"}, {"max", "Maximum"}};
  const std::string title = kAgg.at(agg) + " " + header(y) + " by " + header(x) +
                            (by.empty() ? "" : " and " + header(by));
  json chart = {
      {"mark", mark},
      {"title", title},
      {"encoding",
       {{"x", {{"field", x}, {"title", header(x)}}},
        {"y",
         {{"field", value},
          {"type", "quantitative"},
          {"title", kAgg.at(agg) + " " + header(y) + (unit.empty() ? "" : " (" + unit + ")")}}}}}};
  if (mark == "pie") chart["encoding"]["theta"] = {{"field", value}};
  if (!by.empty()) chart["encoding"]["color"] = {{"field", by}};
  return json{{"sql", sql}, {"chart", chart}};
}

}  // namespace kdr::hka
