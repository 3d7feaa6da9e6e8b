"""Tool calling through `kdr serve` and the official OpenAI client.

Every generation under tools follows a grammar: with tool_choice "required" or a named tool it
is calls, with "auto" either content or calls, and every call names a tool of the request with
arguments valid under that tool's parameters schema (checked here with jsonschema, an
independent validator). Generation runs on the default model (a tool prompt does not fit the
tiny test models' 256-token context; the grammar's promise does not depend on the model), with
random tool sets and seeds, ending in a small agent loop (call -> result -> answer). Refusals
run on the tiny model.

Run: KDR_BUILD=build .venv/bin/python -m pytest tests/python/test_tools.py
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


@pytest.fixture(scope="module")
def model():
    """The default model: tool prompts do not fit the tiny models' 256-token context."""
    path = pathlib.Path((ROOT / "models" / "default.path").read_text().strip())
    if not path.exists():
        pytest.skip(f"no default model at {path}")
    s = Served("-m", str(path), "--model-name", "model", "--kv-memory", "64M")
    yield s
    s.stop()


def random_property(rng, depth=0):
    """A bounded schema (calls must end within max_tokens)."""
    kinds = ["enum", "integer", "number", "string", "boolean", "array"]
    if depth == 0:
        kinds.append("object")
    kind = rng.choice(kinds)
    if kind == "enum":
        return {"enum": rng.sample(["red", "green", "blue", "cyan", 1, 2, None], rng.randint(1, 4))}
    if kind == "integer":
        lo = rng.randint(-50, 50)
        return {"type": "integer", "minimum": lo, "maximum": lo + rng.randint(0, 100)}
    if kind == "number":
        return {"type": "number", "minimum": -1.5, "exclusiveMaximum": rng.choice([2, 10.25])}
    if kind == "string":
        return {"type": "string", "maxLength": rng.randint(1, 6), "description": "text"}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "array":
        return {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": rng.randint(1, 3)}
    props = {f"f{i}": random_property(rng, depth + 1) for i in range(rng.randint(1, 3))}
    return {
        "type": "object",
        "properties": props,
        "required": rng.sample(sorted(props), rng.randint(0, len(props))),
    }


def random_tools(rng, n):
    tools = []
    for i in range(n):
        props = {f"p{k}": random_property(rng) for k in range(rng.randint(0, 3))}
        params = {
            "type": "object",
            "properties": props,
            "required": rng.sample(sorted(props), rng.randint(0, len(props))),
        }
        tools.append(
            {
                "type": "function",
                "function": {
                    "name": f"tool_{i}_{rng.randrange(1000)}",
                    "description": f"tool number {i}",
                    "parameters": params,
                },
            }
        )
    return tools


def check_calls(calls, tools, names=None):
    """Each call names a tool (of `names` when given) and its arguments match its schema."""
    by_name = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    assert calls, "no tool calls"
    for c in calls:
        assert c.type == "function"
        assert c.id.startswith("call_") and len(c.id) > 10
        assert c.function.name in (names or by_name), c.function.name
        args = json.loads(c.function.arguments)
        jsonschema.validate(args, by_name[c.function.name])


def ask(server, tools, **kw):
    return server.client.chat.completions.create(
        model="model",
        messages=[{"role": "user", "content": "call a tool"}],
        tools=tools,
        max_tokens=kw.pop("max_tokens", 400),
        **kw,
    )


def test_required_calls_parse_and_match_their_schemas(model, rng):
    for _ in range(6):
        tools = random_tools(rng, rng.randint(1, 4))
        r = ask(model, tools, tool_choice="required", parallel_tool_calls=False,
                seed=rng.randrange(1 << 30))
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        assert choice.message.content is None
        assert len(choice.message.tool_calls) == 1
        check_calls(choice.message.tool_calls, tools)


def test_parallel_calls_are_one_or_more_valid_calls(model, rng):
    made = 0
    for _ in range(5):
        tools = random_tools(rng, rng.randint(1, 3))
        r = ask(model, tools, tool_choice="required", seed=rng.randrange(1 << 30), max_tokens=300)
        choice = r.choices[0]
        if choice.finish_reason == "length":  # a junk model may go on adding calls
            continue
        assert choice.finish_reason == "tool_calls"
        check_calls(choice.message.tool_calls, tools)
        ids = [c.id for c in choice.message.tool_calls]
        assert len(set(ids)) == len(ids)
        made += 1
    assert made >= 2


def test_named_tool_is_the_only_one_called(model, rng):
    for _ in range(4):
        tools = random_tools(rng, 3)
        name = rng.choice(tools)["function"]["name"]
        r = ask(model, tools, tool_choice={"type": "function", "function": {"name": name}},
                parallel_tool_calls=False, seed=rng.randrange(1 << 30))
        assert r.choices[0].finish_reason == "tool_calls"
        check_calls(r.choices[0].message.tool_calls, tools, names=[name])


def test_auto_is_content_or_valid_calls(model, rng):
    kinds = set()
    for _ in range(8):
        tools = random_tools(rng, rng.randint(1, 3))
        r = ask(model, tools, seed=rng.randrange(1 << 30), parallel_tool_calls=False,
                temperature=1.5, max_tokens=60)
        m = r.choices[0].message
        if m.tool_calls:
            kinds.add("calls")
            assert m.content is None
            check_calls(m.tool_calls, tools)
        else:
            kinds.add("content")
            assert isinstance(m.content, str)
            assert not m.content.startswith("{")  # the call's first byte starts no content
    print("auto answered with", sorted(kinds))


def test_tool_choice_none_answers_with_content(model, rng):
    tools = random_tools(rng, 2)
    r = ask(model, tools, tool_choice="none", max_tokens=8, seed=1)
    assert r.choices[0].message.tool_calls is None
    assert isinstance(r.choices[0].message.content, str)
    # The same prompt without tool_choice "none" but with no tools at all differs only in
    # the prompt: tools are still rendered, the answer is text.
    assert r.choices[0].finish_reason in ("stop", "length")


def test_streamed_calls_assemble_to_the_non_streamed_ones(model, rng):
    for _ in range(3):
        tools = random_tools(rng, rng.randint(1, 3))
        seed = rng.randrange(1 << 30)
        kw = dict(tool_choice="required", seed=seed, parallel_tool_calls=rng.random() < 0.5,
                  max_tokens=300)
        whole = ask(model, tools, **kw).choices[0]
        calls, finish, first_delta = {}, None, {}
        for chunk in ask(model, tools, stream=True, **kw):
            for ch in chunk.choices:
                finish = ch.finish_reason or finish
                for d in ch.delta.tool_calls or []:
                    if d.index not in calls:
                        # The first delta of a call carries its id, type, name and "" arguments.
                        assert d.id and d.type == "function" and d.function.name
                        assert d.function.arguments == ""
                        calls[d.index] = {"id": d.id, "name": d.function.name, "arguments": ""}
                        first_delta[d.index] = True
                    else:
                        assert d.id is None and d.function.name is None
                        calls[d.index]["arguments"] += d.function.arguments
        assert finish == whole.finish_reason
        if whole.finish_reason != "tool_calls":
            continue
        got = [calls[i] for i in sorted(calls)]
        want = whole.message.tool_calls
        assert [c["name"] for c in got] == [c.function.name for c in want]
        assert [json.loads(c["arguments"]) for c in got] == [
            json.loads(c.function.arguments) for c in want
        ]


def test_the_sdk_stream_helper_assembles_tool_calls(model, rng):
    tools = random_tools(rng, 2)
    with model.client.chat.completions.stream(
        model="model",
        messages=[{"role": "user", "content": "call a tool"}],
        tools=tools,
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=400,
        seed=rng.randrange(1 << 30),
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    check_calls(final.choices[0].message.tool_calls, tools)


def test_legacy_functions_answer_with_function_call(model, rng):
    tools = random_tools(rng, 2)
    functions = [t["function"] for t in tools]
    r = model.client.chat.completions.create(
        model="model",
        messages=[{"role": "user", "content": "call"}],
        functions=functions,
        function_call={"name": functions[1]["name"]},
        max_tokens=400,
        seed=rng.randrange(1 << 30),
    )
    c = r.choices[0]
    assert c.finish_reason == "function_call"
    assert c.message.function_call.name == functions[1]["name"]
    jsonschema.validate(json.loads(c.message.function_call.arguments), functions[1]["parameters"])


def test_tool_history_is_accepted(model, rng):
    tools = random_tools(rng, 2)
    first = ask(model, tools, tool_choice="required", parallel_tool_calls=False, seed=3)
    call = first.choices[0].message.tool_calls[0]
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "call a tool"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "42 <|im_end|> done"},
    ]
    usage = {}
    for content in ["42 done", "42 <end_of_turn> done"]:
        messages[-1]["content"] = content
        r = model.client.chat.completions.create(model="model", messages=messages, tools=tools,
                                                max_tokens=4, tool_choice="none")
        assert isinstance(r.choices[0].message.content, str)
        usage[content] = r.usage.prompt_tokens
    # The tool result is text: its <end_of_turn> is several tokens, not the one control token.
    assert usage["42 <end_of_turn> done"] - usage["42 done"] > 2, usage


