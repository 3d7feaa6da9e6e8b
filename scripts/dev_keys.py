#!/usr/bin/env python3
"""Answer keys for the research dev set: examples/dev/questions.json -> examples/dev/keys.json.

Every number is computed here, independently of kdr, with pandas and scipy from the tables in
examples/tables. For each question: 4-10 key numbers (what an analyst would state: first and
last values, changes, growth rates, slopes, correlations, shares, extremes) and 1-4 key
conclusions with a keyword check. bench/research_dev.py scores reports against them; the rules
are in examples/dev/README.md.

Per question, keys.json also lists the relevant "tables" (the files its keys are computed from)
and "docs" (the notes in examples/docs that describe those tables, judged by hand), which
bench/retrieval_dev.py scores retrieval against.

Key number: {"id", "what", "value", "entity", "period", "unit"} (+ "also": equivalent values,
e.g. a slope per year and per decade). entity: aliases, any one must appear on the line;
period: items that must all appear (an item may be a list of alternatives). Percents are
stored as percents (12.3 for 12.3%). Alias/word syntax: a trailing * makes a prefix
("renewable*" matches "renewables"); otherwise the whole word or phrase must appear.

Run: .venv/bin/python scripts/dev_keys.py [--check]   (--check: compare with the committed file)
"""
import argparse
import json
import pathlib
import sys

import numpy as np
import pandas as pd
from scipy import stats

ROOT = pathlib.Path(__file__).resolve().parents[1]
TABLES = ROOT / "examples" / "tables"
DEV = ROOT / "examples" / "dev"

PCT, PP = "percent", "percentage points"

# Spellings of entities as people write them (lowercase; see the module docstring).
US = ["united states", "u.s.", "us", "usa", "america*"]
APPLE, AMAZON, GOOGLE = ["apple", "aapl"], ["amazon", "amzn"], ["google", "goog", "alphabet"]
IBM, MICROSOFT = ["ibm"], ["microsoft", "msft"]
RENEW, FOSSIL, NUCLEAR = ["renewable*", "wind"], ["fossil*"], ["nuclear"]
HS = ["graduat*", "high school", "high-school", "hs_grad", "hs grad*"]
SINGLE = ["single*", "one-parent", "lone parent*", "lone-parent*"]
URBAN = ["urban*"]
DC = ["district of columbia", "d.c.", "dc", "washington, d.c"]
GOODS = ["goods*"]
PRIV_SERV = ["private service*", "private-service*", "service-providing", "service providing",
             "private_service_providing"]
GOV = ["government", "public sector", "public-sector"]
EDU = ["education*"]
TRADE = ["trade*"]
INFO = ["information"]
FIN = ["financ*"]
LEISURE = ["leisure*", "hospitality"]
PROF = ["professional*", "business services"]
NONFARM = ["nonfarm", "non-farm", "payroll*", "employment", "jobs"]

# Words of direction and rank (prefix * where inflected forms are common).
UP = ["rose", "rise*", "rising", "risen", "grew", "grow*", "increas*", "climb*", "gain*",
      "jump*", "expand*", "surge*", "doubl*", "tripl*", "up from", "higher"]
DOWN = ["fell", "fall*", "declin*", "decreas*", "drop*", "shrank", "shrunk", "shrink*", "lost",
        "los*", "down", "lower", "slid", "contract*", "plung*", "halved", "less than"]
MOST = ["most", "largest", "biggest", "greatest", "steepest", "sharpest", "strongest",
        "highest", "top", "best", "fastest", "leading", "led"]
LEAST = ["least", "smallest", "weakest", "lowest", "slowest", "worst", "mildest",
         "most modest", "bottom", "fewest"]
POS = ["positive", "positively", "r = 0.", "r=0.", "r = +", "rises with", "increases with",
       "goes up with", "higher where", "higher in states with", "tend to have higher",
       "with higher", "with more", "have higher", "had higher"]
NEG = ["negative", "negatively", "inverse", "inversely", "r = -", "r=-", "r = \u2212",
       "r=\u2212", "falls with", "decreases with", "lower where", "lower in states with",
       "tend to have lower", "with lower", "with less", "with fewer", "have lower",
       "had lower"]
WEAK = ["weak", "weakly", "little", "no clear", "no strong", "not strong", "negligible",
        "barely", "hardly", "slight", "loose", "modest", "no meaningful", "no significant",
        "not significant", "insignificant", "near zero", "close to zero"]


def sig(x, digits=6):
    """A float rounded to `digits` significant digits (keeps keys.json readable)."""
    x = float(x)
    return 0.0 if x == 0 else float(f"{x:.{digits}g}")


def num(id, what, value, entity=(), period=(), unit="", also=()):
    k = {"id": id, "what": what, "value": sig(value), "entity": list(entity),
         "period": [p if isinstance(p, str) else list(p) for p in period], "unit": unit}
    if also:
        k["also"] = [sig(v) for v in also]
    return k


def concl(id, text, all_, none=()):
    return {"id": id, "text": text, "check": {"all": [a if isinstance(a, str) else list(a)
                                                      for a in all_], "none": list(none)}}


def cagr(first, last, years):
    return ((last / first) ** (1.0 / years) - 1.0) * 100.0


def pct_change(first, last):
    return (last / first - 1.0) * 100.0


def decade(a, b):
    """Alternative spellings of a period a-b (b = a + 10)."""
    return [f"{a}s", f"{a}-{b}", f"{a}\u2013{b}", f"{a}-{str(b)[2:]}", f"{a}\u2013{str(b)[2:]}",
            f"{a} to {b}", f"{a} and {b}"]


# --- tables -----------------------------------------------------------------------------------

# The tables a question's keys are computed from: every loader opens its file through table(),
# which records the name; build() writes them to keys.json as the question's "tables" (the
# relevant tables that bench/retrieval_dev.py expects retrieval to find).
_READ = set()


