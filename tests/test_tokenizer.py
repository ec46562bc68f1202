"""tokenizer.py on the real GSM8K files: exact round trips, the special ids, and a cache keyed by the tokenizer's inputs."""
import hashlib
import json

import data
import traces
from tokenizer import DEFAULT_VOCAB, SPECIAL_PIECES, get_tokenizer, tokenizer_key, tokenizer_texts


def test_tokenizer_round_trip_on_all_of_gsm8k(gsm8k_dir, tokenizer):
    for split in ("train", "val", "test"):
        for p in data.load_gsm8k(split, gsm8k_dir):
            for text in (p.question, traces.reference_to_trace(p.solution), p.solution):
                assert tokenizer.decode(tokenizer.encode(text)) == text


def test_tokenizer_rule_and_specials(tokenizer):
    t = tokenizer
    assert (t.pad_id, t.unk_id, t.bos_id, t.eos_id) == (0, 1, 2, 3)
    assert [t.piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert t.vocab_size == DEFAULT_VOCAB
    # digits are single tokens, '####' and newline are one piece each
    pieces = [t.piece(i) for i in t.encode("12345 + 678 = 13023\n#### 13023")]
    assert all(len(p.strip("▁")) <= 1 for p in pieces if any(c.isdigit() for c in p))
    assert "####" in pieces and "\n" in pieces
    # the exact rule: every text round-trips unless it holds '▁', the space marker
    for text in ("naïve 日本 🙂  x", " lead", "trail ", "a\tb\r\n", "\x00", "", "<s> <pad>", "ﬁ\xa0"):
        assert t.decode(t.encode(text)) == text
    assert t.decode(t.encode("▁x")) == " x"


def test_tokenizer_deterministic_and_cached(gsm8k_dir, tokenizer, tmp_path):
    again = get_tokenizer(DEFAULT_VOCAB, gsm8k_dir, tmp_path)
    assert again.sha256 == tokenizer.sha256
    texts = tokenizer_texts(gsm8k_dir)
    assert not any(q.question in texts for q in data.load_gsm8k("test", gsm8k_dir)[:50])
    # the remembered key is the key of the texts; another train file is a miss, never the old key
    key, built = tokenizer_key(DEFAULT_VOCAB, gsm8k_dir, tmp_path)
    assert built is None and again.path.endswith(f"sp{DEFAULT_VOCAB}-{key}.model")
    assert key == hashlib.sha256(json.dumps([DEFAULT_VOCAB, SPECIAL_PIECES, texts]).encode()).hexdigest()[:10]
    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "train.jsonl").write_text((gsm8k_dir / "train.jsonl").read_text().replace("Natalia", "Nathalie", 1))
    key2, built2 = tokenizer_key(DEFAULT_VOCAB, edited, tmp_path)
    assert key2 != key and any("Nathalie" in t for t in built2)
    assert tokenizer_key(DEFAULT_VOCAB, edited, tmp_path) == (key2, None)
