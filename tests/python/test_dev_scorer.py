"""The research dev set's scorer (bench/research_dev.py) and its data: number parsing and
matching rules on hand-written report lines, keys.json against questions.json, and every
example table loading with pandas. Needs no kdr build; runs in a few seconds.

Run: .venv/bin/python -m pytest tests/python/test_dev_scorer.py -q
"""
import json
import math
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import research_dev as rd  # noqa: E402

DEV = ROOT / "examples" / "dev"
TABLES = ROOT / "examples" / "tables"
QUESTIONS = json.loads((DEV / "questions.json").read_text())
KEYS = json.loads((DEV / "keys.json").read_text())["questions"]


def key(value, entity=(), period=(), unit="", **kw):
    return {"id": "k", "what": "", "value": value, "entity": list(entity), "period": list(period),
            "unit": unit, **kw}


def found(text, k):
    return rd.key_found(k, rd.body_lines(text)) is not None


# --- numbers ----------------------------------------------------------------------------------


def test_right_number_wrong_year_is_not_found():
    k = key(38.84, ["renewable*"], ["2017"], "percent")
    assert not found("Renewables made up 38.8% of generation in 2016.", k)
    assert found("Renewables made up 38.8% of generation in 2017.", k)


def test_rounded_percent_is_found():
    assert found("The share rose by 12.3% over the period.", key(12.34, unit="percent"))


def test_thousands_separator():
    assert found("Output reached 1,234 units.", key(1234.4))
    [n] = rd.parse_numbers("1,234.5")
    assert n.value == 1234.5 and n.sig == 5


def test_two_significant_digits_must_be_close():
    # |1.2 - 1.26| = 0.06: more than 1.5% of 1.26 and more than half a unit (0.05)
    assert not found("The rate was 1.2 in 2011.", key(1.26))
    assert found("The rate was 1.3 in 2011.", key(1.26))    # within half a unit of 0.1
    assert found("The rate was 1.26 in 2011.", key(1.26))


def test_one_significant_digit_never_counts():
    assert not found("About 5 countries.", key(5))
    assert not found("About 2000 jobs.", key(2000.4, unit="thousand jobs"))  # trailing zeros
    assert found("About 2000.0 jobs.", key(2000.4, unit="thousand jobs"))
    assert found("New Mexico: 10.0 murders.", key(10.0, ["new mexico"]))
    assert not found("New Mexico: 10 murders.", key(10.0, ["new mexico"]))


def test_unicode_minus_and_signs():
    [n] = rd.parse_numbers("a change of \u221212.3 points")
    assert n.value == -12.3 and n.percent
    [n] = rd.parse_numbers("r = -0.38")
    assert n.value == -0.38
    [n] = rd.parse_numbers("+4.1%")
    assert n.value == 4.1 and n.percent
    assert found("Korea fell by \u22124.91 births per woman.", key(-4.911, ["korea*"]))
    # the magnitude is compared: a fall written without its sign still counts
    assert found("Korea's rate fell by 4.91 births per woman.", key(-4.911, ["korea*"]))


def test_ranges_are_not_negative_numbers():
    nums = rd.parse_numbers("Between 2001-2017 and 1960\u20131970 it rose 5.2%")
    assert [n.value for n in nums] == [2001, 2017, 1960, 1970, 5.2]
    assert all(n.year for n in nums[:4])


def test_scale_words():
    assert found("Employers added 3.4 million jobs.", key(3400000))
    [n] = rd.parse_numbers("3.4 million")
    assert n.value == 3.4e6 and math.isclose(n.half_unit, 50000)
    # a key in thousands may be written in full or in millions
    k = key(-8693, unit="thousand jobs")
    assert found("The economy lost 8.7 million jobs.", k)
    assert found("The economy lost 8,693 thousand jobs.", k)
    assert found("The economy lost 8,693,000 jobs.", k)
    assert not found("The economy lost 8.9 million jobs.", k)


def test_percent_numbers_match_only_percent_keys():
    assert not found("A correlation of 36%.", key(0.363))
    assert not found("A correlation of 36%.", key(36.3))
    assert found("A share of 36%.", key(36.3, unit="percent"))
    assert found("A shift of 2.3 percentage points.", key(2.35, unit="percentage points"))
    assert found("| Education | 2.3 |", key(2.35, unit="percentage points"))  # bare number


def test_years_are_not_values():
    # "2010" is a year, not 2,010 of anything; a thousands comma makes it a number
    assert not found("Renewables in 2010.", key(2010.3, ["renewable*"], unit="thousand MWh"))
    assert found("Renewables: 2,010 in 2010.", key(2010.3, ["renewable*"], unit="thousand MWh"))


