"""
The SentencePiece tokenizer: what it learns from (GSM8K train questions and reference traces),
training it, and the cache that trains it once per set of inputs. Serves train.py and
evaluate.py; built on data.py (the problems, the special ids) and traces.py (the reference traces).

Usage:
    python tokenizer.py [--vocab-size N]      # tokenizer and batching statistics on GSM8K
"""
import argparse
import hashlib
import json
import sys
from pathlib import Path

from data import (BOS_ID, EOS_ID, PAD_ID, ROOT, UNK_ID, Example, drop_long, load_gsm8k, padding_fraction, resolve_data_dir,
                  token_batches)
from files import sha256_file, write_atomic
from traces import check_trace, reference_to_trace

TOKENIZER_DIR = ROOT / "data" / "tokenizer"  # where trained tokenizers are cached
# the files that decide the tokenizer's texts: a change in any of them misses tokenizer_key's memo
TEXT_SOURCES = [ROOT / "data.py", ROOT / "traces.py", ROOT / "arithmetic.py", Path(__file__)]

# Measured on GSM8K test (tokens per question / per reference trace, mean):
# 1000: 95 / 127, 2000: 79 / 114, 4000: 70 / 108, 8000: 65 / 104. Past 4000 the sequences
# hardly shrink while the embedding table doubles, so 4000 is the default.
DEFAULT_VOCAB = 4000
SPECIAL_PIECES = ["####", "\n"]  # the answer marker and the step separator stay single pieces


class Tokenizer:
    """
    A SentencePiece unigram model with digits split into single tokens (so numbers are
    spelled digit by digit), byte fallback (no unknown characters), fixed special ids
    (data.py's PAD_ID=0 UNK_ID=1 BOS_ID=2 EOS_ID=3), and no normalization, so decode(encode(x)) == x for every text
    without U+2581 '▁' (SentencePiece's own space marker, which decodes as a space).
    Example: Tokenizer("data/tokenizer/sp4000-1a2b3c4d.model").encode("3 + 4 = 7")
    """
    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __init__(self, path):
        import sentencepiece as spm
        self.path = str(path)
        self.sp = spm.SentencePieceProcessor(model_file=self.path)
        self.vocab_size = self.sp.get_piece_size()
        self.sha256 = sha256_file(path)

    def encode(self, text):
        return self.sp.encode(text)

    def decode(self, ids):
        return self.sp.decode([i for i in ids if i > self.eos_id])

    def piece(self, i):
        return self.sp.id_to_piece(i)


def tokenizer_texts(data_dir=None):
    """What the tokenizer learns from: train-split questions and reference traces (never val or test)."""
    train = load_gsm8k("train", data_dir)
    return [p.question for p in train] + [reference_to_trace(p.solution) for p in train]


def train_tokenizer(texts, path, vocab_size=DEFAULT_VOCAB):
    """
    Train a SentencePiece model on texts and write it atomically to path. Single-threaded: deterministic.
    Example: tok = train_tokenizer(tokenizer_texts(), "data/tokenizer/mine.model", 4000)
    """
    import io
    import sentencepiece as spm
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=proto, vocab_size=vocab_size, model_type="unigram",
        normalization_rule_name="identity", remove_extra_whitespaces=False, split_digits=True,
        byte_fallback=True, user_defined_symbols=SPECIAL_PIECES, character_coverage=1.0,
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID, num_threads=1, max_sentence_length=16384, minloglevel=2)
    write_atomic(path, proto.getvalue())
    return Tokenizer(path)