def table(name):
    _READ.add(name)
    return TABLES / name


# The relevant document of each question, judged by hand from examples/docs (three short notes
# on the data of iowa-electricity, us-employment and driving): a note is relevant when it
# describes the table the question is answered from. Written to keys.json as "docs".
DOCS = {
    "iowa-mix": ["iowa-electricity.md"],
    "recession-jobs": ["us-employment.md"],
    "driving-gas": ["driving.md"],
    "fertility-five": [],
    "fertility-extremes": [],
    "tech-stocks": [],
    "crime-violent": [],
    "crime-murder": [],
    "co2-growth": [],
    "iowa-renewables-growth": ["iowa-electricity.md"],
    "jobs-recovery": ["us-employment.md"],
    "gdp-decades": [],
    "elnino-cycle": [],
    "elnino-extremes": [],
    "jobs-sector-mix": ["us-employment.md"],
    "services-mix": ["us-employment.md"],
}


def iowa():
    t = pd.read_csv(table("iowa-electricity.csv"))
    t["y"] = t["year"].str[:4].astype(int)
    return t.pivot(index="y", columns="source", values="net_generation")


def employment():
    return pd.read_csv(table("us-employment.csv"), parse_dates=["month"]).set_index("month")


def driving():
    return pd.read_json(table("driving.json")).set_index("year")


FERTILITY_AGGREGATES = ["Sub-Saharan Africa (IFC classification)",
                        "Latin America & Caribbean (all income levels)", "OECD members",
                        "Other small states", "Pacific island small states"]


def fertility():
    t = pd.read_csv(table("fertility.csv"))
    return t[~t["Country Name"].isin(FERTILITY_AGGREGATES)].set_index("Country Name")


def stocks():
    t = pd.read_csv(table("stocks.csv"))
    t["date"] = pd.to_datetime(t["date"], format="%b %d %Y")
    return t.pivot(index="date", columns="symbol", values="price")


def statecrime():
    return pd.read_csv(table("statecrime.csv")).set_index("state")


def co2_annual():
    t = pd.read_csv(table("co2.csv"))
    t["y"] = t["date"] // 10000
    return t.groupby("y")["co2"].mean()  # mean of the weeks with a value


def gdp_annual():
    t = pd.read_csv(table("macrodata.csv"))
    return t.groupby("year")["realgdp"].mean()


def elnino():
    return pd.read_csv(table("elnino.csv")).set_index("YEAR")


MONTHS = {"JAN": "january", "FEB": "february", "MAR": "march", "APR": "april", "MAY": "may",
          "JUN": "june", "JUL": "july", "AUG": "august", "SEP": "september", "OCT": "october",
          "NOV": "november", "DEC": "december"}


# --- questions --------------------------------------------------------------------------------

def q_iowa_mix():
    p = iowa()
    share = p.div(p.sum(axis=1), axis=0) * 100
    f, r, n = "Fossil Fuels", "Renewables", "Nuclear Energy"
    nums = [
        num("fossil-share-2001", "fossil fuels' share of net generation, 2001", share.loc[2001, f],
            FOSSIL, ["2001"], PCT),
        num("fossil-share-2017", "fossil fuels' share of net generation, 2017", share.loc[2017, f],
            FOSSIL, ["2017"], PCT),
        num("renew-share-2001", "renewables' share of net generation, 2001", share.loc[2001, r],
            RENEW, ["2001"], PCT),
        num("renew-share-2017", "renewables' share of net generation, 2017", share.loc[2017, r],
            RENEW, ["2017"], PCT),
        num("nuclear-share-2001", "nuclear share of net generation, 2001", share.loc[2001, n],
            NUCLEAR, ["2001"], PCT),
        num("nuclear-share-2017", "nuclear share of net generation, 2017", share.loc[2017, n],
            NUCLEAR, ["2017"], PCT),
        num("renew-share-shift", "change in renewables' share 2001-2017",
            share.loc[2017, r] - share.loc[2001, r], RENEW, [], PP),
        num("fossil-share-shift", "change in fossil fuels' share 2001-2017",
            share.loc[2017, f] - share.loc[2001, f], FOSSIL, [], PP),
        num("renew-cagr", "renewable generation, compound annual growth 2001-2017",
            cagr(p.loc[2001, r], p.loc[2017, r], 16), RENEW, [], PCT),
        num("fossil-cagr", "fossil-fuel generation, compound annual growth 2001-2017",
            cagr(p.loc[2001, f], p.loc[2017, f], 16), FOSSIL, [], PCT),
    ]
    cons = [
        concl("renew-share-up", "Renewables' share of generation rose sharply (about 4% to 39%).",
              [RENEW, UP]),
        concl("fossil-share-down", "Fossil fuels' share fell (about 87% to 52%).",
              [FOSSIL, DOWN]),
        concl("renew-faster", "Renewable generation grew far faster than fossil-fuel generation.",
              [RENEW, ["faster", "fastest", "outpac*", "far more", "much more", "outgrew"]]),
        concl("nuclear-stable", "Nuclear's share stayed roughly constant at about 9%.",
              [NUCLEAR, ["stable", "steady", "steadily", "flat", "constant", "unchanged",
                         "little changed", "roughly", "about 9", "around 9", "stayed", "held",
                         "remained"]]),
    ]
    return nums, cons


