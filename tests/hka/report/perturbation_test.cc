// Verification measured on the dev set: the numbers of reports built from the dev questions'
// facts verify, and the same reports with one number perturbed at random (scaled by 3% to 40%,
// its sign flipped, the entity beside it or the year swapped for another of the data) are
// flagged when re-verified from report.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <string>

#include "../../base/seed.h"
#include "dev_reports.h"
#include "hka/report/numbers.h"
#include "hka/report/report.h"
#include "hka/text.h"

namespace kdr::hka {
namespace {

using testing::DevReport;

const std::vector<DevReport>& reports() {
  static const std::vector<DevReport> r = testing::dev_reports();
  return r;
}

// A number of the report body as written: where its digits are.
struct Written {
  size_t begin, end;  // the whole written number ("-1,437.5%")
  size_t digits_begin, digits_end;
  bool negative, plus, grouped;
  int decimals;
  double magnitude;
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// The numbers of `body` as the checker's scanner reads them.
std::vector<Written> numbers_of(const std::string& body) {
  std::vector<Written> out;
  for (const report::WrittenNumber& n : report::scan_numbers(body)) {
    const size_t at = n.begin;
    Written w{};
    w.begin = at;
    w.end = n.end;
    w.digits_begin = at;
    while (w.digits_begin < w.end && !is_digit(body[w.digits_begin])) ++w.digits_begin;
    w.digits_end = w.digits_begin;
    while (w.digits_end < w.end && (is_digit(body[w.digits_end]) || body[w.digits_end] == ',' ||
                                    (body[w.digits_end] == '.' && w.digits_end + 1 < w.end &&
                                     is_digit(body[w.digits_end + 1])))) {
      ++w.digits_end;
    }
    const std::string digits = body.substr(w.digits_begin, w.digits_end - w.digits_begin);
    w.grouped = digits.find(',') != std::string::npos;
    const size_t dot = digits.find('.');
    w.decimals = dot == std::string::npos ? 0 : static_cast<int>(digits.size() - dot - 1);
    std::string plain;
    for (char c : digits) {
      if (c != ',') plain += c;
    }
    w.magnitude = std::strtod(plain.c_str(), nullptr);
    w.negative = n.value < 0;
    w.plus = body[at] == '+';
    w.grouped = w.grouped;
    out.push_back(w);
  }
  return out;
}

// `v` written with `decimals` decimals, grouped in thousands when `grouped`.
std::string write_number(double v, int decimals, bool grouped) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  std::string s = buf;
  if (!grouped) return s;
  const size_t dot = std::min(s.find('.'), s.size());
  std::string out;
  for (size_t i = 0; i < dot; ++i) {
    out += s[i];
    const size_t left = dot - i - 1;
    if (left > 0 && left % 3 == 0) out += ',';
  }
  return out + s.substr(dot);
}

bool is_year(const Written& w) {
  return !w.negative && !w.plus && !w.grouped && w.decimals == 0 && w.magnitude >= 1800 &&
         w.magnitude <= 2100;
}

// Entities and years of the facts of each table of a report: what a swap draws from.
struct TableData {
  std::vector<std::string> entities;
  std::vector<std::string> names;  // entities and the facts' mentions (measures too)
  std::vector<int> years;
};

std::map<std::string, TableData> table_data(const DevReport& r) {
  std::map<std::string, TableData> out;
  for (const analysis::Fact& f : r.facts) {
    TableData& t = out[f.table];
    auto entity = [&](const std::string& e) {
      if (!e.empty() && std::find(t.entities.begin(), t.entities.end(), e) == t.entities.end()) {
        t.entities.push_back(e);
      }
    };
    auto years = [&](const std::string& label) {
      for (const std::string& w : text::words(label)) {
        if (w.size() == 4 && std::all_of(w.begin(), w.end(), is_digit)) {
          const int y = std::stoi(w);
          if (std::find(t.years.begin(), t.years.end(), y) == t.years.end()) t.years.push_back(y);
        }
      }
    };
    entity(f.entity);
    for (const std::string& m : f.mentions) t.names.push_back(m);
    years(f.period_from);
    years(f.period_to);
    for (const analysis::FactValue& v : f.values) {
      entity(v.entity);
      years(v.period);
    }
    t.names.insert(t.names.end(), t.entities.begin(), t.entities.end());
  }
  return out;
}

// The fact cited by the sentence holding `pos` ("... [3].": reference 3).
const analysis::Fact* cited_fact(const DevReport& r, const std::string& md, size_t pos) {
  const size_t open = md.find(" [", pos);
  if (open == std::string::npos) return nullptr;
  const int n = std::atoi(md.c_str() + open + 2);
  const std::string line = "\n" + std::to_string(n) + ". (";
  const size_t ref = md.find(line, md.find("## References"));
  if (n <= 0 || ref == std::string::npos) return nullptr;
  const size_t key_at = ref + line.size();
  const std::string key = md.substr(key_at, md.find(')', key_at) - key_at);
  for (const analysis::Fact& f : r.facts) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

TEST(ReportPerturbation, UnperturbedDevReportsVerify) {
  size_t numbers = 0, verified = 0, reread = 0, reread_verified = 0;
  for (const DevReport& r : reports()) {
    for (const NumberCheck& n : r.report.numbers) {
      ++numbers;
      verified += n.verified;
      if (!n.verified) {
        ADD_FAILURE() << r.key << ": " << n.text << " unverified (" << n.reason << "): \""
                      << n.context << "\"";
      }
    }
    const FinalReport again = verify_report(r.report.markdown, r.facts, {});
    reread += again.numbers.size();
    for (const NumberCheck& n : again.numbers) reread_verified += n.verified;
    EXPECT_EQ(again.numbers.size(), r.report.numbers.size()) << r.key;
  }
  const double rate = static_cast<double>(verified) / static_cast<double>(numbers);
  const double reread_rate = static_cast<double>(reread_verified) / static_cast<double>(reread);
  std::printf(
      "[ measured ] unperturbed: %zu of %zu numbers verified (%.1f%%) in %zu reports; "
      "re-read from report.md: %zu of %zu (%.1f%%)\n",
      verified, numbers, 100 * rate, reports().size(), reread_verified, reread, 100 * reread_rate);
  EXPECT_GE(numbers, 500u);
  EXPECT_GE(rate, 0.95);
  EXPECT_GE(reread_rate, 0.95);
}

TEST(ReportPerturbation, PerturbedNumbersAreFlagged) {
  const uint64_t seed = kdr_test::test_seed();
  std::mt19937_64 rng(seed);
  auto uniform = [&](double a, double b) { return std::uniform_real_distribution<>(a, b)(rng); };
  struct Tally {
    size_t tried = 0, flagged = 0;
  };
  std::map<std::string, Tally> by_kind;
  std::vector<std::string> missed;
  // Every number of every report's body, then a random sample of them (KDR_PERTURBATIONS, 200
  // by default, "all" for every one): each perturbation re-verifies a whole report, which an
  // ASan build does in about 20 ms.
  struct Site {
    size_t report;
    Written number;
  };
  std::vector<Site> sites;
  std::vector<int> baseline;
  for (size_t i = 0; i < reports().size(); ++i) {
    const std::string& md = reports()[i].report.markdown;
    const size_t body_begin = md.find("\n## ");
    const size_t body_end = md.find("\n## References");
    ASSERT_NE(body_begin, std::string::npos);
    ASSERT_NE(body_end, std::string::npos);
    for (const Written& w : numbers_of(md.substr(0, body_end))) {
      if (w.begin > body_begin) sites.push_back({i, w});  // not the title
    }
    baseline.push_back(verify_report(md, reports()[i].facts, {}).unverified_numbers);
  }
  const char* wanted = std::getenv("KDR_PERTURBATIONS");
  size_t sample = 200;
  if (wanted && std::string(wanted) == "all") sample = sites.size();
  if (wanted && std::atoi(wanted) > 0) sample = static_cast<size_t>(std::atoi(wanted));
  std::shuffle(sites.begin(), sites.end(), rng);
  if (sites.size() > sample) sites.resize(sample);
  std::sort(sites.begin(), sites.end(), [](const Site& a, const Site& b) {
    return a.report != b.report ? a.report < b.report : a.number.begin < b.number.begin;
  });
  std::map<size_t, std::map<std::string, TableData>> data_of;
  for (const Site& site : sites) {
    const DevReport& r = reports()[site.report];
    const std::string& md = r.report.markdown;
    if (!data_of.contains(site.report)) data_of[site.report] = table_data(r);
    const std::map<std::string, TableData>& data = data_of[site.report];
    const Written& w = site.number;
    {
      const analysis::Fact* fact = cited_fact(r, md, w.end);
      if (!fact) continue;
      const TableData& table = data.at(fact->table);
      // The sentence around the number, for an entity swap.
      const size_t line_begin = md.rfind('\n', w.begin) + 1;
      const size_t line_end = md.find('\n', w.end);
      std::vector<std::string> kinds = {"scale", "sign"};
      std::string entity;
      size_t entity_at = std::string::npos;
      // An entity's name inside a longer name ("China" in "Macao SAR, China", "service
      // providing" in the measure "private service providing") is not a mention of it.
      auto inside_longer = [&](const std::string& e, size_t at) {
        for (const std::string& longer : table.names) {
          if (longer.size() <= e.size() || longer.find(e) == std::string::npos) continue;
          for (size_t l = md.find(longer, line_begin); l != std::string::npos && l < line_end;
               l = md.find(longer, l + 1)) {
            if (l <= at && at + e.size() <= l + longer.size()) return true;
          }
        }
        return false;
      };
      for (const std::string& e : table.entities) {
        // The entity named nearest before the number on its line, else nearest after.
        for (size_t at = md.find(e, line_begin); at != std::string::npos && at < line_end;
             at = md.find(e, at + 1)) {
          if (inside_longer(e, at)) continue;
          const bool before = at + e.size() <= w.begin;
          const bool better = entity_at == std::string::npos ||
                              (before && (entity_at > w.begin || at > entity_at)) ||
                              (!before && entity_at > w.begin && at < entity_at);
          if ((before || at >= w.end) && better) {
            entity = e;
            entity_at = at;
          }
        }
      }
      if (entity_at != std::string::npos && table.entities.size() >= 2) kinds.push_back("entity");
      if (is_year(w) && table.years.size() >= 2) kinds.push_back("year");
      std::shuffle(kinds.begin(), kinds.end(), rng);
      std::string perturbed;
      std::string kind;
      for (const std::string& k : kinds) {
        std::string replacement;
        size_t from = w.digits_begin, to = w.digits_end;
        if (k == "scale") {
          const double f = 1 + (rng() % 2 ? 1 : -1) * uniform(0.03, 0.40);
          replacement = write_number(w.magnitude * f, w.decimals, w.grouped);
          if (replacement == md.substr(from, to - from)) continue;  // rounds back: no change
        } else if (k == "sign") {
          // A negative number flipped is positive, written so ("+17.1%"); a positive one gets
          // a minus.
          from = w.begin;
          const std::string digits_and_after = md.substr(w.digits_begin, w.end - w.digits_begin);
          std::string prefix = md.substr(w.begin, w.digits_begin - w.begin);
          const size_t minus = prefix.find('-');
          const size_t unicode_minus = prefix.find("\xE2\x88\x92");
          if (minus != std::string::npos) {
            prefix.replace(minus, 1, "+");
          } else if (unicode_minus != std::string::npos) {
            prefix.replace(unicode_minus, 3, "+");
          } else if (!prefix.empty() && prefix[0] == '+') {
            prefix[0] = '-';
          } else {
            prefix = "-" + prefix;
          }
          replacement = prefix + digits_and_after;
          to = w.end;
        } else if (k == "entity") {
          std::vector<std::string> others;
          for (const std::string& e : table.entities) {
            if (e != entity && e.find(entity) == std::string::npos &&
                entity.find(e) == std::string::npos) {
              others.push_back(e);
            }
          }
          if (others.empty()) continue;
          from = entity_at;
          to = entity_at + entity.size();
          replacement = others[rng() % others.size()];
        } else {
          std::vector<int> others;
          for (int y : table.years) {
            if (y != static_cast<int>(w.magnitude)) others.push_back(y);
          }
          replacement = std::to_string(others[rng() % others.size()]);
        }
        perturbed = md.substr(0, from) + replacement + md.substr(to);
        kind = k;
        break;
      }
      if (perturbed.empty()) continue;
      const FinalReport checked = verify_report(perturbed, r.facts, {});
      Tally& t = by_kind[kind];
      ++t.tried;
      const bool flagged = checked.unverified_numbers > baseline[site.report];
      t.flagged += flagged;
      if (!flagged && missed.size() < 40) {
        const size_t line_at = perturbed.rfind('\n', std::min(w.begin, perturbed.size())) + 1;
        missed.push_back(r.key + " (" + kind + "): " +
                         perturbed.substr(line_at, perturbed.find('\n', line_at) - line_at));
      }
    }
  }
  size_t tried = 0, flagged = 0;
  for (const auto& [kind, t] : by_kind) {
    tried += t.tried;
    flagged += t.flagged;
    std::printf("[ measured ] %-6s perturbations: %zu of %zu flagged (%.1f%%)\n", kind.c_str(),
                t.flagged, t.tried, 100.0 * static_cast<double>(t.flagged) / t.tried);
  }
  const double rate = static_cast<double>(flagged) / static_cast<double>(tried);
  std::printf("[ measured ] all perturbations: %zu of %zu flagged (%.1f%%), seed %llu\n", flagged,
              tried, 100 * rate, static_cast<unsigned long long>(seed));
  for (const std::string& m : missed) std::printf("  missed: %s\n", m.c_str());
  EXPECT_GE(tried, std::min<size_t>(sample, 1000) * 9 / 10);
  EXPECT_GE(rate, 0.95);
}

}  // namespace
}  // namespace kdr::hka