def test_citations_dates_and_figures_are_not_values():
    assert not found("Fossil fuels fell [12].", key(12.3, ["fossil*"]))
    assert not found("See Figure 12 on fossil fuels.", key(12.3, ["fossil*"]))
    assert not found("Fossil fuels on 2015-12-01.", key(12.3, ["fossil*"]))


def test_entity_aliases_are_whole_words():
    assert not found("Nigeria reached 7.58 in 2011.", key(7.581, ["niger"], ["2011"]))
    assert found("Niger reached 7.58 in 2011.", key(7.581, ["niger"], ["2011"]))
    assert found("Renewables reached 7.58 in 2011.", key(7.581, ["renewable*"], ["2011"]))
    assert not found("Thus it reached 7.58 in 2011.", key(7.581, ["us"], ["2011"]))
    assert found("The US reached 7.58 in 2011.", key(7.581, ["us"], ["2011"]))


def test_month_periods_accept_abbreviations():
    k = key(26.25, [], ["march"])
    assert found("The mean peaks in Mar at 26.2 \u00b0C.", k)
    assert found("The mean peaks in March at 26.2 \u00b0C.", k)
    assert not found("The mean peaks in May at 26.2 \u00b0C.", k)
    assert found("September averages 20.6.", key(20.58, [], ["september"]))
    assert found("Sept averages 20.6.", key(20.58, [], ["september"]))


def test_period_alternatives():
    k = key(4.196, [], [["1960s", "1960-1970"]], "percent")
    assert found("In the 1960s real GDP grew 4.2% a year.", k)
    assert found("From 1960-1970 real GDP grew 4.2% a year.", k)
    assert not found("From 1970-1980 real GDP grew 4.2% a year.", k)


def test_also_values():
    k = key(0.01349, unit="degrees Celsius per year", also=[0.1349])
    assert found("A trend of 0.13 \u00b0C per decade.", k)
    assert found("A trend of 0.0135 \u00b0C per year.", k)
    assert not found("A trend of 0.16 \u00b0C per decade.", k)


def test_one_line_is_one_sentence():
    text = ("Renewables rose in 2017. Fossil fuels fell to 51.9% in 2017. The U.S. Energy "
            "Information Administration publishes the data.")
    lines = rd.body_lines(text)
    assert [ln.text for ln in lines] == [
        "Renewables rose in 2017.", "Fossil fuels fell to 51.9% in 2017.",
        "The U.S. Energy Information Administration publishes the data."]
    assert not found(text, key(51.93, ["renewable*"], ["2017"], "percent"))
    assert found(text, key(51.93, ["fossil*"], ["2017"], "percent"))


def test_table_rows_read_with_their_caption_and_header():
    md = ("Table 1: Share of net generation (%)\n\n"
          "| Source | 2001 | 2017 |\n| --- | --- | --- |\n"
          "| Fossil Fuels | 87.0 | 51.9 |\n| Renewables | 3.5 | 38.8 |\n")
    assert found(md, key(38.84, ["renewable*"], ["2017"], "percent"))
    assert found(md, key(3.535, ["renewable*"], ["2001"], "percent"))
    assert not found(md, key(38.84, ["fossil*"], ["2017"], "percent"))
    assert not found(md, key(38.84, ["renewable*"], ["2009"], "percent"))


def test_body_stops_at_references():
    md = ("# Report\n\nRenewables grew.\n\n## References\n\n1. Fossil fuels 51.9% in 2017\n\n"
          "## Verification\n\n12 numbers checked\n")
    assert rd.report_body(md).strip() == "# Report\n\nRenewables grew."
    s = rd.score_text(md, {"numbers": [key(51.93, ["fossil*"], ["2017"], "percent")],
                           "conclusions": []})
    assert s["found"] == 0


# --- conclusions ------------------------------------------------------------------------------


def right(text, qkey, cid):
    [c] = [c for c in KEYS[qkey]["conclusions"] if c["id"] == cid]
    return rd.conclusion_right(c, rd.body_lines(text)) is not None


def test_conclusion_direction():
    assert right("States with more poverty have more violent crime: a positive but moderate "
                 "correlation (r = 0.36).", "crime-violent", "poverty-positive")
    assert not right("Poverty is negatively correlated with violent crime.", "crime-violent",
                     "poverty-positive")
    assert right("Violent crime is negatively correlated with the high-school graduation rate "
                 "(r = -0.38).", "crime-violent", "hs-negative")
    assert not right("Graduation rates are positively correlated with violent crime.",
                     "crime-violent", "hs-negative")
    assert right("The average yearly rise accelerated from 0.88 ppm in 1960-1970 to 1.52 ppm "
                 "in 1990-2000.", "co2-growth", "accelerated")
    assert not right("The rise did not accelerate; it slowed.", "co2-growth", "accelerated")
    assert right("Wind and other renewables grew far faster than fossil fuels.", "iowa-mix",
                 "renew-faster")
    assert right("Apple gained the most, up 480%.", "tech-stocks", "apple-most")
    assert not right("Google had the highest price.", "tech-stocks", "apple-most")
    assert not right("Microsoft had the lowest share price.", "tech-stocks", "microsoft-least")
    assert right("Niger had the highest fertility rate in 2011 at 7.58.", "fertility-extremes",
                 "niger-highest")
    assert not right("Nigeria had the highest fertility rate.", "fertility-extremes",
                     "niger-highest")