def q_recession_jobs():
    e = employment()
    nf = e["nonfarm"]
    peak = nf.loc[:"2009"].idxmax()
    trough = nf.loc["2008":"2012"].idxmin()
    back = nf[(nf.index > trough) & (nf >= nf[peak])].index[0]
    assert (peak.year, peak.month, trough.year, trough.month) == (2008, 1, 2010, 2)
    assert (back.year, back.month) == (2014, 5)
    loss = e.loc[trough] - e.loc[peak]
    months = lambda a, b: (b.year - a.year) * 12 + b.month - a.month  # noqa: E731
    nums = [
        num("peak", "nonfarm employment at its January 2008 peak", nf[peak], NONFARM, ["2008"],
            "thousand jobs"),
        num("trough", "nonfarm employment at its February 2010 low", nf[trough], NONFARM,
            ["2010"], "thousand jobs"),
        num("loss", "jobs lost, January 2008 to February 2010", loss["nonfarm"], [], [],
            "thousand jobs"),
        num("loss-pct", "relative job loss, January 2008 to February 2010",
            pct_change(nf[peak], nf[trough]), [], [], PCT),
        num("manufacturing-loss", "manufacturing jobs lost, Jan 2008-Feb 2010",
            loss["manufacturing"], ["manufactur*"], [], "thousand jobs"),
        num("trade-loss", "trade, transportation and utilities jobs lost, Jan 2008-Feb 2010",
            loss["trade_transportation_utilties"], TRADE, [], "thousand jobs"),
        num("construction-loss", "construction jobs lost, Jan 2008-Feb 2010",
            loss["construction"], ["construction"], [], "thousand jobs"),
        num("construction-loss-pct", "construction's relative job loss, Jan 2008-Feb 2010",
            pct_change(e.loc[peak, "construction"], e.loc[trough, "construction"]),
            ["construction"], [], PCT),
        num("months-to-recover", "months from the January 2008 peak until employment was back "
            "at that level (May 2014)", months(peak, back), [], [], "months"),
        num("months-from-trough", "months from the February 2010 low until May 2014",
            months(trough, back), [], [], "months"),
    ]
    cons = [
        concl("manufacturing-most", "Manufacturing lost the most jobs of any industry "
              "(about 2.3 million).", [["manufactur*"], MOST]),
        concl("construction-steepest", "Construction lost the largest share of its jobs "
              "(about a quarter).", [["construction"], MOST + ["quarter", "26"]]),
        concl("recovered-2014", "Nonfarm employment regained its pre-recession peak in May 2014.",
              [["2014"], ["recover*", "regain*", "surpass*", "exceed*", "back to", "return*",
                          "above", "pre-recession", "previous peak", "prior peak"]]),
    ]
    return nums, cons


def q_driving_gas():
    d = driving()
    assert len(d) == 55
    r = stats.pearsonr(d["gas"], d["miles"])[0]
    rho = stats.spearmanr(d["gas"], d["miles"])[0]
    dg, dm = d["gas"].diff().dropna(), d["miles"].diff().dropna()
    r_changes = stats.pearsonr(dg, dm)[0]
    miles = ["mile*", "driv*", "vmt"]
    gas = ["gas*", "price*", "fuel"]
    nums = [
        num("r", "Pearson correlation of gas price and miles per capita, 1956-2010", r, [], [],
            "correlation coefficient"),
        num("rho", "Spearman rank correlation of gas price and miles per capita", rho, [], [],
            "correlation coefficient"),
        num("n", "number of years", len(d), [], [], "years"),
        num("r-changes", "Pearson correlation of year-to-year changes in gas price and miles",
            r_changes, [], [], "correlation coefficient"),
        num("miles-1956", "miles driven per capita, 1956", d.loc[1956, "miles"], miles, ["1956"],
            "miles per person"),
        num("miles-2010", "miles driven per capita, 2010", d.loc[2010, "miles"], miles, ["2010"],
            "miles per person"),
        num("miles-peak", "peak miles per capita (2005)", d["miles"].max(), miles, ["2005"],
            "miles per person"),
        num("gas-max", "highest gas price (2008)", d["gas"].max(), gas, ["2008"],
            "dollars per gallon, inflation-adjusted"),
        num("gas-min", "lowest gas price (1998)", d["gas"].min(), gas, ["1998"],
            "dollars per gallon, inflation-adjusted"),
    ]
    assert d["miles"].idxmax() == 2005 and d["gas"].idxmax() == 2008 and d["gas"].idxmin() == 1998
    cons = [
        concl("weak", "Across 1956-2010 the two are only weakly (negatively) correlated.",
              [["correlat*", "relationship", "association", "associated", "related", "link*"],
               WEAK]),
        concl("driving-rose", "Miles driven per person rose over the period (about 2.6-fold).",
              [miles, UP]),
        concl("price-shocks", "Driving dipped or stalled when gas prices spiked (around 1974, "
              "1979-1981 and 2008).",
              [["1974", "1979", "1980", "1981", "2008", "spike*", "shock*"],
               ["dip*", "fell", "declin*", "drop*", "decreas*", "stall*", "flatten*", "reduc*",
                "less"]]),
    ]
    return nums, cons


def q_fertility_five():
    f = fertility()
    names = {"China": ["china"], "India": ["india"], "Brazil": ["brazil"],
             "Korea, Rep.": ["korea*", "south korea*"], "United States": US}
    nums = []
    for c, al in names.items():
        short = al[0].split("*")[0]
        nums.append(num(f"change-{short.replace(' ', '-')}", f"{c}: change 1960-2011",
                        f.loc[c, "2011"] - f.loc[c, "1960"], al, [], "births per woman"))
    k = "Korea, Rep."
    nums += [
        num("korea-1960", "South Korea, 1960", f.loc[k, "1960"], names[k], ["1960"],
            "births per woman"),
        num("korea-2011", "South Korea, 2011", f.loc[k, "2011"], names[k], ["2011"],
            "births per woman"),
        num("korea-pct", "South Korea: relative change 1960-2011",
            pct_change(f.loc[k, "1960"], f.loc[k, "2011"]), names[k], [], PCT),
        num("india-2011", "India, 2011 (highest of the five)", f.loc["India", "2011"], ["india"],
            ["2011"], "births per woman"),
        num("us-2011", "United States, 2011", f.loc["United States", "2011"], US, ["2011"],
            "births per woman"),
    ]
    five = f.loc[list(names), "2011"] - f.loc[list(names), "1960"]
    assert five.idxmin() == k and five.idxmax() == "United States"
    assert f.loc[list(names), "2011"].idxmax() == "India"
    cons = [
        concl("korea-largest-fall", "South Korea's fertility fell the most (by about 4.9 births "
              "per woman, -80%).", [names[k], MOST]),
        concl("us-smallest-fall", "The United States saw the smallest fall.",
              [US, LEAST + ["less"]]),
        concl("all-fell", "Fertility fell in all five countries.",
              [["all five", "all of the five", "each of the five", "every one", "all five "
                "countries", "in all", "every country", "each country", "all of them"],
               DOWN + ["below"]]),
    ]
    return nums, cons


