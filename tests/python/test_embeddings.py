"""`kdr serve`'s POST /v1/embeddings through the official OpenAI Python client.

The served embedding model is all-MiniLM-L6-v2 (models/embedding.path, from scripts/setup);
its vectors are checked against sentence-transformers on PyTorch
(tests/data/embeddings/all_minilm_l6_v2.json, from scripts/gen_embedding_fixtures.py).
Random choices use KDR_SEED when set (each test prints its seed).

Run: KDR_BUILD=build .venv/bin/python -m pytest tests/python/test_embeddings.py
"""

import base64
import json
import os
import pathlib
import random
import urllib.request

import pytest

openai = pytest.importorskip("openai")
np = pytest.importorskip("numpy")

from test_server import KDR, ROOT, TINY, Served  # noqa: E402  (one server harness)

FIXTURE = json.loads((ROOT / "tests/data/embeddings/all_minilm_l6_v2.json").read_text())
RECORD = ROOT / "models" / "embedding.path"
if not RECORD.exists() or not pathlib.Path(RECORD.read_text().strip()).is_dir():
    pytest.skip("no embedding model (models/embedding.path): run scripts/setup", allow_module_level=True)
MODEL_DIR = RECORD.read_text().strip()
NAME = pathlib.Path(MODEL_DIR).name


@pytest.fixture
def rng(request):
    seed = int(os.environ.get("KDR_SEED") or random.SystemRandom().getrandbits(32))
    print(f"KDR_SEED={seed} ({request.node.name})")
    return random.Random(seed)


@pytest.fixture(scope="module")
def server():
    s = Served("-m", str(TINY), "--model-name", "tiny", "--kv-memory", "8M",
               "--embedding-model", MODEL_DIR)
    yield s
    s.stop()


