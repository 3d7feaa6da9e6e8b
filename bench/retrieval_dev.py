#!/usr/bin/env python3
"""Retrieval recall on the research dev set: BM25 alone vs hybrid (BM25 + embeddings, RRF).

For every question of examples/dev/questions.json, and for its hand-written paraphrase in
examples/dev/paraphrases.json (same meaning, none of the relevant table's words but function
words), runs `kdr research search QUERY --tables examples/tables --docs examples/docs --k K`
twice in one run: with --embedding-model none (BM25 alone) and with the embedding model
(hybrid). A question's relevant tables and documents are the "tables" and "docs" of
examples/dev/keys.json (scripts/dev_keys.py: the tables its keys are computed from; the
documents judged by hand).

recall@k = relevant items among the top k / relevant items, averaged over the questions
(documents: over the questions that have a relevant document; a document is found when one of
its chunks is among the top k chunks). The searches ask for every candidate (--k 50), so the
hybrid run also shows the embedding ranking alone (its hits' vector_rank): the "vector" rows.
Standard library only.

    .venv/bin/python bench/retrieval_dev.py [--kdr build/kdr] [--embedding-model DIR]
                                            [--json docs/retrieval_dev.json]
"""
import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEV = ROOT / "examples" / "dev"
KS = (1, 3, 4)


def search(kdr, query, model, workspace, depth):
    cmd = [str(kdr), "research", "search", query, "--tables", str(ROOT / "examples" / "tables"),
           "--docs", str(ROOT / "examples" / "docs"), "--k", str(depth),
           "--workspace", str(workspace)]
    if model:  # empty: the command's default, the installed default model
        cmd += ["--embedding-model", model]
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        sys.exit(f"retrieval_dev.py: {' '.join(cmd)} failed ({run.returncode}):\n{run.stderr}")
    return json.loads(run.stdout)


def ranks_of(hits, relevant, name_of, order=None):
    """1-based rank of each relevant item: the place of its first hit, in the hits' order or
    sorted by the field `order` (hits without it left out). A document's rank is that of its
    best chunk among chunks (None: not retrieved)."""
    if order:
        hits = sorted((h for h in hits if h.get(order)), key=lambda h: h[order])
    names = [name_of(h) for h in hits]
    return {r: (names.index(r) + 1 if r in names else None) for r in relevant}


def recall(rows, field, k):
    scored = [r for r in rows if r[field]]
    if not scored:
        return None
    total = 0.0
    for r in scored:
        ranks = r[field].values()
        total += sum(1 for x in ranks if x is not None and x <= k) / len(ranks)
    return round(total / len(scored), 4)


def cpu_description():
    """The CPU as /proc/cpuinfo names it, with its core count and widest SIMD."""
    name, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("unknown CPU", platform.processor()):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{name}, {os.cpu_count()} cores, {simd}"