def q_fertility_extremes():
    f = fertility()
    y11 = f["2011"].dropna()
    change = (f["2011"] - f["1960"]).dropna()
    rose = change[change > 0].sort_values(ascending=False)
    top, bottom = y11.sort_values(ascending=False), y11.sort_values()
    falls = change.sort_values()
    assert list(top.index[:2]) == ["Niger", "Mali"]
    assert list(bottom.index[:3]) == ["Macao SAR, China", "Singapore", "Hong Kong SAR, China"]
    assert list(falls.index[:3]) == ["Costa Rica", "St. Vincent and the Grenadines",
                                     "United Arab Emirates"]
    assert list(rose.index) == ["Niger", "Chad", "Gambia, The", "Mali", "Congo, Dem. Rep."]
    bpw = "births per woman"
    nums = [
        num("niger-2011", "Niger, 2011 (highest)", top["Niger"], ["niger"], ["2011"], bpw),
        num("mali-2011", "Mali, 2011 (second highest)", top["Mali"], ["mali"], ["2011"], bpw),
        num("macao-2011", "Macao SAR, China, 2011 (lowest)", y11["Macao SAR, China"],
            ["macao", "macau"], ["2011"], bpw),
        num("singapore-2011", "Singapore, 2011", y11["Singapore"], ["singapore"], ["2011"], bpw),
        num("hongkong-2011", "Hong Kong SAR, China, 2011", y11["Hong Kong SAR, China"],
            ["hong kong"], ["2011"], bpw),
        num("costa-rica-fall", "Costa Rica: change 1960-2011 (largest fall)", falls["Costa Rica"],
            ["costa rica"], [], bpw),
        num("st-vincent-fall", "St. Vincent and the Grenadines: change 1960-2011",
            falls["St. Vincent and the Grenadines"],
            ["st. vincent", "st vincent", "saint vincent"], [], bpw),
        num("uae-fall", "United Arab Emirates: change 1960-2011",
            falls["United Arab Emirates"], ["united arab emirates", "uae", "emirates"], [], bpw),
        num("niger-rise", "Niger: change 1960-2011 (largest rise)", rose["Niger"], ["niger"], [],
            bpw),
    ]
    cons = [
        concl("niger-highest", "Niger had the highest fertility rate in 2011 (about 7.6).",
              [["niger"], MOST]),
        concl("macao-lowest", "Macao had the lowest (about 1.0), with Singapore and Hong Kong "
              "next.", [["macao", "macau"], LEAST]),
        concl("costa-rica-largest-fall", "Costa Rica saw the largest fall (about 5.5 births per "
              "woman).", [["costa rica"], MOST]),
        concl("rose-sahel", "Fertility rose in only a few countries, all in sub-Saharan Africa "
              "(Niger, Chad, The Gambia, Mali, DR Congo).",
              [["niger", "chad", "gambia", "mali", "congo"],
               ["rose", "risen", "increas*", "grew", "higher in 2011", "higher than in 1960",
                "went up", "edged up"]]),
    ]
    return nums, cons


def q_tech_stocks():
    p = stocks()
    a, b = p.loc["2005-01-01"], p.loc["2010-03-01"]
    ch = (b / a - 1) * 100
    assert ch.idxmax() == "AAPL" and ch.idxmin() == "MSFT"
    al = {"AAPL": APPLE, "AMZN": AMAZON, "GOOG": GOOGLE, "IBM": IBM, "MSFT": MICROSOFT}
    usd = "US dollars per share"
    GAIN = ["gain*", "return*", "rise", "rose", "increase*", "growth", "grew", "%", "percent",
            "perform*", "appreciat*", "change"]
    nums = [num(f"{s.lower()}-change", f"{s}: price change, January 2005 to March 2010",
                ch[s], al[s], [], PCT) for s in ["AAPL", "AMZN", "GOOG", "IBM", "MSFT"]]
    nums += [
        num("aapl-2005", "Apple, January 2005", a["AAPL"], APPLE, ["2005"], usd),
        num("aapl-2010", "Apple, March 2010", b["AAPL"], APPLE, ["2010"], usd),
        num("msft-2005", "Microsoft, January 2005", a["MSFT"], MICROSOFT, ["2005"], usd),
        num("msft-2010", "Microsoft, March 2010", b["MSFT"], MICROSOFT, ["2010"], usd),
        num("goog-2010", "Google, March 2010", b["GOOG"], GOOGLE, ["2010"], usd),
    ]
    cons = [
        concl("apple-most", "Apple gained the most (about +480%).", [APPLE, MOST, GAIN]),
        concl("microsoft-least", "Microsoft gained the least (about +19%).",
              [MICROSOFT, LEAST + ["barely"], GAIN]),
    ]
    return nums, cons


