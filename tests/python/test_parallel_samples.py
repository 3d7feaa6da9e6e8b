"""`n` > 1 parallel samples through `kdr serve` and the official OpenAI client.

Every request with n samples is prefilled once and forked: its choices come back with indices
0..n-1, streamed chunks carry each choice's index and finish_reason, usage counts the prompt
once and the completions of every choice. Sample i is seeded with seed + i, so each choice
equals the same request with n = 1 and that seed.

Run: KDR_BUILD=build .venv/bin/python -m pytest tests/python/test_parallel_samples.py
"""

import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from test_server import ROOT, TINY, Served, rng  # noqa: E402,F401  (same folder; rng: a fixture)

openai = pytest.importorskip("openai")
jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def tiny():
    s = Served("-m", str(TINY), "--model-name", "tiny", "--kv-memory", "8M")
    yield s
    s.stop()


def random_prompt(rng, n):
    """Token ids below the tiny vocabulary's 384: a prompt no earlier test has cached."""
    return [rng.randrange(3, 380) for _ in range(n)]


def streamed(chunks):
    """Per choice index: text, finish_reasons seen; and the usage chunk's usage."""
    texts, finishes, usage, roles = {}, {}, None, {}
    for c in chunks:
        if c.usage is not None:
            usage = c.usage
        for ch in c.choices:
            if hasattr(ch, "delta"):
                if ch.delta.role:
                    roles[ch.index] = ch.delta.role
                texts[ch.index] = texts.get(ch.index, "") + (ch.delta.content or "")
            else:
                texts[ch.index] = texts.get(ch.index, "") + ch.text
            if ch.finish_reason is not None:
                finishes.setdefault(ch.index, []).append(ch.finish_reason)
    return texts, finishes, usage, roles


def test_completions_n3_each_choice_is_the_request_alone_with_its_seed(tiny, rng):
    prompt = random_prompt(rng, 37)
    seed = rng.randrange(1 << 31)
    kw = dict(model="tiny", prompt=prompt, max_tokens=12, temperature=1.0,
              extra_body={"ignore_eos": True})
    before = tiny.metrics()
    r = tiny.client.completions.create(n=3, seed=seed, logprobs=1, **kw)
    after = tiny.metrics()
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert r.usage.prompt_tokens == 37
    assert r.usage.completion_tokens == 3 * 12
    assert r.usage.total_tokens == 37 + 36
    # The prompt was computed once and two samples forked off it.
    assert after["kdr_prompt_tokens_total"] - before["kdr_prompt_tokens_total"] == 37
    assert after["kdr_samples_forked_total"] - before["kdr_samples_forked_total"] == 2
    assert after["kdr_generation_tokens_total"] - before["kdr_generation_tokens_total"] == 36
    for c in r.choices:
        assert c.finish_reason == "length"
        assert len(c.logprobs.tokens) == 12 and len(c.logprobs.token_logprobs) == 12
        assert all(lp <= 0 for lp in c.logprobs.token_logprobs)
        assert c.logprobs.text_offset[0] == 0
        one = tiny.client.completions.create(n=1, seed=seed + c.index, logprobs=1, **kw)
        assert one.choices[0].text == c.text, c.index
        assert one.choices[0].logprobs.token_logprobs == pytest.approx(
            c.logprobs.token_logprobs, abs=0), c.index
    # At temperature 1 on a model this small, three samples of 12 tokens differ.
    assert len({c.text for c in r.choices}) == 3


def test_completions_n3_stream_matches_non_stream(tiny, rng):
    prompt = random_prompt(rng, 21)
    kw = dict(model="tiny", prompt=prompt, max_tokens=10, temperature=1.0, n=3,
              seed=rng.randrange(1 << 31), extra_body={"ignore_eos": True})
    whole = tiny.client.completions.create(**kw)
    chunks = list(tiny.client.completions.create(
        stream=True, stream_options={"include_usage": True}, **kw))
    texts, finishes, usage, _ = streamed(chunks)
    assert texts == {c.index: c.text for c in whole.choices}
    assert finishes == {i: ["length"] for i in range(3)}  # one finish_reason per choice
    assert chunks[-1].choices == [] and usage is not None
    assert usage.prompt_tokens == whole.usage.prompt_tokens == 21
    assert usage.completion_tokens == whole.usage.completion_tokens == 30


