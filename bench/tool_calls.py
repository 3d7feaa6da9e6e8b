#!/usr/bin/env python3
"""Tool calling on `kdr serve` with the default model: every call must parse and match its
tool's schema (the grammar's promise), and how often the model's choice was sensible.

36 requests over 6 tool sets (enums, nested objects, arrays, numbers with bounds, required and
optional arguments) with tool_choice auto / required / named / none and parallel calls on and
off, sent one after the other through the official OpenAI client at temperature 0. Each has
the tool a sensible answer calls (or none: then content is the sensible answer). Counted:
  valid     responses whose tool_calls all parse as JSON and validate (jsonschema, an
            independent validator) against their tool's parameters: must be 100%
  cut       calls cut by max_tokens (finish_reason length, content that starts as a call):
            neither calls nor answers, reported apart (and not sensible)
  sensible  the tool called is the expected one (auto / required), content where no tool
            fits (auto), content for "none", the named tool for a named choice
Writes docs/tool_calls.json (with every request's answer). Not run in CI.
    .venv/bin/python bench/tool_calls.py [--kdr build/kdr] [--out docs/tool_calls.json]
"""
import argparse
import json
import os
import pathlib
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_vs_llamacpp import ServerProcess, free_port  # noqa: E402

import jsonschema  # noqa: E402
import openai  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


def fn(name, description, properties, required=()):
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": list(required)}}}


WEATHER = fn("get_weather", "Get the current weather for a city", {
    "city": {"type": "string", "description": "City name", "maxLength": 60},
    "unit": {"enum": ["celsius", "fahrenheit"], "description": "Temperature unit"}}, ["city"])
TIME = fn("get_time", "Get the current local time in a city", {
    "city": {"type": "string", "maxLength": 60}}, ["city"])
CALC = fn("calculate", "Evaluate an arithmetic operation on two numbers", {
    "a": {"type": "number", "minimum": -1e9, "maximum": 1e9},
    "b": {"type": "number", "minimum": -1e9, "maximum": 1e9},
    "op": {"enum": ["add", "subtract", "multiply", "divide"]}}, ["a", "b", "op"])
CONVERT = fn("convert_units", "Convert a length between units", {
    "value": {"type": "number", "exclusiveMinimum": 0, "maximum": 100000},
    "from_unit": {"enum": ["m", "km", "mi", "ft"]},
    "to_unit": {"enum": ["m", "km", "mi", "ft"]}}, ["value", "from_unit", "to_unit"])
EVENT = fn("create_event", "Create a calendar event", {
    "title": {"type": "string", "maxLength": 80},
    "date": {"type": "object", "properties": {
        "year": {"type": "integer", "minimum": 2024, "maximum": 2030},
        "month": {"type": "integer", "minimum": 1, "maximum": 12},
        "day": {"type": "integer", "minimum": 1, "maximum": 31}},
        "required": ["year", "month", "day"]},
    "attendees": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 5},
    "all_day": {"type": "boolean"}}, ["title", "date"])
EMAIL = fn("send_email", "Send an email", {
    "to": {"type": "string", "maxLength": 80},
    "subject": {"type": "string", "maxLength": 80},
    "body": {"type": "string", "maxLength": 300},
    "priority": {"enum": ["low", "normal", "high"]}}, ["to", "subject", "body"])
SEARCH = fn("search_web", "Search the web", {
    "query": {"type": "string", "maxLength": 100},
    "limit": {"type": "integer", "minimum": 1, "maximum": 20}}, ["query"])
STOCK = fn("get_stock_price", "Get the latest price of a stock", {
    "ticker": {"type": "string", "minLength": 1, "maxLength": 5}}, ["ticker"])
TIMER = fn("set_timer", "Set a countdown timer", {
    "minutes": {"type": "integer", "minimum": 1, "maximum": 600},
    "label": {"type": "string", "maxLength": 40}}, ["minutes"])

SETS = {
    "travel": [WEATHER, TIME, CONVERT],
    "math": [CALC, CONVERT],
    "office": [EVENT, EMAIL, TIMER],
    "research": [SEARCH, STOCK],
    "all": [WEATHER, TIME, CALC, CONVERT, EVENT, EMAIL, SEARCH, STOCK, TIMER],
    "one": [WEATHER],
}

