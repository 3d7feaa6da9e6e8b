"""`kdr research search`: the research agent's retrieval as a user runs it, as JSON.

BM25 alone (--embedding-model none) and hybrid (the installed embedding model): the hybrid
hits' scores are the RRF of the ranks they report, and their BM25 ranks are the places the
same tables take in a BM25-alone search. Bad options are errors that name them.

The binary is $KDR_BUILD/kdr (default build/kdr).
Run: KDR_BUILD=build .venv/bin/python -m pytest tests/python/test_research_search.py
"""
import json
import pathlib
import subprocess

import pytest

from test_server import KDR, ROOT, rng  # noqa: E402,F401  (same folder; rng: a fixture)

EXAMPLES = ROOT / "examples"
DEV = EXAMPLES / "dev"
HAS_EMBEDDER = (ROOT / "models" / "embedding.path").is_file()


def search(query, *args, check=True):
    cmd = [str(KDR), "research", "search", query, "--tables", str(EXAMPLES / "tables"),
           "--docs", str(EXAMPLES / "docs"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
        return json.loads(proc.stdout)
    return proc


def test_bm25_alone_finds_the_named_table_and_note():
    out = search("Iowa net electricity generation by source", "--embedding-model", "none",
                 "--k", "3")
    assert out["retrieval"] == "bm25" and out["embedding_model"] is None
    assert pathlib.Path(out["tables"][0]["source"]).name == "iowa-electricity.csv"
    assert out["tables"][0]["table"] == "iowa_electricity"
    assert [h["bm25_rank"] for h in out["tables"]] == [1, 2, 3]
    scores = [h["score"] for h in out["tables"]]
    assert scores == sorted(scores, reverse=True)
    assert pathlib.Path(out["documents"][0]["path"]).name == "iowa-electricity.md"
    assert all("vector_rank" not in h for h in out["tables"] + out["documents"])


@pytest.mark.skipif(not HAS_EMBEDDER, reason="no embedding model installed (scripts/setup)")
def test_hybrid_scores_are_the_rrf_of_their_ranks(rng, tmp_path):
    questions = json.loads((DEV / "questions.json").read_text()) + \
        json.loads((DEV / "paraphrases.json").read_text())
    for q in rng.sample(questions, 3):
        k = rng.randint(1, 12)
        hybrid = search(q["question"], "--k", str(k), "--workspace", str(tmp_path / "h"))
        bm25 = search(q["question"], "--k", "50", "--embedding-model", "none",
                      "--workspace", str(tmp_path / "b"))
        assert hybrid["retrieval"] == "hybrid" and hybrid["embedding_model"]
        for kind in ("tables", "documents"):
            hits = hybrid[kind]
            assert 0 < len(hits) <= k
            key = "table" if kind == "tables" else "chunk"
            for h in hits:
                expected = sum(1.0 / (60 + r) for r in (h["bm25_rank"], h["vector_rank"]) if r)
                assert h["score"] == pytest.approx(expected, rel=1e-12), (q["key"], h)
                if h["bm25_rank"]:
                    assert bm25[kind][h["bm25_rank"] - 1][key] == h[key], (q["key"], kind, h)
            scores = [h["score"] for h in hits]
            assert scores == sorted(scores, reverse=True)
            vector_ranks = [h["vector_rank"] for h in hits if h["vector_rank"]]
            assert len(set(vector_ranks)) == len(vector_ranks)


def test_a_missing_embedding_model_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "no-such-model"
    proc = search("gas prices", "--embedding-model", str(missing), check=False)
    assert proc.returncode == 1, proc.stderr
    assert str(missing) in proc.stderr
    assert proc.stdout == ""


def test_k_out_of_range_is_refused():
    proc = search("gas prices", "--embedding-model", "none", "--k", "0", check=False)
    assert proc.returncode != 0
    assert "--k" in proc.stderr