def test_every_conclusion_text_passes_its_own_check():
    for qkey, k in KEYS.items():
        for c in k["conclusions"]:
            assert rd.conclusion_right(c, rd.body_lines(c["text"])), (qkey, c["id"])


# --- keys.json and questions.json -------------------------------------------------------------


def test_keys_match_questions():
    assert len(QUESTIONS) >= 14
    assert len({q["key"] for q in QUESTIONS}) == len(QUESTIONS)
    assert set(KEYS) == {q["key"] for q in QUESTIONS}
    for q in QUESTIONS:
        assert set(q) >= {"key", "question", "tables", "docs", "kinds"}
        assert (ROOT / q["tables"]).is_dir()
        assert q["docs"] is None or (ROOT / q["docs"]).is_dir()
        assert q["kinds"]
        k = KEYS[q["key"]]
        assert k["question"] == q["question"], q["key"]
        assert 4 <= len(k["numbers"]) <= 10, q["key"]
        assert len(k["conclusions"]) >= 1, q["key"]
        ids = [n["id"] for n in k["numbers"]] + [c["id"] for c in k["conclusions"]]
        assert len(ids) == len(set(ids)), q["key"]
        for n in k["numbers"]:
            assert set(n) >= {"id", "what", "value", "entity", "period", "unit"}
            assert isinstance(n["value"], (int, float)) and math.isfinite(n["value"])
        for c in k["conclusions"]:
            assert c["check"]["all"], (q["key"], c["id"])


def test_retrieval_labels_name_existing_files():
    for q in QUESTIONS:
        k = KEYS[q["key"]]
        assert k["tables"], q["key"]
        for t in k["tables"]:
            assert (TABLES / t).is_file(), (q["key"], t)
        for d in k["docs"]:
            assert (ROOT / "examples" / "docs" / d).is_file(), (q["key"], d)


# Words a paraphrase may share with its table: BM25 cannot tell tables apart by them.
FUNCTION_WORDS = {"a", "and", "as", "at", "by", "from", "in", "of", "on", "the", "to"}


def test_paraphrases_avoid_their_tables_words():
    """One paraphrase per question, in order, sharing no word but function words with the
    text the table store indexes for its relevant table (catalogue fields, header, file name),
    under the store's FTS5 porter tokenizer."""
    import re
    import sqlite3
    paraphrases = json.loads((DEV / "paraphrases.json").read_text())
    assert [p["key"] for p in paraphrases] == [q["key"] for q in QUESTIONS]
    catalogue = {e["file_path"]: e for e in json.loads((TABLES / "catalogue.json").read_text())}
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE f USING fts5(t, tokenize = 'porter unicode61')")
    for p in paraphrases:
        assert p["question"] != KEYS[p["key"]]["question"]
        db.execute("DELETE FROM f")
        for t in KEYS[p["key"]]["tables"]:
            e = catalogue[t]
            text = (TABLES / t).read_text()
            header = " ".join(json.loads(text)[0]) if t.endswith(".json") else text.split("\n")[0]
            db.execute("INSERT INTO f VALUES (?)", (" ".join(
                [e["table_title"], e["description"], e["domain"], e["sub_domain"], e["topic"],
                 header, t]),))
        words = set(re.findall(r"[A-Za-z0-9]+", p["question"].lower()))
        shared = {w for w in words
                  if db.execute("SELECT count(*) FROM f WHERE f MATCH ?", (f'"{w}"',)).fetchone()[0]}
        assert shared <= FUNCTION_WORDS, (p["key"], sorted(shared - FUNCTION_WORDS))


def test_the_three_original_questions_are_kept():
    original = json.loads((ROOT / "examples" / "questions.json").read_text())
    dev = {q["key"]: q["question"] for q in QUESTIONS}
    for q in original:
        assert dev[q["key"]] == q["question"]


def test_kinds_are_covered():
    count = {}
    for q in QUESTIONS:
        for kind in q["kinds"]:
            count[kind] = count.get(kind, 0) + 1
    for kind in ["change", "association", "growth", "acceleration", "extreme", "mix"]:
        assert count.get(kind, 0) >= 2, kind
    assert count.get("seasonality", 0) >= 1


def _written(v):
    """A value as a report would write it: three or more significant digits."""
    if v == 0:
        return "0"
    decimals = max(0, 2 - math.floor(math.log10(abs(v))))
    return f"{v:,.{decimals}f}"


