#!/usr/bin/env python3
"""The research dev set: run `kdr research` on each question of examples/dev/questions.json and
score the reports against examples/dev/keys.json (made by scripts/dev_keys.py).

Per question: key-number recall (found / total), key conclusions right / total, the share of
the report's numbers that kdr verified (verification.json) and the count it could not, and the
run's seconds. Rules: examples/dev/README.md. Standard library only (no pandas needed).

    scripts/research_dev [--only KEY] [--out DIR] [--reuse] [--kdr PATH] [-v] [kdr options...]
    e.g. scripts/research_dev --llm-url http://127.0.0.1:8080/v1
         scripts/research_dev --reuse -v          (score out/dev/*/report.md again)
Unknown options (and everything after --) go to `kdr research`.
"""
import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEV = ROOT / "examples" / "dev"

REL_TOL = 0.015  # a stated number within 1.5% of the key value counts
MIN_SIG = 2      # ... if it has at least two significant digits

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december"]
SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}

# --- the report body and its lines ------------------------------------------------------------


def report_body(md):
    """report.md from its start up to the line `## References` (or `## Verification`)."""
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.strip() in ("## References", "## Verification"):
            return "\n".join(lines[:i])
    return md


# Words after which ". " does not end a sentence.
_ABBREV = {"st", "mr", "mrs", "ms", "dr", "vs", "e.g", "i.e", "etc", "no", "fig", "approx",
           "rep", "dem", "fed", "sts", "inc", "co", "corp", "jan", "feb", "mar", "apr", "jun",
           "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "d.c", "u.k", "ca", "cf"}


def split_sentences(text):
    """Split on '. ' followed by an uppercase letter or a digit, except after an abbreviation
    (St., U.S., e.g., Feb., a single initial)."""
    out, start = [], 0
    for m in re.finditer(r"\.\s+(?=[A-Z0-9])", text):
        word = re.search(r"([A-Za-z][A-Za-z.]*)$", text[start:m.start()])
        w = word.group(1).lower() if word else ""
        if w in _ABBREV or (len(w) == 1 and w.isalpha()) or re.fullmatch(r"([a-z]\.)+[a-z]", w):
            continue
        out.append(text[start:m.start() + 1])
        start = m.end()
    out.append(text[start:])
    return [s.strip() for s in out if s.strip()]


def _is_table_row(line):
    return line.lstrip().startswith("|")


def _is_separator(line):
    return re.fullmatch(r"\s*\|?(\s*:?-{2,}:?\s*\|)+\s*:?-*:?\s*", line) is not None


class Line:
    """One line of the body: `text` holds the numbers; `context` (text plus, for a table row,
    the table's caption and header) is where entity and period names are looked for."""

    def __init__(self, text, context=None):
        self.text = text
        self.context = context if context is not None else text

    def __repr__(self):
        return f"Line({self.text!r})"


def body_lines(body):
    """Each sentence, caption, list item and table row of the body (see split_sentences)."""
    out = []
    raw = body.splitlines()
    i = 0
    while i < len(raw):
        line = raw[i]
        if _is_table_row(line):
            caption = ""
            j = i - 1
            while j >= 0 and not raw[j].strip():
                j -= 1
            if j >= 0 and re.match(r"\W*(table|tab\.)\s", raw[j].strip(), re.I):
                caption = raw[j].strip()
            header = line
            k = i + 1
            rows = []
            while k < len(raw) and _is_table_row(raw[k]):
                if not _is_separator(raw[k]):
                    rows.append(raw[k])
                k += 1
            out.append(Line(header, caption + " " + header))
            for r in rows:
                out.append(Line(r, caption + " " + header + " " + r))
            i = k
            continue
        stripped = line.strip()
        if stripped:
            for s in split_sentences(stripped):
                out.append(Line(s))
        i += 1
    return out


# --- words, entities and periods --------------------------------------------------------------


def normalize(text):
    return (text.replace("\u2019", "'").replace("\u00a0", " ").replace("\u202f", " ")
            .replace("\u2009", " ").lower())


_TERM_CACHE = {}


def term_regex(term):
    """A word or phrase, case-insensitive, matched as whole words; a trailing * makes it a
    prefix ("renewable*" matches "renewables")."""
    r = _TERM_CACHE.get(term)
    if r is None:
        t = normalize(term)
        prefix = t.endswith("*")
        t = t.rstrip("*")
        month = t in MONTHS
        pat = re.escape(t)
        if month:  # a month name may be written as its three-letter abbreviation (or Sept)
            alts = [t, t[:3]] + (["sept"] if t == "september" else [])
            pat = "(?:" + "|".join(re.escape(a) for a in alts) + ")"
        lead = r"(?<![a-z0-9])" if t[:1].isalnum() else ""
        trail = "" if prefix or not t[-1:].isalnum() else r"(?![a-z0-9])"
        if t.isdigit():  # a year: "2001" also matches "2001-2017", not "20012"
            lead, trail = r"(?<!\d)", r"(?!\d)"
        r = re.compile(lead + pat + trail)
        _TERM_CACHE[term] = r
    return r


def has_term(text, item):
    """item: a word/phrase, or a list of alternatives (any one)."""
    alts = [item] if isinstance(item, str) else item
    t = normalize(text)
    return any(term_regex(a).search(t) for a in alts)


# --- numbers ----------------------------------------------------------------------------------

_NUM = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?")
_AFTER_PCT = re.compile(r"\s*(%|percent\b|per cent\b|percentage points?\b|pp\b|pts?\b|"
                        r"points?\b)", re.I)
_AFTER_SCALE = re.compile(r"\s*(thousand|million|billion|trillion)\b", re.I)
_MINUS = "-\u2212\u2013\u2012"


class Number:
    def __init__(self, raw, value, sig, half_unit, percent, year):
        self.raw, self.value, self.sig = raw, value, sig
        self.half_unit, self.percent, self.year = half_unit, percent, year

    def __repr__(self):
        return (f"Number({self.raw!r}, {self.value}, sig={self.sig}, half={self.half_unit}, "
                f"pct={self.percent}, year={self.year})")


def _clean_for_numbers(text):
    t = re.sub(r"\]\([^)]*\)", "]", text)                                 # link/image targets
    t = re.sub(r"https?://\S+", " ", t)
    t = re.sub(r"\[\s*\d+(?:\s*[,;\u2013-]\s*\d+)*\s*\]", " ", t)           # citations [1], [2, 3]
    t = re.sub(r"\b\d{4}-\d{2}(?:-\d{2})?\b", " ", t)                     # ISO dates
    t = re.sub(r"\b(?:figure|fig\.|table)\s+\d+", " ", t, flags=re.I)     # Figure 3, Table 2
    return t


def parse_numbers(text):
    """The numbers a line states: 1,234.5, -12.3%, +4.1, 3.4 million, \u221212 (unicode
    minus), $2.38. A '-' between two digits/words is a range (2001-2017), not a sign."""
    t = _clean_for_numbers(text)
    out = []
    for m in _NUM.finditer(t):
        intpart, frac = m.group(1), m.group(2) or ""
        after = t[m.end():]
        if re.match(r"(st|nd|rd|th)\b", after):  # ordinals: 12th
            continue
        digits = intpart.replace(",", "")
        value = float(digits + frac)
        # sign: a minus directly before (after an optional $) that is not a range dash
        j = m.start()
        if j > 0 and t[j - 1] == "$":
            j -= 1
        negative = False
        if j > 0 and t[j - 1] in _MINUS:
            before = t[j - 2] if j >= 2 else " "
            if not before.isalnum() and before not in ")%":
                negative = True
        # significant digits and the unit of the last significant digit
        if frac:
            sd = (digits + frac[1:]).lstrip("0")
            sig = len(sd)
            unit = 10.0 ** -(len(frac) - 1)
        else:
            core = digits.lstrip("0")
            trailing = len(core) - len(core.rstrip("0"))
            sig = len(core) - trailing
            unit = 10.0 ** trailing
        pct = _AFTER_PCT.match(after) is not None
        scale_m = _AFTER_SCALE.match(after)
        scale = SCALES[scale_m.group(1).lower()] if scale_m else 1.0
        year = (not frac and "," not in intpart and len(digits) == 4 and 1800 <= value <= 2100
                and not negative and not pct and scale == 1.0
                and not (m.start() > 0 and t[m.start() - 1] in "$+"))
        v = -value if negative else value
        out.append(Number(m.group(0), v * scale, sig, unit * scale / 2.0, pct, year))
    return out


def _scales_for(unit):
    u = (unit or "").lower()
    mults = [1.0]
    for word, f in (("thousand", 1e3), ("million", 1e6), ("billion", 1e9)):
        if u.startswith(word):
            mults.append(f)
            if word == "thousand" and "mwh" in u:
                mults.append(1e-3)  # thousand MWh = GWh; also written in TWh
    return mults


def number_matches(n, key):
    """A stated number matches a key value when its magnitude is within 1.5% of |value| or
    within half a unit of its last significant digit; it needs >= 2 significant digits; a
    number written as a percent matches only percent keys."""
    if n.sig < MIN_SIG:
        return False
    unit = key.get("unit", "")
    if n.percent and "percent" not in unit.lower():
        return False
    if n.year and unit != "year":
        return False
    period_words = [w for p in key.get("period", []) for w in ([p] if isinstance(p, str) else p)]
    if n.raw.replace(",", "") in period_words:  # the period's own year is not the value
        return False
    stated = abs(n.value)
    for v in [key["value"]] + list(key.get("also", [])):
        for f in _scales_for(unit):
            target = abs(v) * f
            eps = 1e-9 * max(1.0, target)
            if abs(stated - target) <= REL_TOL * target + eps:
                return True
            if abs(stated - target) <= n.half_unit + eps:
                return True
    return False


def key_found(key, lines):
    """The first line that states the key number with its entity and period, or None."""
    for line in lines:
        ctx = line.context
        if key.get("entity") and not has_term(ctx, key["entity"]):
            continue
        if not all(has_term(ctx, p) for p in key.get("period", [])):
            continue
        if any(number_matches(n, key) for n in parse_numbers(line.text)):
            return line
    return None


def conclusion_right(concl, lines):
    """The first line on which every `all` item appears and no `none` item does, or None."""
    check = concl["check"]
    for line in lines:
        ctx = line.context
        if all(has_term(ctx, item) for item in check.get("all", [])) and not any(
                has_term(ctx, item) for item in check.get("none", [])):
            return line
    return None


# --- scoring a report -------------------------------------------------------------------------


def read_verification(path):
    try:
        s = json.loads(pathlib.Path(path).read_text())["summary"]
        numbers, verified = int(s["numbers"]), int(s["verified_numbers"])
        unverified = int(s.get("unverified_numbers", numbers - verified))
        return {"numbers": numbers, "verified": verified, "unverified": unverified,
                "rate": verified / numbers if numbers else None}
    except (OSError, KeyError, ValueError, TypeError):
        return None


def score_text(md, keys):
    """Score one report's markdown against one question's keys."""
    lines = body_lines(report_body(md))
    found, missed = [], []
    for k in keys["numbers"]:
        line = key_found(k, lines)
        (found if line else missed).append({**k, "line": line.text if line else None})
    right, wrong = [], []
    for c in keys["conclusions"]:
        line = conclusion_right(c, lines)
        (right if line else wrong).append({"id": c["id"], "text": c["text"],
                                           "line": line.text if line else None})
    total = len(keys["numbers"])
    return {"found": len(found), "total": total, "recall": len(found) / total if total else 0.0,
            "found_keys": [{"id": k["id"], "line": k["line"]} for k in found],
            "missed_keys": [{"id": k["id"], "value": k["value"], "entity": k["entity"],
                             "period": k["period"], "what": k["what"]} for k in missed],
            "conclusions_right": len(right), "conclusions_total": len(keys["conclusions"]),
            "right_conclusions": right, "wrong_conclusions": wrong}


def score_dir(report_dir, keys):
    d = pathlib.Path(report_dir)
    md_path = d / "report.md"
    if md_path.exists():
        s = score_text(md_path.read_text(encoding="utf-8", errors="replace"), keys)
        s["report"] = True
    else:
        s = score_text("", keys)
        s["report"] = False
    s["verification"] = read_verification(d / "verification.json")
    run = d / "run.json"
    s["seconds"] = None
    s["rc"] = None
    if run.exists():
        try:
            r = json.loads(run.read_text())
            s["seconds"], s["rc"] = r.get("seconds"), r.get("rc")
        except ValueError:
            pass
    return s


# --- running kdr ------------------------------------------------------------------------------


def run_kdr(kdr, q, out_dir, extra, timeout):
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("report.md", "report.html", "verification.json", "run.json"):
        (out_dir / stale).unlink(missing_ok=True)  # a failed run must not score an old report
    cmd = [str(kdr), "research", q["question"], "--tables", str(ROOT / q["tables"]),
           "-o", str(out_dir)]
    if q.get("docs"):
        cmd += ["--docs", str(ROOT / q["docs"])]
    cmd += extra
    t0 = time.monotonic()
    with open(out_dir / "kdr.log", "w") as log:
        try:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    seconds = time.monotonic() - t0
    (out_dir / "run.json").write_text(json.dumps(
        {"command": cmd, "rc": rc, "seconds": round(seconds, 1),
         "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1) + "\n")
    return rc, seconds


# --- report -----------------------------------------------------------------------------------


def fmt_rate(v):
    return "n/a" if v is None else f"{100 * v:.0f}%"


def print_table(rows, verbose):
    head = (f"{'question':24s} {'numbers':>9s} {'recall':>7s} {'concl.':>7s} {'verified':>9s} "
            f"{'unverif.':>8s} {'seconds':>8s}")
    print(head)
    print("-" * len(head))
    for key, s in rows:
        v = s["verification"]
        note = "" if s["report"] else "  (no report)"
        secs = "-" if s["seconds"] is None else f"{s['seconds']:.0f}"
        print(f"{key:24s} {s['found']:>4d}/{s['total']:<4d} {100 * s['recall']:6.0f}% "
              f"{s['conclusions_right']:>3d}/{s['conclusions_total']:<3d} "
              f"{fmt_rate(v['rate'] if v else None):>9s} "
              f"{(str(v['unverified']) if v else 'n/a'):>8s} {secs:>8s}{note}")
        if verbose:
            for k in s["missed_keys"]:
                ent = ",".join(k["entity"][:2]) or "-"
                per = ",".join(p if isinstance(p, str) else "|".join(p[:2])
                               for p in k["period"]) or "-"
                print(f"    missed {k['id']:26s} {k['value']:>12g}  entity {ent}  period {per}")
            for c in s["wrong_conclusions"]:
                print(f"    not concluded {c['id']}: {c['text']}")


def totals(rows):
    n = len(rows)
    found = sum(s["found"] for _, s in rows)
    total = sum(s["total"] for _, s in rows)
    cr = sum(s["conclusions_right"] for _, s in rows)
    ct = sum(s["conclusions_total"] for _, s in rows)
    ver = [s["verification"] for _, s in rows if s["verification"]]
    rates = [v["rate"] for v in ver if v["rate"] is not None]
    secs = [s["seconds"] for _, s in rows if s["seconds"] is not None]
    vn = sum(v["numbers"] for v in ver)
    return {
        "questions": n,
        "reports": sum(1 for _, s in rows if s["report"]),
        "recall_mean": sum(s["recall"] for _, s in rows) / n if n else 0.0,
        "recall_pooled": found / total if total else 0.0,
        "found": found, "key_numbers": total,
        "conclusions_right": cr, "conclusions_total": ct,
        "conclusions_rate": cr / ct if ct else 0.0,
        "verified_rate_mean": sum(rates) / len(rates) if rates else None,
        "verified_rate_pooled": sum(v["verified"] for v in ver) / vn if vn else None,
        "unverified": sum(v["unverified"] for v in ver) if ver else None,
        "seconds": sum(secs) if secs else None,
    }


def print_totals(t):
    print("-" * 78)
    print(f"key-number recall: mean {100 * t['recall_mean']:.1f}%, pooled "
          f"{t['found']}/{t['key_numbers']} = {100 * t['recall_pooled']:.1f}%")
    print(f"key conclusions:   {t['conclusions_right']}/{t['conclusions_total']} = "
          f"{100 * t['conclusions_rate']:.1f}%")
    print(f"verified numbers:  mean {fmt_rate(t['verified_rate_mean'])}, pooled "
          f"{fmt_rate(t['verified_rate_pooled'])}, unverified "
          f"{'n/a' if t['unverified'] is None else t['unverified']}")
    secs = "n/a" if t["seconds"] is None else f"{t['seconds']:.0f}s"
    print(f"reports:           {t['reports']}/{t['questions']}, time {secs}")


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Run kdr research on the dev questions and score the reports.",
        epilog="Unknown options, and everything after --, are passed to kdr research.")
    ap.add_argument("--only", action="append", default=[],
                    help="question key(s) to run (repeat or comma-separate)")
    ap.add_argument("--out", default="out/dev", help="output folder (default out/dev)")
    ap.add_argument("--reuse", action="store_true",
                    help="score the reports already in OUT/KEY without running kdr")
    ap.add_argument("--kdr", default=os.environ.get("KDR_BUILD", str(ROOT / "build")) + "/kdr",
                    help="the kdr binary (default $KDR_BUILD/kdr or build/kdr)")
    ap.add_argument("--questions", default=str(DEV / "questions.json"))
    ap.add_argument("--keys", default=str(DEV / "keys.json"))
    ap.add_argument("--timeout", type=float, default=None, help="seconds per question")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="list missed key numbers and conclusions")
    if argv is None:
        argv = sys.argv[1:]
    passthrough = []
    if "--" in argv:
        i = argv.index("--")
        argv, passthrough = argv[:i], argv[i + 1:]
    args, extra = ap.parse_known_args(argv)
    extra += passthrough

    questions = json.loads(pathlib.Path(args.questions).read_text())
    keys = json.loads(pathlib.Path(args.keys).read_text())["questions"]
    only = [k for o in args.only for k in o.split(",") if k]
    unknown = [k for k in only if k not in {q["key"] for q in questions}]
    if unknown:
        ap.error(f"unknown question key(s): {', '.join(unknown)}")
    if only:
        questions = [q for q in questions if q["key"] in only]
    out = pathlib.Path(args.out)
    if not out.is_absolute():
        out = ROOT / out
    kdr = pathlib.Path(args.kdr)
    if not args.reuse and not kdr.exists():
        ap.error(f"{kdr} not found: build kdr first (scripts/setup), or use --reuse")

    rows, failed = [], []
    for q in questions:
        if q["key"] not in keys:
            ap.error(f"no keys for {q['key']}: run scripts/dev_keys.py")
        d = out / q["key"]
        if not args.reuse:
            print(f"[{q['key']}] kdr research ...", flush=True)
            rc, secs = run_kdr(kdr, q, d, extra, args.timeout)
            print(f"[{q['key']}] rc {rc}, {secs:.0f}s", flush=True)
            if rc != 0:
                failed.append(q["key"])
        rows.append((q["key"], score_dir(d, keys[q["key"]])))
    print()
    print_table(rows, args.verbose)
    t = totals(rows)
    print_totals(t)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"kdr": str(kdr), "reuse": args.reuse, "kdr_args": extra,
               "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "totals": t,
               "questions": {k: s for k, s in rows}, "failed": failed}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    print(f"summary: {out / 'summary.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