def summarize(rows):
    return {f"{what}_recall@{k}": recall(rows, what, k) for what in ("tables", "docs") for k in KS}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kdr", default=str(ROOT / "build" / "kdr"))
    ap.add_argument("--embedding-model", default="",
                    help="embedding model folder (default: the installed default model)")
    ap.add_argument("--json", default=str(ROOT / "docs" / "retrieval_dev.json"),
                    help="where to write the results ('' for nowhere)")
    args = ap.parse_args()

    keys = json.loads((DEV / "keys.json").read_text())["questions"]
    sets = {"questions": json.loads((DEV / "questions.json").read_text()),
            "paraphrases": json.loads((DEV / "paraphrases.json").read_text())}
    depth = 50  # every candidate: recall@k reads the first k, the vector rows need all
    hybrid_model = args.embedding_model
    modes = {"bm25": "none", "hybrid": hybrid_model}
    results = {"command": " ".join([pathlib.Path(sys.argv[0]).name] + sys.argv[1:]),
               "cpu": cpu_description(), "machine": platform.machine(),
               "k": list(KS), "sets": {}}
    with tempfile.TemporaryDirectory(prefix="kdr-retrieval-") as tmp:
        for set_name, questions in sets.items():
            per_mode = {}
            for mode, model in modes.items():
                workspace = pathlib.Path(tmp) / mode  # vectors computed once per mode
                rows, vector_rows, seconds = [], [], 0.0
                for q in questions:
                    key = keys[q["key"]]
                    start = time.perf_counter()
                    out = search(args.kdr, q["question"], model, workspace, depth)
                    seconds += time.perf_counter() - start
                    if mode == "hybrid":
                        if out["retrieval"] != "hybrid":
                            sys.exit("retrieval_dev.py: no embedding model: install one "
                                     "(scripts/setup) or pass --embedding-model DIR")
                        results["embedding_model"] = out["embedding_model"]
                    rows.append({
                        "key": q["key"],
                        "tables": ranks_of(out["tables"], key["tables"],
                                           lambda h: pathlib.Path(h["source"]).name),
                        "docs": ranks_of(out.get("documents", []), key["docs"],
                                         lambda h: pathlib.Path(h["path"]).name),
                        "top_tables": [pathlib.Path(h["source"]).name
                                       for h in out["tables"][:max(KS)]],
                    })
                    if mode == "hybrid":
                        vector_rows.append({
                            "key": q["key"],
                            "tables": ranks_of(out["tables"], key["tables"],
                                               lambda h: pathlib.Path(h["source"]).name,
                                               "vector_rank"),
                            "docs": ranks_of(out.get("documents", []), key["docs"],
                                             lambda h: pathlib.Path(h["path"]).name,
                                             "vector_rank"),
                        })
                per_mode[mode] = {"summary": summarize(rows), "seconds": round(seconds, 2),
                                  "questions": rows}
                if vector_rows:
                    per_mode["vector"] = {"summary": summarize(vector_rows),
                                          "questions": vector_rows}
            results["sets"][set_name] = per_mode

    print(f"embedding model: {results.get('embedding_model')}   CPU: {results['cpu']}")
    header = "set          mode    " + " ".join(f"tab@{k}" for k in KS) + "   " + \
        " ".join(f"doc@{k}" for k in KS) + "   seconds"
    print(header)
    for set_name, per_mode in results["sets"].items():
        for mode, r in per_mode.items():
            s = r["summary"]
            seconds = f"{r['seconds']:6.1f}" if "seconds" in r else "  (from the hybrid run)"
            print(f"{set_name:12s} {mode:7s} " +
                  " ".join(f"{s[f'tables_recall@{k}']:5.3f}" for k in KS) + "   " +
                  " ".join(f"{s[f'docs_recall@{k}']:5.3f}" for k in KS) + f"   {seconds}")
        b, h = per_mode["bm25"]["summary"], per_mode["hybrid"]["summary"]
        print(f"{set_name:12s} hybrid/bm25 tables recall@1: " +
              (f"{h['tables_recall@1'] / b['tables_recall@1']:.2f}x" if b["tables_recall@1"]
               else "n/a (bm25 is 0)"))
    for set_name, per_mode in results["sets"].items():
        print(f"\n{set_name}: rank of the relevant table, bm25 / vector / hybrid; document "
              "likewise")
        for rb, rv, rh in zip(per_mode["bm25"]["questions"], per_mode["vector"]["questions"],
                              per_mode["hybrid"]["questions"]):
            t = ", ".join(f"{n}: {rb['tables'][n]} / {rv['tables'][n]} / {rh['tables'][n]}"
                          for n in rb["tables"])
            d = ", ".join(f"{n}: {rb['docs'][n]} / {rv['docs'][n]} / {rh['docs'][n]}"
                          for n in rb["docs"])
            print(f"  {rb['key']:24s} {t}" + (f"; {d}" if d else ""))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