def test_every_key_number_is_findable():
    # A line naming the first alias and the period, with the value to three significant
    # digits, finds each key: no key is out of the scorer's reach.
    for qkey, k in KEYS.items():
        for n in k["numbers"]:
            words = [n["entity"][0].rstrip("*")] if n["entity"] else []
            words += [p if isinstance(p, str) else p[0] for p in n["period"]]
            unit = "%" if "percent" in n["unit"] else ""
            value = _written(n["value"]) + unit
            line = f"For {' and '.join(words) or 'this'}, the figure is {value}."
            assert found(line, n), (qkey, n["id"], line)


def test_score_text_and_summary_of_a_fake_report(tmp_path):
    keys = KEYS["iowa-mix"]
    md = ("# Iowa\n\n## Findings\n\nRenewables rose from 3.5% of generation in 2001 to 38.8% in "
          "2017, a gain of 35.3 percentage points. Fossil fuels fell from 87.0% in 2001 to 51.9% "
          "in 2017. Renewable generation grew 18.6% a year, far faster than fossil fuels "
          "(-1.2% a year).\n\n## References\n\n1. EIA\n")
    d = tmp_path / "out" / "iowa-mix"
    d.mkdir(parents=True)
    (d / "report.md").write_text(md)
    (d / "verification.json").write_text(json.dumps(
        {"summary": {"numbers": 10, "verified_numbers": 8, "unverified_numbers": 2}}))
    s = rd.score_dir(d, keys)
    assert s["found"] == 7 and s["total"] == 10
    assert {m["id"] for m in s["missed_keys"]} == {
        "nuclear-share-2001", "nuclear-share-2017", "fossil-share-shift"}
    assert s["conclusions_right"] == 3  # not the nuclear one
    assert s["verification"]["rate"] == 0.8 and s["verification"]["unverified"] == 2
    rc = rd.main(["--reuse", "--only", "iowa-mix", "--out", str(tmp_path / "out")])
    assert rc == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["totals"]["found"] == 7
    assert summary["questions"]["iowa-mix"]["verification"]["verified"] == 8


# --- tables -----------------------------------------------------------------------------------


def test_every_table_loads_with_pandas():
    pd = pytest.importorskip("pandas")
    catalogue = json.loads((TABLES / "catalogue.json").read_text())
    listed = {e["file_path"] for e in catalogue}
    files = {p.name for p in TABLES.iterdir() if p.name != "catalogue.json"}
    assert listed == files
    for e in catalogue:
        assert all(e.get(f) for f in ("table_title", "description", "domain", "sub_domain",
                                      "topic", "file_path")), e
        path = TABLES / e["file_path"]
        if path.suffix == ".json":
            t = pd.read_json(path)
        elif path.suffix == ".tsv":
            t = pd.read_csv(path, sep="\t")
        elif path.suffix == ".xlsx":
            t = pd.read_excel(path)
        else:
            t = pd.read_csv(path)
        assert len(t) > 0 and len(t.columns) >= 2, e["file_path"]


def test_keys_are_up_to_date():
    # Recomputes keys.json from the tables (needs pandas and scipy).
    pytest.importorskip("pandas")
    pytest.importorskip("scipy")
    sys.path.insert(0, str(ROOT / "scripts"))
    import dev_keys
    fresh = dev_keys.build(QUESTIONS)
    assert json.loads(json.dumps(fresh)) == json.loads((DEV / "keys.json").read_text())


# Where each added table comes from (examples/README.md): copied unchanged.
PACKAGE_FILES = {
    "iowa-electricity.csv": ("vega_datasets", "_data/iowa-electricity.csv"),
    "us-employment.csv": ("vega_datasets", "_data/us-employment.csv"),
    "seattle-weather.csv": ("vega_datasets", "_data/seattle-weather.csv"),
    "driving.json": ("vega_datasets", "_data/driving.json"),
    "stocks.csv": ("vega_datasets", "_data/stocks.csv"),
    "fertility.csv": ("statsmodels", "datasets/fertility/fertility.csv"),
    "elnino.csv": ("statsmodels", "datasets/elnino/elnino.csv"),
    "statecrime.csv": ("statsmodels", "datasets/statecrime/statecrime.csv"),
    "co2.csv": ("statsmodels", "datasets/co2/co2.csv"),
    "macrodata.csv": ("statsmodels", "datasets/macrodata/macrodata.csv"),
}


@pytest.mark.parametrize("name", sorted(PACKAGE_FILES))
def test_tables_are_unchanged_copies(name):
    package, rel = PACKAGE_FILES[name]
    mod = pytest.importorskip(package)
    src = pathlib.Path(mod.__file__).parent / rel
    assert src.read_bytes() == (TABLES / name).read_bytes()