def q_crime_violent():
    s = statecrime()
    assert len(s) == 51
    r = lambda x: stats.pearsonr(s[x], s["violent"])[0]  # noqa: E731
    v = s["violent"].sort_values()
    assert list(v.index[-2:]) == ["Nevada", "District of Columbia"]
    assert list(v.index[:2]) == ["Maine", "Vermont"]
    rate = "violent crimes per 100,000 population"
    nums = [
        num("r-poverty", "Pearson r, violent crime rate vs poverty rate (n=51)", r("poverty"),
            ["poverty"], [], "correlation coefficient"),
        num("r-hs-grad", "Pearson r, violent crime rate vs high-school graduation rate",
            r("hs_grad"), HS, [], "correlation coefficient"),
        num("r-single", "Pearson r, violent crime rate vs single-parent household share",
            r("single"), SINGLE, [], "correlation coefficient"),
        num("rho-single", "Spearman rho, violent crime rate vs single-parent household share",
            stats.spearmanr(s["single"], s["violent"])[0], SINGLE, [],
            "correlation coefficient"),
        num("n", "number of jurisdictions (50 states and DC)", len(s), [], [], "count"),
        num("dc", "District of Columbia (highest)", v["District of Columbia"], DC, [], rate),
        num("nevada", "Nevada (highest of the 50 states)", v["Nevada"], ["nevada"], [], rate),
        num("maine", "Maine (lowest)", v["Maine"], ["maine"], [], rate),
        num("vermont", "Vermont (second lowest)", v["Vermont"], ["vermont"], [], rate),
    ]
    cons = [
        concl("single-strongest", "The single-parent share has the strongest association "
              "(positive, r about 0.81).",
              [SINGLE, ["strongest", "strong", "strongly", "closest", "closely", "most"]]),
        concl("hs-negative", "Higher high-school graduation goes with lower violent crime.",
              [HS, NEG]),
        concl("poverty-positive", "Poverty is positively but only moderately associated.",
              [["poverty"], POS]),
        concl("dc-highest", "The District of Columbia has by far the highest rate.",
              [DC, MOST]),
        concl("maine-lowest", "Maine has the lowest rate.", [["maine"], LEAST]),
    ]
    return nums, cons


def q_crime_murder():
    s = statecrime().drop("District of Columbia")
    assert len(s) == 50
    r = lambda x: stats.pearsonr(s[x], s["murder"])[0]  # noqa: E731
    rho = lambda x: stats.spearmanr(s[x], s["murder"])[0]  # noqa: E731
    m = s["murder"].sort_values(ascending=False)
    assert list(m.index[:3]) == ["Louisiana", "New Mexico", "Illinois"]
    cc, rate = "correlation coefficient", "murders per 100,000 population"
    nums = [
        num("r-poverty", "Pearson r, murder rate vs poverty rate (50 states)", r("poverty"),
            ["poverty"], [], cc),
        num("r-hs-grad", "Pearson r, murder rate vs high-school graduation rate", r("hs_grad"),
            HS, [], cc),
        num("r-urban", "Pearson r, murder rate vs urbanized share", r("urban"), URBAN, [], cc),
        num("rho-poverty", "Spearman rho, murder rate vs poverty rate", rho("poverty"),
            ["poverty"], [], cc),
        num("rho-hs-grad", "Spearman rho, murder rate vs high-school graduation rate",
            rho("hs_grad"), HS, [], cc),
        num("rho-urban", "Spearman rho, murder rate vs urbanized share", rho("urban"), URBAN,
            [], cc),
        num("louisiana", "Louisiana (highest)", m["Louisiana"], ["louisiana"], [], rate),
        # New Mexico (second, 10.0) is left out: "10" has one significant digit.
        num("illinois", "Illinois (third highest)", m["Illinois"], ["illinois"], [], rate),
    ]
    cons = [
        concl("hs-negative-strongest", "High-school graduation has the strongest association, "
              "negative (r about -0.71).", [HS, NEG]),
        concl("poverty-positive", "Poverty is positively associated (r about 0.60).",
              [["poverty"], POS]),
        concl("urban-weak", "Urbanization is only weakly associated (r about 0.15).",
              [URBAN, WEAK]),
        concl("louisiana-highest", "Louisiana had the highest murder rate.",
              [["louisiana"], MOST]),
    ]
    return nums, cons


def q_co2_growth():
    a = co2_annual()
    a = a.loc[1959:2001]
    slope = stats.linregress(a.index.to_numpy(float), a.to_numpy()).slope
    per60 = (a[1970] - a[1960]) / 10
    per90 = (a[2000] - a[1990]) / 10
    co2 = ["co2", "co\u2082", "carbon dioxide", "concentration*"]
    ppm = "ppm"
    nums = [
        num("mean-1959", "annual average CO2, 1959", a[1959], co2, ["1959"], ppm),
        num("mean-2001", "annual average CO2, 2001", a[2001], co2, ["2001"], ppm),
        num("rise", "increase 1959-2001", a[2001] - a[1959], [], [], ppm),
        num("rise-pct", "relative increase 1959-2001", pct_change(a[1959], a[2001]), [], [], PCT),
        num("per-year", "average increase per year, 1959-2001", (a[2001] - a[1959]) / 42, [],
            [], "ppm per year"),
        num("slope", "OLS trend of the annual averages, 1959-2001", slope, [], [],
            "ppm per year"),
        num("per-year-1960s", "average yearly increase 1960-1970", per60, [],
            [decade(1960, 1970)], "ppm per year"),
        num("per-year-1990s", "average yearly increase 1990-2000", per90, [],
            [decade(1990, 2000)], "ppm per year"),
    ]
    cons = [
        concl("accelerated", "The rise sped up: about 1.5 ppm a year in 1990-2000 against about "
              "0.9 in 1960-1970.",
              [["accelerat*", "faster", "sped up", "speeded up", "quicker", "more rapid*",
                "doubled", "steeper", "picked up"]],
              ["slower", "slowed", "decelerat*", "not accelerat*", "no accelerat*",
               "did not speed up", "no sign of accelerat*"]),
    ]
    return nums, cons


