#!/usr/bin/env python3
"""Regenerates the sentence-embedding fixtures that tests/model/embedder_test.cc and
tokenizer_wordpiece_test.cc compare kdr against:

  tests/data/embeddings/all_minilm_l6_v2.json   texts, the ids sentence-transformers feeds
                                                the model, and its normalised vectors
  tests/data/embeddings/wordpiece_tokens.json   texts and the ids Hugging Face `tokenizers`
                                                gives (no truncation)

Run once, with sentence-transformers on PyTorch (not a project requirement; CI never runs
this), e.g.:
  python3 -m venv /tmp/st-venv && /tmp/st-venv/bin/pip install torch sentence-transformers
  /tmp/st-venv/bin/python scripts/gen_embedding_fixtures.py [MODEL_DIR]
MODEL_DIR defaults to the folder recorded in models/embedding.path (scripts/setup).
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "embeddings"

LONG_WORD = "pneumonoultramicroscopicsilicovolcanoconiosis" * 3  # > 100 characters: [UNK]
LONG_TEXT = " ".join(
    f"Sentence {i} of a long report on river discharge, sediment and rainfall." for i in range(40)
)  # ~600 tokens: cut to max_seq_length

# Varied on purpose: accents, CJK, Korean, punctuation, digits, emoji, control and odd
# whitespace, special-token text, words that split into many pieces, long inputs.
SENTENCES = [
    "The cat sits on the mat.",
    "A man is playing a guitar on stage.",
    "Quarterly revenue rose 12.5% to $4.2 billion, beating estimates.",
    "Café au lait, naïve résumé, Ångström and façade.",
    "ÉLÈVE, Œuvre, Straße, İstanbul, ΣΟΦΙΑ.",
    "我爱北京天安门。",
    "東京タワーは1958年に完成しました。",
    "한국어 문장도 임베딩할 수 있습니다.",
    "Mixed: English 和 中文 in one line!",
    "Punctuation!!! (parentheses) [brackets] {braces} <angles> \"quotes\" 'single'",
    "em—dash, en–dash, ellipsis… and «guillemets».",
    "C++20, std::vector<int>, a->b, x == y && z != w;",
    "",
    " ",
    "\ttabs\tand\nnewlines\r\nand\u00a0no-break\u3000spaces",
    "zero\u200bwidth\u200dand soft\u00adhyphen and control\x07char",
    "Emoji are unknown: 🙂🚀 but words stay.",
    "Unbelievably, antidisestablishmentarianism is long.",
    LONG_WORD,
    "hello [MASK] world [SEP] again",
    "UPPER lower MiXeD CaSe",
    "1234567890 3.14159 2,718 1e-9 0x1F",
    "https://example.com/path?query=1&x=y#frag",
    "user@example.org wrote: \"see section 4.2(b)\"",
    "The quick brown fox jumps over the lazy dog.",
    "A quick brown dog jumps over the lazy fox.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "The central bank's rate increase sent equities lower.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "How do I reset my password?",
    "Steps to recover account access when the password is forgotten.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "El rápido zorro marrón salta sobre el perro perezoso.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "a",
    "...",
    "Vitamin D deficiency is common in northern latitudes during winter months.",
    LONG_TEXT,
]

TOKENIZER_ONLY = [
    "don't can't won't it's",
    "ﬁ ligature, Ⅻ numeral, ǅ titlecase",
    "x" * 100,
    "x" * 101,
    "the ##prefix is not special",
    "[CLS][SEP][PAD][UNK]",
    "𫠠 and 𫤠 edge ideographs",
    "a\u0378b unassigned, a\ue000b private use",
    "combining: e\u0301 a\u0308 o\u0302",
    "\u00bfQu\u00e9? \u00a1S\u00ed!",
    "word-with-hyphens_and_underscores",
    "tab\tsep\tvalues\t1\t2",
]


def main() -> None:
    if len(sys.argv) > 1:
        model_dir = Path(sys.argv[1])
    else:
        model_dir = Path((ROOT / "models" / "embedding.path").read_text().strip())
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer
    import torch

    torch.manual_seed(0)
    model = SentenceTransformer(str(model_dir), device="cpu")
    features = model.tokenize(SENTENCES)
    ids = [
        [int(t) for t, m in zip(row, mask) if m]
        for row, mask in zip(features["input_ids"].tolist(), features["attention_mask"].tolist())
    ]
    vectors = model.encode(SENTENCES, batch_size=16, convert_to_numpy=True, normalize_embeddings=False)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "all_minilm_l6_v2.json").write_text(
        json.dumps(
            {
                "generator": "scripts/gen_embedding_fixtures.py: sentence-transformers "
                + __import__("sentence_transformers").__version__
                + ", torch "
                + torch.__version__,
                "model": "all-MiniLM-L6-v2",
                "max_seq_length": model.max_seq_length,
                "texts": SENTENCES,
                "ids": ids,
                "vectors": [[float(f"{v:.7g}") for v in vec] for vec in vectors.tolist()],
            },
            ensure_ascii=False,
        )
        + "\n"
    )

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    texts = SENTENCES + TOKENIZER_ONLY
    (OUT / "wordpiece_tokens.json").write_text(
        json.dumps(
            {
                "generator": "scripts/gen_embedding_fixtures.py: tokenizers "
                + __import__("tokenizers").__version__,
                "tokenizer": "all-MiniLM-L6-v2 tokenizer.json",
                "texts": texts,
                "ids": [tok.encode(t).ids for t in texts],
            },
            ensure_ascii=False,
        )
        + "\n"
    )
    print(f"wrote {OUT}/all_minilm_l6_v2.json and wordpiece_tokens.json")


if __name__ == "__main__":
    main()