def cosine(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def sample(rng, k, one_line=False):
    """k fixture cases (no empty text: the API refuses it), as (texts, vectors, ids);
    `one_line`: only texts without line breaks (for `kdr embed`, which reads a text per line)."""
    cases = [i for i, t in enumerate(FIXTURE["texts"])
             if t and not (one_line and ("\n" in t or "\r" in t))]
    picked = rng.sample(cases, k)
    return ([FIXTURE["texts"][i] for i in picked], [FIXTURE["vectors"][i] for i in picked],
            [FIXTURE["ids"][i] for i in picked])


def test_models_lists_the_embedding_model(server):
    ids = [m.id for m in server.client.models.list().data]
    assert ids == ["tiny", NAME]


def test_float_vectors_match_sentence_transformers(server, rng):
    texts, want, ids = sample(rng, 12)
    r = server.client.embeddings.create(model=NAME, input=texts, encoding_format="float")
    assert r.model == NAME
    assert [d.index for d in r.data] == list(range(len(texts)))
    for text, d, w in zip(texts, r.data, want):
        assert len(d.embedding) == 384
        assert cosine(d.embedding, w) >= 0.999, text
        assert abs(np.linalg.norm(d.embedding) - 1.0) < 1e-5
    assert r.usage.prompt_tokens == r.usage.total_tokens == sum(len(i) for i in ids)


def test_base64_is_the_same_little_endian_floats(server, rng):
    texts, _, _ = sample(rng, 5)
    as_float = server.client.embeddings.create(model=NAME, input=texts, encoding_format="float")
    as_b64 = server.client.embeddings.create(model=NAME, input=texts, encoding_format="base64")
    for f, b in zip(as_float.data, as_b64.data):
        raw = b.embedding
        decoded = np.frombuffer(base64.b64decode(raw), dtype="<f4") if isinstance(raw, str) else raw
        assert np.array_equal(np.asarray(decoded, dtype=np.float32), np.asarray(f.embedding, dtype=np.float32))
    # The client's default (it asks for base64 and decodes it itself), against the same
    # request in floats: a batch of one (another batch may differ at float rounding).
    default = server.client.embeddings.create(model=NAME, input=texts[0])
    one = server.client.embeddings.create(model=NAME, input=texts[0], encoding_format="float")
    assert np.array_equal(np.asarray(default.data[0].embedding, dtype=np.float32),
                          np.asarray(one.data[0].embedding, dtype=np.float32))


def test_token_id_inputs_give_the_texts_vectors(server, rng):
    texts, _, ids = sample(rng, 3)
    by_text = server.client.embeddings.create(model=NAME, input=texts, encoding_format="float")
    by_ids = server.client.embeddings.create(model=NAME, input=ids, encoding_format="float")
    for a, b in zip(by_text.data, by_ids.data):
        assert a.embedding == b.embedding
    one = server.client.embeddings.create(model=NAME, input=ids[0], encoding_format="float")
    alone = server.client.embeddings.create(model=NAME, input=texts[0], encoding_format="float")
    assert one.data[0].embedding == alone.data[0].embedding


@pytest.mark.parametrize(
    "kwargs, status, param",
    [
        (dict(input="x", dimensions=64), 400, "dimensions"),
        (dict(input=""), 400, "input"),
        (dict(input=[]), 400, "input"),
        (dict(input=["ok", 3]), 400, "input[1]"),
        (dict(input=["ok", ""]), 400, "input[1]"),
        (dict(input=[[101, 10**7]]), 400, "input[0][1]"),
        (dict(input=["x"] * 2049), 400, "input"),
        (dict(input="x", encoding_format="int8"), 400, "encoding_format"),
    ],
)
def test_bad_requests_name_the_field(server, kwargs, status, param):
    with pytest.raises(openai.APIStatusError) as e:
        server.client.embeddings.create(model=NAME, **kwargs)
    assert e.value.status_code == status
    assert e.value.body["param"] == param, e.value.body


def test_chat_model_name_is_not_an_embedding_model(server):
    with pytest.raises(openai.NotFoundError) as e:
        server.client.embeddings.create(model="tiny", input="x")
    assert NAME in e.value.body["message"]


def test_chat_still_answers_while_embedding(server):
    """An embedding request and a chat completion at once: both answer."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        emb = pool.submit(server.client.embeddings.create, model=NAME,
                          input=[FIXTURE["texts"][-1]] * 64, encoding_format="float")
        chat = pool.submit(server.client.chat.completions.create, model="tiny", temperature=0,
                           max_tokens=8, messages=[{"role": "user", "content": "hi"}])
        assert len(emb.result(timeout=120).data) == 64
        assert chat.result(timeout=120).choices[0].finish_reason in ("stop", "length")


def test_without_an_embedding_model_the_route_says_how_to_serve_one():
    s = Served("-m", str(TINY), "--model-name", "tiny", "--kv-memory", "8M",
               "--embedding-model", "none")
    try:
        with pytest.raises(openai.NotFoundError) as e:
            s.client.embeddings.create(model=NAME, input="x")
        assert "--embedding-model" in e.value.body["message"]
        assert [m.id for m in s.client.models.list().data] == ["tiny"]
    finally:
        s.stop()


def test_kdr_embed_cli_matches_the_server(server, rng, tmp_path):
    import subprocess

    texts, want, _ = sample(rng, 4, one_line=True)
    out = subprocess.run([str(KDR), "embed", "--model", MODEL_DIR, "--format", "jsonl", "-t", "2"],
                         input="\n".join(texts) + "\n", capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["index"] for line in lines] == list(range(len(texts)))
    served = server.client.embeddings.create(model=NAME, input=texts, encoding_format="float")
    for line, d, w in zip(lines, served.data, want):
        assert line["embedding"] == d.embedding
        assert cosine(line["embedding"], w) >= 0.999
    assert "tokens/s" in out.stderr
    bad = subprocess.run([str(KDR), "embed", "--model", str(tmp_path), "x"], capture_output=True, text=True)
    assert bad.returncode == 1 and "config.json" in bad.stderr