def q_iowa_renewables_growth():
    r = iowa()["Renewables"]
    slope = stats.linregress(r.index.to_numpy(float), r.to_numpy(float)).slope
    tmwh = "thousand MWh"
    nums = [
        num("renew-2001", "renewable generation, 2001", r[2001], RENEW, ["2001"], tmwh),
        num("renew-2009", "renewable generation, 2009", r[2009], RENEW, ["2009"], tmwh),
        num("renew-2017", "renewable generation, 2017", r[2017], RENEW, ["2017"], tmwh),
        num("cagr-2001-2017", "compound annual growth 2001-2017", cagr(r[2001], r[2017], 16),
            [], ["2001", "2017"], PCT),
        num("cagr-2001-2009", "compound annual growth 2001-2009", cagr(r[2001], r[2009], 8),
            [], ["2001", "2009"], PCT),
        num("cagr-2009-2017", "compound annual growth 2009-2017", cagr(r[2009], r[2017], 8),
            [], ["2009", "2017"], PCT),
        num("multiple", "2017 generation as a multiple of 2001", r[2017] / r[2001], [], [],
            "times"),
        num("slope", "OLS trend 2001-2017", slope, [], [], "thousand MWh per year"),
        num("added-per-year-2001-2009", "average yearly addition 2001-2009",
            (r[2009] - r[2001]) / 8, [], ["2001", "2009"], "thousand MWh per year"),
        num("added-per-year-2009-2017", "average yearly addition 2009-2017",
            (r[2017] - r[2009]) / 8, [], ["2009", "2017"], "thousand MWh per year"),
    ]
    cons = [
        concl("rate-slowed", "The compound growth rate slowed after 2009 (about 25% a year in "
              "2001-2009, 12% in 2009-2017).",
              [["slow*", "decelerat*", "lower", "eased", "halved", "smaller", "less rapid*",
                "cooled", "moderated"],
               ["growth", "rate", "cagr", "pace", "percent", "%"]]),
    ]
    return nums, cons


def q_jobs_recovery():
    e = employment()
    nf = e["nonfarm"]
    low = nf.loc["2010"].idxmin()
    assert (low.year, low.month) == (2010, 2)
    dec15 = nf["2015-12-01"]
    tj = "thousand jobs"
    nums = [
        num("low-2010", "nonfarm employment at its February 2010 low", nf[low], NONFARM,
            ["2010"], tj),
        num("dec-2015", "nonfarm employment, December 2015", dec15, NONFARM, ["2015"], tj),
        num("gain", "jobs added, February 2010 to December 2015", dec15 - nf[low], [], [], tj),
        num("gain-pct", "relative increase, February 2010 to December 2015",
            pct_change(nf[low], dec15), [], [], PCT),
    ]
    gains = {}
    for y in range(2011, 2016):
        gains[y] = e.loc[str(y), "nonfarm_change"].mean()
        nums.append(num(f"avg-monthly-{y}", f"average monthly job gain in {y}", gains[y], [],
                        [str(y)], "thousand jobs per month"))
    assert max(gains, key=gains.get) == 2014 and gains[2015] < gains[2014]
    cons = [
        concl("best-2014", "Hiring sped up each year to 2014, the strongest year (about 250,000 "
              "a month).", [["2014"], MOST + ["peak*"],
                            ["gain*", "hiring", "added", "adding", "job growth", "job creation",
                             "monthly", "pace", "per month", "a month"]]),
        concl("2015-slower", "Monthly gains eased in 2015 (about 226,000) from 2014.",
              [["2015"], ["slow*", "eased", "lower", "less", "smaller", "fell", "dipped",
                          "below", "down", "cooled", "moderated"]]),
        concl("sped-up", "Job growth accelerated from 2011 to 2014.",
              [["accelerat*", "sped up", "speeded up", "picked up", "faster", "quicken*",
                "strengthen*", "larger gains", "bigger gains", "stronger"],
               ["2011", "2012", "2013", "2014", "each year", "every year", "year after year"]]),
    ]
    return nums, cons


def q_gdp_decades():
    g = gdp_annual()
    spans = [(1960, 1970), (1970, 1980), (1980, 1990), (1990, 2000)]
    nums = [num(f"cagr-{a}-{b}", f"compound annual growth of real GDP {a}-{b}",
                cagr(g[a], g[b], b - a), [], [decade(a, b)], PCT) for a, b in spans]
    nums += [
        num("cagr-2000-2008", "compound annual growth of real GDP 2000-2008",
            cagr(g[2000], g[2008], 8), [],
            [["2000-2008", "2000\u20132008", "2000-08", "2000\u201308", "2000 to 2008",
              "2000 and 2008", "2000s"]], PCT),
        num("gdp-1960", "real GDP, 1960 (annual average)", g[1960], ["gdp", "output"], ["1960"],
            "billion chained 2005 dollars"),
        num("gdp-2008", "real GDP, 2008 (annual average)", g[2008], ["gdp", "output"], ["2008"],
            "billion chained 2005 dollars"),
        num("cagr-1960-2008", "compound annual growth 1960-2008", cagr(g[1960], g[2008], 48), [],
            ["1960", "2008"], PCT),
        num("multiple", "2008 real GDP as a multiple of 1960", g[2008] / g[1960], [], [],
            "times"),
    ]
    rates = {a: cagr(g[a], g[b], b - a) for a, b in spans}
    assert max(rates, key=rates.get) == 1960 and cagr(g[2000], g[2008], 8) < min(rates.values())
    cons = [
        concl("fastest-1960s", "Growth was fastest in the 1960s (about 4.2% a year).",
              [["1960s", "1960-1970", "1960\u20131970", "1960-70", "1960\u201370", "1960 to 1970",
                "sixties"], MOST]),
        concl("slowest-2000s", "Growth was slowest in 2000-2008 (about 2.2% a year): it has "
              "slowed.", [["2000-2008", "2000\u20132008", "2000-08", "2000\u201308", "2000 to 2008",
                           "2000s"], LEAST + ["slow*"]]),
    ]
    return nums, cons