def tokenizer_key(vocab_size, data_dir=None, cache_dir=TOKENIZER_DIR):
    """
    The cache name's hash of the tokenizer's inputs (vocabulary, special pieces, the train texts),
    and the texts when they had to be built. Building them converts 7.5K solutions (over a second,
    paid by every train.py start), so the hash is remembered in cache_dir/keys.json under a
    fingerprint of everything the texts are made from: train.jsonl's bytes and the source of
    the files that read and convert it (data.py, traces.py, arithmetic.py and this one). Any change there misses the memo.
    Example: key, texts = tokenizer_key(4000)  # texts is None when the memo knew the key
    """
    train_file = resolve_data_dir(data_dir) / "train.jsonl"
    fingerprint = hashlib.sha256()
    for part in (json.dumps([vocab_size, SPECIAL_PIECES]).encode(), train_file.read_bytes() if train_file.exists() else b"",
                 *(source.read_bytes() for source in TEXT_SOURCES)):
        fingerprint.update(hashlib.sha256(part).digest())
    fingerprint = fingerprint.hexdigest()
    memo_path = Path(cache_dir) / "keys.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}  # none yet, or unreadable: rebuilt below
    if train_file.exists() and isinstance(memo, dict) and fingerprint in memo:
        return memo[fingerprint], None
    texts = tokenizer_texts(data_dir)
    key = hashlib.sha256(json.dumps([vocab_size, SPECIAL_PIECES, texts]).encode()).hexdigest()[:10]
    if train_file.exists():
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(memo_path, json.dumps({**(memo if isinstance(memo, dict) else {}), fingerprint: key}, indent=1) + "\n")
    return key, texts


def get_tokenizer(vocab_size=DEFAULT_VOCAB, data_dir=None, cache_dir=TOKENIZER_DIR):
    """
    The tokenizer for this vocabulary size, trained once and cached under a name that hashes
    its inputs, so the same inputs always give the same file and changed inputs a new one.
    Example: tok = get_tokenizer(4000)
    """
    key, texts = tokenizer_key(vocab_size, data_dir, cache_dir)
    path = Path(cache_dir) / f"sp{vocab_size}-{key}.model"
    if path.exists():
        return Tokenizer(path)
    texts = texts or tokenizer_texts(data_dir)
    print(f"training tokenizer ({vocab_size} pieces) on {len(texts)} train texts -> {path}")
    return train_tokenizer(texts, path, vocab_size)


def stats(args):
    """Tokens per problem, over-length counts and padding on real data: the figures behind the defaults."""
    tok = get_tokenizer(args.vocab_size, args.data_dir)
    for split in ("train", "test"):
        problems = load_gsm8k(split, args.data_dir)
        ex = [Example(p.id, tok.encode(p.question), tok.encode(reference_to_trace(p.solution))) for p in problems]
        kept, dropped = drop_long(ex, args.max_src, args.max_tgt)
        batches = token_batches(kept, args.max_tokens)
        q, t = [len(e.src) for e in ex], [len(e.tgt) for e in ex]
        print(f"{split}: {len(ex)} problems, question tokens mean {sum(q) / len(q):.1f} max {max(q)}, "
              f"trace tokens mean {sum(t) / len(t):.1f} max {max(t)}, left out as too long {dropped}, "
              f"{len(batches)} batches of <= {args.max_tokens} tokens, padding {padding_fraction(kept, batches):.1%}")
    checks = [check_trace(reference_to_trace(p.solution)) for p in load_gsm8k("train", args.data_dir) + load_gsm8k("val", args.data_dir)]
    print(f"reference traces (official train file): {sum(c['n_steps'] for c in checks)} equations, "
          f"{sum(c['n_wrong'] for c in checks)} do not hold, in {sum(not c['all_hold'] for c in checks)} of {len(checks)} solutions")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="GSM8K folder (default: $GSM8K_DIR, else data/gsm8k)")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB, help="tokenizer vocabulary size")
    parser.add_argument("--max-src", type=int, default=384, help="longest source in tokens")
    parser.add_argument("--max-tgt", type=int, default=512, help="longest target in tokens, with eos")
    parser.add_argument("--max-tokens", type=int, default=8192, help="token budget of one batch")
    args = parser.parse_args()
    try:
        stats(args)
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