def test_chat_n3_stream_and_not(tiny, rng):
    words = " ".join(rng.choice(["red", "cat", "sky", "run", "deep"]) for _ in range(6))
    kw = dict(model="tiny", messages=[{"role": "user", "content": words}], max_tokens=16,
              temperature=1.0, n=3, seed=rng.randrange(1 << 31),
              extra_body={"ignore_eos": True})
    whole = tiny.client.chat.completions.create(**kw)
    assert [c.index for c in whole.choices] == [0, 1, 2]
    assert all(c.message.role == "assistant" for c in whole.choices)
    assert all(c.finish_reason == "length" for c in whole.choices)
    alone = tiny.client.chat.completions.create(**{**kw, "n": 1})
    assert whole.usage.prompt_tokens == alone.usage.prompt_tokens  # counted once
    assert whole.usage.completion_tokens == 3 * 16
    assert whole.choices[0].message.content == alone.choices[0].message.content
    assert len({c.message.content for c in whole.choices}) == 3
    chunks = list(tiny.client.chat.completions.create(
        stream=True, stream_options={"include_usage": True}, **kw))
    texts, finishes, usage, roles = streamed(chunks)
    assert roles == {0: "assistant", 1: "assistant", 2: "assistant"}
    assert texts == {c.index: c.message.content for c in whole.choices}
    assert finishes == {i: ["length"] for i in range(3)}
    assert usage.completion_tokens == 48
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_chat_n3_logprobs_per_choice(tiny, rng):
    r = tiny.client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=5, n=3,
        temperature=1.0, seed=rng.randrange(1 << 31), logprobs=True, top_logprobs=2,
        extra_body={"ignore_eos": True})
    for c in r.choices:
        assert len(c.logprobs.content) == 5
        for t in c.logprobs.content:
            assert t.logprob <= 0 and len(t.top_logprobs) == 2
            assert t.top_logprobs[0].logprob >= t.logprob - 1e-6


def test_json_schema_n3_every_choice_validates(tiny, rng):
    schema = {
        "type": "object",
        "properties": {
            "color": {"type": "string", "enum": ["red", "green", "blue"]},
            "count": {"type": "integer", "minimum": 0, "maximum": 9},
            "ok": {"type": "boolean"},
        },
        "required": ["color", "count", "ok"],
        "additionalProperties": False,
    }
    r = tiny.client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "a thing as JSON"}],
        max_tokens=120, n=3, seed=rng.randrange(1 << 31),
        response_format={"type": "json_schema",
                         "json_schema": {"name": "thing", "schema": schema}})
    assert len(r.choices) == 3
    for c in r.choices:
        assert c.finish_reason == "stop", c.message.content
        jsonschema.validate(json.loads(c.message.content), schema)


@pytest.mark.parametrize("n", [0, 129, -1])
@pytest.mark.parametrize("stream", [False, True])
def test_n_outside_1_to_128_is_a_400_naming_n(tiny, n, stream):
    with pytest.raises(openai.BadRequestError) as e:
        tiny.client.completions.create(model="tiny", prompt="a", max_tokens=2, n=n,
                                       stream=stream)
    assert e.value.body["param"] == "n"
    assert "'n' must be in [1, 128]" in e.value.body["message"]


def test_greedy_n4_gives_four_equal_choices(tiny, rng):
    prompt = random_prompt(rng, 19)
    kw = dict(model="tiny", prompt=prompt, max_tokens=8, temperature=0,
              extra_body={"ignore_eos": True})
    one = tiny.client.completions.create(**kw).choices[0].text
    r = tiny.client.completions.create(n=4, **kw)
    assert [c.text for c in r.choices] == [one] * 4


def test_closed_n3_stream_cancels_every_sample_and_frees_its_kv():
    # The default model is slow enough here that the samples are surely still running when
    # the client hangs up; the tiny model would finish first.
    try:
        default = (ROOT / "models" / "default.path").read_text().strip()
    except OSError:
        pytest.skip("no default model (scripts/setup installs it)")
    s = Served("-m", default, "--kv-memory", "64M")
    try:
        before = s.metrics()
        stream = s.client.completions.create(
            model=s.client.models.list().data[0].id,
            prompt="Tell me a long story about a lighthouse keeper, a storm at sea and a ship "
            "that lost its way home in the dark.",
            max_tokens=400, n=3, stream=True, extra_body={"ignore_eos": True})
        chunks = iter(stream)
        first = [next(chunks) for _ in range(4)]
        assert all(c.choices[0].index in (0, 1, 2) for c in first)
        m = s.metrics()
        assert m["kdr_requests_running"] == 3  # the three samples
        assert m["kdr_kv_blocks_shared"] >= 1  # the prompt's full block, held once
        stream.close()
        m = s.wait_metrics(
            lambda m: m["kdr_requests_running"] == 0 and m["kdr_kv_blocks_used"] == 0)
        assert m["kdr_requests_running"] == 0
        assert m["kdr_kv_blocks_used"] == 0
        assert m["kdr_requests_cancelled_total"] == before["kdr_requests_cancelled_total"] + 1
        assert m["kdr_generation_tokens_total"] < 3 * 400
    finally:
        s.stop()