def q_elnino_cycle():
    e = elnino()
    mean = e.mean()
    sd = e.std()
    assert mean.idxmax() == "MAR" and mean.idxmin() == "SEP"
    assert sd.idxmax() == "MAY" and sd.idxmin() == "FEB"
    deg = "degrees Celsius"
    nums = [
        num("mar-mean", "mean March temperature (warmest month)", mean["MAR"], [], ["march"],
            deg),
        num("sep-mean", "mean September temperature (coolest month)", mean["SEP"], [],
            ["september"], deg),
        num("range", "difference between the March and September means",
            mean["MAR"] - mean["SEP"], [], [], deg),
        num("feb-mean", "mean February temperature", mean["FEB"], [], ["february"], deg),
        num("aug-mean", "mean August temperature", mean["AUG"], [], ["august"], deg),
        num("overall-mean", "mean of all months 1950-2010", e.to_numpy().mean(), [], [], deg),
        num("may-sd", "standard deviation across years, May (largest)", sd["MAY"], [], ["may"],
            deg),
        num("feb-sd", "standard deviation across years, February (smallest)", sd["FEB"], [],
            ["february"], deg),
    ]
    cons = [
        concl("march-warmest", "March is the warmest month on average (about 26.2 \u00b0C).",
              [["march", "mar"], ["warmest", "hottest", "highest", "peak*", "maximum", "warm*"]]),
        concl("september-coolest", "September is the coolest (about 20.6 \u00b0C).",
              [["september", "sep", "sept"], ["coolest", "coldest", "lowest", "minimum",
                                              "trough", "cool*", "low"]]),
        concl("may-june-variable", "Year-to-year variability is largest in May and June "
              "(southern autumn/winter), smallest in February.",
              [["may", "june", "jun"], ["variab*", "vary", "varies", "standard deviation",
                                       "spread", "volatil*", "most", "largest"]]),
    ]
    return nums, cons


def q_elnino_extremes():
    e = elnino()
    annual = e.mean(axis=1)
    top, low = annual.sort_values(ascending=False), annual.sort_values()
    assert list(top.index[:2]) == [1997, 1983] and list(low.index[:2]) == [1954, 1955]
    st = e.stack()
    hot, cold = st.idxmax(), st.idxmin()
    assert hot == (1998, "MAR") and cold == (1954, "SEP")
    fit = stats.linregress(annual.index.to_numpy(float), annual.to_numpy())
    deg = "degrees Celsius"
    nums = [
        num("1997", "annual mean 1997 (warmest)", top[1997], [], ["1997"], deg),
        num("1983", "annual mean 1983 (second warmest)", top[1983], [], ["1983"], deg),
        num("1954", "annual mean 1954 (coolest)", low[1954], [], ["1954"], deg),
        num("1955", "annual mean 1955 (second coolest)", low[1955], [], ["1955"], deg),
        num("mar-1998", "March 1998, the warmest month on record", st[hot], [],
            ["1998", "march"], deg),
        num("sep-1954", "September 1954, the coolest month on record", st[cold], [],
            ["1954", "september"], deg),
        num("trend", "OLS trend of the annual mean, per year (also per decade)", fit.slope,
            [], [], "degrees Celsius per year", also=[fit.slope * 10]),
        num("trend-r", "correlation of the annual mean with the year", fit.rvalue, [], [],
            "correlation coefficient"),
    ]
    cons = [
        concl("1997-warmest", "1997 had the warmest annual average (about 25.8 \u00b0C), "
              "just ahead of 1983.", [["1997"], MOST + ["warmest", "hottest", "record"]]),
        concl("1954-coolest", "1954 was the coolest year (about 21.4 \u00b0C).",
              [["1954"], LEAST + ["coolest", "coldest"]]),
        concl("march-1998-record", "The warmest month was March 1998 (about 29.2 \u00b0C).",
              [["1998"], ["march", "mar"]]),
        concl("weak-warming", "There is a slight warming trend (about 0.13 \u00b0C per decade).",
              [["warming", "upward", "increas*", "rising", "rose", "positive"],
               ["trend", "slope", "per decade", "per year", "a decade", "a year"]],
              ["cooling", "downward", "decreasing"]),
    ]
    return nums, cons


def q_jobs_sector_mix():
    e = employment()
    a, b = e.loc["2006-01-01"], e.loc["2015-12-01"]
    groups = {"goods": ("goods_producing", GOODS), "private-services":
              ("private_service_providing", PRIV_SERV), "government": ("government", GOV)}
    nums = []
    for k, (col, al) in groups.items():
        s06, s15 = a[col] / a["nonfarm"] * 100, b[col] / b["nonfarm"] * 100
        nums += [num(f"{k}-2006", f"{col} share of nonfarm jobs, January 2006", s06, al,
                     ["2006"], PCT),
                 num(f"{k}-2015", f"{col} share of nonfarm jobs, December 2015", s15, al,
                     ["2015"], PCT),
                 num(f"{k}-shift", f"{col} share, change 2006-2015", s15 - s06, al, [], PP)]
    cons = [
        concl("goods-lost", "Goods-producing industries lost share (about 16.6% to 13.8%).",
              [GOODS, DOWN]),
        concl("services-gained", "Private service-providing industries gained share (about 67.3% "
              "to 70.8%).", [PRIV_SERV + ["services"], UP]),
        concl("government-slightly-lower", "Government's share edged down (about 16.1% to 15.4%).",
              [GOV, DOWN + ["edged down", "slipped", "dipped"]]),
    ]
    return nums, cons