# (tool set, user message, tool_choice, parallel, expected tool or None for content)
CASES = [
    ("travel", "What's the weather like in Paris right now?", "auto", False, "get_weather"),
    ("travel", "What time is it in Tokyo?", "auto", False, "get_time"),
    ("travel", "How many feet are in 3 km?", "auto", False, "convert_units"),
    ("travel", "Tell me a short joke about cats.", "auto", False, None),
    ("travel", "Weather in Berlin in fahrenheit please.", "required", False, "get_weather"),
    ("travel", "What is the time in New York?", "required", True, "get_time"),
    ("math", "What is 1234 times 5678?", "auto", False, "calculate"),
    ("math", "Subtract 17.5 from 100.", "required", False, "calculate"),
    ("math", "Convert 10 miles to kilometers.", "auto", False, "convert_units"),
    ("math", "Who wrote Hamlet?", "auto", False, None),
    ("math", "Divide 81 by 9.", "calculate", False, "calculate"),
    ("math", "Add 2 and 2.", "none", False, None),
    ("office", "Schedule a team meeting on 2025-03-14 with Ana and Bo.", "auto", False,
     "create_event"),
    ("office", "Email bob@example.com that the report is late, high priority.", "auto", False,
     "send_email"),
    ("office", "Set a timer for 25 minutes for my pomodoro.", "auto", False, "set_timer"),
    ("office", "Remind me in 10 minutes to call mom.", "required", False, "set_timer"),
    ("office", "Create an all-day event 'Offsite' on 2026-06-01.", "create_event", False,
     "create_event"),
    ("office", "Say hello.", "auto", False, None),
    ("research", "Search the web for the latest news on fusion energy.", "auto", False,
     "search_web"),
    ("research", "What's Apple's stock price? Ticker AAPL.", "auto", False, "get_stock_price"),
    ("research", "Find 5 articles about rust programming.", "required", False, "search_web"),
    ("research", "Price of MSFT and GOOG stock?", "required", True, "get_stock_price"),
    ("research", "What is the capital of Italy?", "none", False, None),
    ("research", "Look up TSLA.", "get_stock_price", False, "get_stock_price"),
    ("all", "What's the weather in Madrid?", "auto", False, "get_weather"),
    ("all", "Multiply 12 by 12.", "auto", False, "calculate"),
    ("all", "Send an email to ann@example.com saying thanks for lunch.", "auto", False,
     "send_email"),
    ("all", "Set a 5 minute timer.", "required", False, "set_timer"),
    ("all", "Search for vegan pasta recipes.", "required", True, "search_web"),
    ("all", "Weather in Rome and Oslo?", "required", True, "get_weather"),
    ("all", "Thanks, that's all!", "auto", False, None),
    ("all", "What time is it in Sydney?", "get_time", False, "get_time"),
    ("one", "Is it raining in London?", "auto", False, "get_weather"),
    ("one", "Weather for Lisbon in celsius.", "required", False, "get_weather"),
    ("one", "What's 2+2?", "auto", False, None),
    ("one", "How warm is it in Cairo?", "auto", True, "get_weather"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kdr", default=str(ROOT / "build" / "kdr"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "docs" / "tool_calls.json"))
    args = ap.parse_args()
    model = (ROOT / "models" / "default.path").read_text().strip()
    port = free_port()
    server = ServerProcess("kdr", [args.kdr, "serve", "-m", model, "--port", str(port), "-t",
                                   str(args.threads), "--model-name", "default"], port)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="-", max_retries=0)
    rows = []
    started = time.monotonic()
    try:
        for tool_set, user, choice, parallel, expected in CASES:
            tools = SETS[tool_set]
            tool_choice = choice
            if choice not in ("auto", "required", "none"):
                tool_choice = {"type": "function", "function": {"name": choice}}
            t0 = time.monotonic()
            r = client.chat.completions.create(
                model="default", messages=[{"role": "user", "content": user}], tools=tools,
                tool_choice=tool_choice, parallel_tool_calls=parallel, temperature=0,
                max_tokens=args.max_tokens)
            c = r.choices[0]
            calls, problems = [], []
            schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
            for tc in c.message.tool_calls or []:
                try:
                    a = json.loads(tc.function.arguments)
                    jsonschema.validate(a, schemas[tc.function.name])
                except Exception as e:  # noqa: BLE001 - any failure counts as invalid
                    problems.append(f"{tc.function.name}: {e}"[:200])
                calls.append({"name": tc.function.name, "arguments": tc.function.arguments})
            names = [x["name"] for x in calls]
            content = c.message.content or ""
            # A call max_tokens cut short comes back as content: it is neither a call nor an
            # answer.
            cut_call = (c.finish_reason == "length" and choice != "none" and
                        content[:1] in ("{", "["))
            if cut_call:
                sensible = False
            elif expected is None:
                sensible = not calls and bool((c.message.content or "").strip())
            else:
                sensible = bool(calls) and all(n == expected for n in names)
            rows.append({"tools": tool_set, "user": user, "tool_choice": choice,
                         "parallel_tool_calls": parallel, "expected": expected,
                         "finish_reason": c.finish_reason, "calls": calls,
                         "content": c.message.content, "valid": not problems,
                         "problems": problems, "sensible": sensible, "cut_call": cut_call,
                         "seconds": round(time.monotonic() - t0, 2)})
            print(f"{choice:>16} {'par' if parallel else '   '} {c.finish_reason:10} "
                  f"{'ok ' if not problems else 'BAD'} {'sensible' if sensible else '-       '} "
                  f"{names or repr((c.message.content or '')[:50])}", flush=True)
    finally:
        server.stop()
    with_calls = [r for r in rows if r["calls"]]
    summary = {
        "requests": len(rows),
        "responses_with_calls": len(with_calls),
        "calls": sum(len(r["calls"]) for r in rows),
        "valid_call_responses": sum(r["valid"] for r in with_calls),
        "valid_rate": sum(r["valid"] for r in with_calls) / max(1, len(with_calls)),
        "cut_by_max_tokens": sum(r["finish_reason"] == "length" for r in rows),
        "calls_cut_by_max_tokens": sum(r["cut_call"] for r in rows),
        "sensible": sum(r["sensible"] for r in rows),
        "sensible_rate": sum(r["sensible"] for r in rows) / len(rows),
        "sensible_by_choice": {},
        "seconds": round(time.monotonic() - started, 1),
    }
    for kind in ("auto", "required", "none", "named"):
        sel = [r for r in rows if (r["tool_choice"] == kind) or
               (kind == "named" and r["tool_choice"] not in ("auto", "required", "none"))]
        summary["sensible_by_choice"][kind] = f"{sum(r['sensible'] for r in sel)}/{len(sel)}"
    out = {"command": "bench/tool_calls.py", "model": os.path.basename(model),
           "cpu": "AMD EPYC (Zen 3), 2 cores, AVX2", "machine": platform.machine(),
           "summary": summary, "requests": rows}
    pathlib_out = args.out
    with open(pathlib_out, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