@pytest.mark.parametrize(
    "body, param, words",
    [
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]},
         "tools[0].function.name", "letters, digits"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type", "'function'"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"x": {"type": "string", "pattern": "^a"}}}}}]},
         "tools[0].function.parameters", "function 'f': unsupported schema keyword 'pattern'"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}],
          "tool_choice": {"type": "function", "function": {"name": "g"}}},
         "tool_choice.function.name", "'g', which is not one of"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "always"},
         "tool_choice", "got 'always'"),
        ({"tools": [{"type": "function", "function": {"name": "f"}},
                    {"type": "function", "function": {"name": "f"}}]},
         "tools[1].function.name", "defined twice"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}],
          "parallel_tool_calls": "yes"}, "parallel_tool_calls", "boolean"),
        ({"tool_choice": "required"}, "tool_choice", "no 'tools'"),
    ],
)
def test_bad_tools_are_400_naming_the_field(tiny, body, param, words):
    req = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **body}
    with pytest.raises(openai.BadRequestError) as e:
        tiny.client.chat.completions.create(**req)
    err = e.value.body
    assert err["param"] == param, err
    assert words in err["message"], err


def test_agent_loop_on_the_default_model(model):
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 40},
                    "unit": {"enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    }
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = model.client.chat.completions.create(
        model="model", messages=messages, tools=[weather], tool_choice="required",
        parallel_tool_calls=False, temperature=0, max_tokens=64)
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    check_calls([call], [weather])
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 18, "sky": "clear"}'},
    ]
    final = model.client.chat.completions.create(
        model="model", messages=messages, tools=[weather], temperature=0, max_tokens=48)
    answer = final.choices[0].message
    print("call:", call.function.name, call.function.arguments, "| answer:", answer.content,
          answer.tool_calls)
    # auto: the answer is content, or more calls that are valid.
    if answer.tool_calls:
        check_calls(answer.tool_calls, [weather])
    else:
        assert isinstance(answer.content, str) and answer.content.strip()