def q_services_mix():
    e = employment()
    cols = {"trade_transportation_utilties": ("trade", TRADE), "information": ("information", INFO),
            "financial_activities": ("financial", FIN),
            "professional_and_business_services": ("professional", PROF),
            "education_and_health_services": ("education-health", EDU),
            "leisure_and_hospitality": ("leisure", LEISURE), "other_services": ("other", None)}
    a, b = e.loc["2006-01-01"], e.loc["2015-12-01"]
    sa = {c: a[c] / a["private_service_providing"] * 100 for c in cols}
    sb = {c: b[c] / b["private_service_providing"] * 100 for c in cols}
    shift = {c: sb[c] - sa[c] for c in cols}
    assert abs(sum(sa.values()) - 100) < 1e-9
    assert max(shift, key=shift.get) == "education_and_health_services"
    assert min(shift, key=shift.get) == "trade_transportation_utilties"
    edu, trade = "education_and_health_services", "trade_transportation_utilties"
    nums = [
        num("edu-2006", "education and health services' share, January 2006", sa[edu], EDU,
            ["2006"], PCT),
        num("edu-2015", "education and health services' share, December 2015", sb[edu], EDU,
            ["2015"], PCT),
        num("edu-shift", "education and health services, share change", shift[edu], EDU, [], PP),
        num("trade-2006", "trade, transportation and utilities' share, January 2006", sa[trade],
            TRADE, ["2006"], PCT),
        num("trade-2015", "trade, transportation and utilities' share, December 2015", sb[trade],
            TRADE, ["2015"], PCT),
        num("trade-shift", "trade, transportation and utilities, share change", shift[trade],
            TRADE, [], PP),
    ]
    for c in ["financial_activities", "leisure_and_hospitality", "information",
              "professional_and_business_services"]:
        k, al = cols[c]
        nums.append(num(f"{k}-shift", f"{c}, share change", shift[c], al, [], PP))
    cons = [
        concl("edu-gained-most", "Education and health services gained the most share "
              "(about +2.3 points).", [EDU, MOST + UP]),
        concl("trade-lost-most", "Trade, transportation and utilities lost the most share "
              "(about -2.0 points).", [TRADE, DOWN]),
        concl("information-lost", "Information and financial activities also lost share.",
              [INFO + FIN, DOWN]),
        concl("leisure-gained", "Leisure and hospitality gained share (about +1.0 point).",
              [LEISURE, UP]),
    ]
    return nums, cons


QUESTIONS = {
    "iowa-mix": q_iowa_mix,
    "recession-jobs": q_recession_jobs,
    "driving-gas": q_driving_gas,
    "fertility-five": q_fertility_five,
    "fertility-extremes": q_fertility_extremes,
    "tech-stocks": q_tech_stocks,
    "crime-violent": q_crime_violent,
    "crime-murder": q_crime_murder,
    "co2-growth": q_co2_growth,
    "iowa-renewables-growth": q_iowa_renewables_growth,
    "jobs-recovery": q_jobs_recovery,
    "gdp-decades": q_gdp_decades,
    "elnino-cycle": q_elnino_cycle,
    "elnino-extremes": q_elnino_extremes,
    "jobs-sector-mix": q_jobs_sector_mix,
    "services-mix": q_services_mix,
}


def build(questions):
    out = {}
    for q in questions:
        if q["key"] not in QUESTIONS:
            sys.exit(f"dev_keys.py: no key function for question {q['key']!r}")
        _READ.clear()
        nums, cons = QUESTIONS[q["key"]]()
        assert _READ, f"{q['key']}: read no table"
        assert q["key"] in DOCS, f"{q['key']}: no relevant-document judgement in DOCS"
        ids = [n["id"] for n in nums] + [c["id"] for c in cons]
        assert len(ids) == len(set(ids)), f"{q['key']}: duplicate ids"
        assert 4 <= len(nums) <= 10, f"{q['key']}: {len(nums)} key numbers"
        for n in nums:
            assert np.isfinite(n["value"]), (q["key"], n["id"])
            # The scorer ignores numbers with fewer than two significant digits.
            assert n["value"] != 0 and not float(n["value"]).is_integer() or \
                len(str(abs(int(n["value"]))).strip("0")) >= 2, n
            # research_dev.py reads a bare unsigned integer 1800-2100 as a year, not a value,
            # so a positive key value there must carry a scale ("thousand ...") that lets it
            # be written otherwise (1.98 million).
            assert not (1800 <= n["value"] <= 2100 and n["unit"] != "year"
                        and not n["unit"].startswith(("thousand", "million", "billion"))), n
        out[q["key"]] = {"question": q["question"], "tables": sorted(_READ),
                         "docs": DOCS[q["key"]], "numbers": nums, "conclusions": cons}
    missing = set(QUESTIONS) - {q["key"] for q in questions}
    if missing:
        sys.exit(f"dev_keys.py: key functions without a question: {sorted(missing)}")
    if set(DOCS) != set(QUESTIONS):
        sys.exit(f"dev_keys.py: DOCS and the key functions differ: "
                 f"{sorted(set(DOCS) ^ set(QUESTIONS))}")
    return {"about": "Answer keys for examples/dev/questions.json, computed by "
                     "scripts/dev_keys.py from examples/tables; scored by bench/research_dev.py "
                     "(rules: examples/dev/README.md).",
            "questions": out}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if examples/dev/keys.json differs from a fresh computation")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every key number")
    args = ap.parse_args()
    questions = json.loads((DEV / "questions.json").read_text())
    keys = build(questions)
    text = json.dumps(keys, indent=1, ensure_ascii=False) + "\n"
    path = DEV / "keys.json"
    if args.check:
        same = path.exists() and path.read_text() == text
        print("keys.json is up to date" if same else "keys.json differs: run scripts/dev_keys.py")
        return 0 if same else 1
    path.write_text(text)
    for k, v in keys["questions"].items():
        print(f"{k:24s} {len(v['numbers']):2d} numbers, {len(v['conclusions'])} conclusions")
        if args.verbose:
            for n in v["numbers"]:
                print(f"    {n['id']:26s} {n['value']:>14g} {n['unit']:24s} {n['entity'][:2]} "
                      f"{n['period']}")
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
