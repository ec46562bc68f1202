"""
GSM8K data: download, splits, answers, the SentencePiece tokenizer and token-budget batches.
Everything about a reasoning trace (its format, the checker, the calculator) is in traces.py.

This file knows nothing of training: it turns files into problems, problems into token
sequences, and sequences into padded batches.

Usage:
    python data.py download [--data-dir DIR]      # fetch + verify GSM8K
    python data.py stats [--vocab-size N]         # tokenizer and batching statistics
"""
import argparse
import hashlib
import json
import math
import os
import random
import re
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import requests
import urllib3

from files import sha256_file, write_atomic

ROOT = Path(__file__).resolve().parent
GSM8K_URL = "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data"
GSM8K_FILES = {  # file -> (problems, sha256) of the official release
    "train.jsonl": (7473, "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465"),
    "test.jsonl": (1319, "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"),
}
VAL_SIZE = 300  # out of 7473 hash buckets: the share held out for model selection (266 problems of the official train file)
TOKENIZER_DIR = ROOT / "data" / "tokenizer"  # where trained tokenizers are cached

# -----------------------------------------------------------------------------
# Download


def resolve_data_dir(data_dir=None):
    """The GSM8K folder: the flag if given, else $GSM8K_DIR, else ./data/gsm8k beside this file."""
    return Path(data_dir or os.environ.get("GSM8K_DIR") or ROOT / "data" / "gsm8k")


def pick_device(name=None):
    """
    The torch device to use: the one named, else cuda, else mps, else cpu.
    Example: pick_device() == torch.device("cpu")  # on a machine with no accelerator
    """
    import torch
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu")


def arg_number(kind=int, at_least=None, above=None, at_most=None, below=None):
    """
    An argparse type for a numeric flag: a finite int or float within the bounds given, else a
    one-line usage error at parse time (exit 2), never a traceback (or a silent run on nothing) later.
    Example: parser.add_argument("--epochs", type=arg_number(float, above=0))
    """
    def parse(text):
        try:
            x = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(x):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        for ok, bound, words in ((at_least is None or x >= at_least, at_least, "at least"), (above is None or x > above, above, "above"),
                                 (at_most is None or x <= at_most, at_most, "at most"), (below is None or x < below, below, "below")):
            if not ok:
                raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {words} {bound}")
        return x

    parse.__name__ = kind.__name__  # argparse's own messages name the type by it
    return parse


class DeadlineExceeded(requests.Timeout):
    """A whole transfer took longer than its wall-clock deadline (requests' timeout is per socket read)."""


def iter_body(response, deadline):
    """
    The body of a requests response opened with stream=True, in pieces as they arrive, raising
    DeadlineExceeded once time.monotonic() passes deadline. read1 returns what one socket read
    brings, so a server that trickles a byte at a time is cut off on time (iter_content waits
    until each of its chunks is full); a silent one is cut off by requests' per-read timeout.
    Example: with requests.get(url, stream=True, timeout=30) as r: body = b"".join(iter_body(r, time.monotonic() + 600))
    """
    while True:
        if time.monotonic() > deadline:
            raise DeadlineExceeded(f"{response.url}: no complete reply within the deadline")
        try:
            piece = response.raw.read1(1 << 16, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError:  # raised as requests' own, as iter_content does
            raise requests.ReadTimeout(f"{response.url}: read timed out") from None
        except urllib3.exceptions.HTTPError as e:  # cut off mid-body, bad gzip, ...
            raise requests.ConnectionError(f"{response.url}: {type(e).__name__}") from None
        if not piece:
            return
        yield piece


def download(data_dir=None, base_url=GSM8K_URL, timeout=30.0, deadline=600.0):
    """
    Fetch train.jsonl and test.jsonl into data_dir, verify their sha256 and rename them into
    place only when it matches, so an interrupted or corrupt download leaves no file behind.
    Files already present and verified are not fetched again. timeout bounds each socket read,
    deadline (seconds) each whole file, so a server that trickles bytes cannot hang the download.
    Example: download("data/gsm8k")
    """
    data_dir = resolve_data_dir(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, (_, digest) in GSM8K_FILES.items():
        path = data_dir / name
        if path.exists() and sha256_file(path) == digest:
            continue
        url = f"{base_url}/{name}"
        try:
            ends = time.monotonic() + deadline
            with requests.get(url, stream=True, timeout=timeout) as r:
                r.raise_for_status()
                body = b"".join(iter_body(r, ends))
        except requests.RequestException as e:
            raise RuntimeError(f"could not download {url} ({type(e).__name__}); without network, "
                               f"point --data-dir or GSM8K_DIR at a folder holding {name}") from None
        got = hashlib.sha256(body).hexdigest()
        if got != digest:
            raise RuntimeError(f"{url}: sha256 {got[:12]}... does not match the official "
                               f"{digest[:12]}...; nothing was saved, try again or use a local copy")
        write_atomic(path, body)
        print(f"downloaded {url} -> {path}")
    return data_dir


def file_record(path):
    """
    What a data file is, by content, for config.json, metrics.json and eval.json: its name, path,
    rows (non-blank lines) and sha256, and for train.jsonl / test.jsonl whether it is the official
    GSM8K release. A run's numbers are only comparable with another's on the same files.
    Example: file_record("data/gsm8k/test.jsonl")["rows"] == 1319
    """
    path = Path(path)
    h, rows = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for line in f:
            h.update(line)
            rows += bool(line.strip())
    record = {"name": path.name, "path": str(path), "rows": rows, "sha256": h.hexdigest()}
    if path.name in GSM8K_FILES:
        record["official"] = record["sha256"] == GSM8K_FILES[path.name][1]
    return record


_warned = set()  # (path, sha256) already warned about in this process: once is loud enough


def warn_if_unofficial(path):
    """
    Print to stderr, once per file and process, when a GSM8K file is not the official release
    (a cut, edited or other file): it still loads, but its scores are not GSM8K's.
    Example: warn_if_unofficial("data/gsm8k/test.jsonl")  # silent for the official file
    """
    r = file_record(path)
    if r.get("official", True) or (r["path"], r["sha256"]) in _warned:
        return r
    _warned.add((r["path"], r["sha256"]))
    rows, digest = GSM8K_FILES[r["name"]]
    print(f"warning: {path} is NOT the official GSM8K {r['name']}: {r['rows']} rows, sha256 {r['sha256'][:12]}... "
          f"(official: {rows} rows, {digest[:12]}...); its scores are not GSM8K scores. "
          f"`python data.py download --data-dir DIR` fetches the official file", file=sys.stderr)
    return r


# -----------------------------------------------------------------------------
# Problems and splits


@dataclass
class Problem:
    id: str        # "train-00042": official file and line index, stable across machines
    question: str  # the word problem
    solution: str  # the human reference solution with its <<a*b=c>> annotations
    answer: str    # normalized final answer, e.g. "72" or "0.5"


def read_jsonl(path, numbered=False):
    """
    Rows of a JSONL file (blank lines skipped), or (line number, row) pairs with numbered=True,
    for errors that name the line; a corrupt line raises an error naming file and line.
    Example: read_jsonl("data/gsm8k/test.jsonl")[0]["question"]
    """
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not valid JSON ({e.msg}); fix or remove that line") from None
            rows.append((i, row) if numbered else row)
    return rows


def is_val(question):
    """
    Membership in `val` by a hash of the question text: stable across runs, machines and file order.
    Example: sum(is_val(p.question) for p in load_gsm8k("test"))  # about 4% of any set of questions
    """
    return int(hashlib.sha256(question.encode()).hexdigest()[:8], 16) % 7473 < VAL_SIZE


def load_gsm8k(split, data_dir=None):
    """
    Problems of 'train', 'val' (a fixed slice of 266 problems of the official train file, never
    in 'train') or 'test' (the official test file).
    Example: load_gsm8k("test")[0].answer == "18"
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}: choose train, val or test")
    name = "test.jsonl" if split == "test" else "train.jsonl"
    path = resolve_data_dir(data_dir) / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python data.py download` or set GSM8K_DIR "
                                f"(or --data-dir) to a folder holding {name}")
    warn_if_unofficial(path)
    problems = []
    for i, (line, row) in enumerate(read_jsonl(path, numbered=True)):
        what = gsm8k_row_error(row)
        if what:
            raise ValueError(f"{path}:{line}: {what}; fix or remove that line (`python data.py download` fetches the official file)")
        if split != "test" and is_val(row["question"]) != (split == "val"):
            continue
        problems.append(Problem(f"{name.split('.')[0]}-{i:05d}", row["question"], row["answer"],
                                extract_answer(row["answer"])))
    return problems


def gsm8k_row_error(row):
    """
    What is wrong with a GSM8K row, or None: a non-empty string question, and a string answer
    ending in '#### <number>' (an answer without one would become a '#### ...' target of words).
    Example: gsm8k_row_error({"question": "q?", "answer": 18}) == "'answer' must be a string ending in '#### <number>', not 18"
    """
    if not isinstance(row, dict):
        return "a row must be an object with 'question' and 'answer'"
    if not isinstance(row.get("question"), str) or not row["question"].strip():
        return f"'question' must be a non-empty string, not {row.get('question')!r}"
    answer = row.get("answer")
    if not isinstance(answer, str) or "####" not in answer or extract_answer(answer) is None:
        return f"'answer' must be a string ending in '#### <number>', not {answer if not isinstance(answer, str) else answer[-40:]!r}"
    return None


def read_traces(path):
    """
    Reasoning traces by problem id from a JSONL file of {"id", "trace", ...} lines (what
    teacher.py writes). A missing file or corrupt line is an error naming the file and line.
    Example: read_traces("traces/gpt4.jsonl")["train-00000"][0]
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"traces file {path} not found: make it with `python teacher.py ... --out {path}`")
    traces = {}
    for i, row in enumerate(read_jsonl(path), 1):
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(row.get("trace"), str):
            raise ValueError(f"{path}:{i}: a trace line needs string fields 'id' and 'trace'")
        traces.setdefault(row["id"], []).append(row["trace"])
    return traces


# -----------------------------------------------------------------------------
# Numbers and answers

NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?|\.\d+")


def normalize_number(text):
    """
    Canonical string of a number: commas, '$', '%' and a trailing period dropped, trailing
    zeros removed so that equal numbers compare equal. None if it is not a number.
    Example: normalize_number("$1,200.50") == "1200.5"
    """
    s = text.strip().replace(",", "").replace("$", "").rstrip("%").rstrip(".")
    try:
        d = Decimal(s)  # exact: "1.00004" must not become "1"
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    s = format(d.normalize(), "f")
    return "0" if s == "-0" else s


def format_number(x, max_decimals=4):
    """
    A Fraction as the shortest decimal string, rounded to max_decimals places.
    Example: format_number(Fraction(10, 3), 2) == "3.33"
    """
    if x.denominator == 1:
        return str(x.numerator)
    s = f"{float(round(x, max_decimals)):.{max_decimals}f}".rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def extract_answer(text):
    """
    The final answer of a solution: the number after the last '####' when there is one
    (the strict rule), else the last number in the text (the flexible rule). None if no number.
    Example: extract_answer("so 4 + 5 = 9\\n#### 9") == "9"
    """
    if text is None:
        return None
    if "####" in text:
        text = text.rsplit("####", 1)[1]
        matches = list(NUMBER.finditer(text))[:1]
    else:
        matches = list(NUMBER.finditer(text))[-1:]
    if not matches:
        return None
    m = matches[0]
    # a minus sign written against the number makes it negative, unless it follows a word or
    # digit ("5-3", "5 - 3" are subtraction; "#### -3", "is -3", "= $-3" are negative)
    negative = re.search(r"(?:^|[^\w).])-\$?$", text[:m.start()]) is not None
    return normalize_number(("-" if negative else "") + m.group())


def wilson_interval(correct, n, z=1.96):
    """
    The 95% Wilson score interval of a proportion: sound at small n and near 0 or 1.
    Example: wilson_interval(50, 100) == (0.4038..., 0.5961...)
    """
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


# -----------------------------------------------------------------------------
# Tokenizer

# Measured on GSM8K test (tokens per question / per reference trace, mean):
# 1000: 95 / 127, 2000: 79 / 114, 4000: 70 / 108, 8000: 65 / 104. Past 4000 the sequences
# hardly shrink while the embedding table doubles, so 4000 is the default.
DEFAULT_VOCAB = 4000
SPECIAL_PIECES = ["####", "\n"]  # the answer marker and the step separator stay single pieces


class Tokenizer:
    """
    A SentencePiece unigram model with digits split into single tokens (so numbers are
    spelled digit by digit), byte fallback (no unknown characters), fixed special ids
    pad=0 unk=1 bos=2 eos=3, and no normalization, so decode(encode(x)) == x for every text
    without U+2581 '▁' (SentencePiece's own space marker, which decodes as a space).
    Example: Tokenizer("data/tokenizer/sp4000-1a2b3c4d.model").encode("3 + 4 = 7")
    """
    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

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
    from traces import reference_to_trace  # here, not at the top: traces.py builds on this file
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
        pad_id=0, unk_id=1, bos_id=2, eos_id=3, num_threads=1, max_sentence_length=16384, minloglevel=2)
    write_atomic(path, proto.getvalue())
    return Tokenizer(path)


def tokenizer_key(vocab_size, data_dir=None, cache_dir=TOKENIZER_DIR):
    """
    The cache name's hash of the tokenizer's inputs (vocabulary, special pieces, the train texts),
    and the texts when they had to be built. Building them converts 7.5K solutions (over a second,
    paid by every train.py start), so the hash is remembered in cache_dir/keys.json under a
    fingerprint of everything the texts are made from: train.jsonl's bytes and the source of
    data.py and traces.py, which read and convert it. Any change there misses the memo.
    Example: key, texts = tokenizer_key(4000)  # texts is None when the memo knew the key
    """
    train_file = resolve_data_dir(data_dir) / "train.jsonl"
    fingerprint = hashlib.sha256()
    for part in (json.dumps([vocab_size, SPECIAL_PIECES]).encode(), train_file.read_bytes() if train_file.exists() else b"",
                 Path(__file__).read_bytes(), (ROOT / "traces.py").read_bytes()):
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


# -----------------------------------------------------------------------------
# Examples and token-budget batches


@dataclass
class Example:
    id: str    # the problem id it came from
    src: list  # source token ids (no bos/eos)
    tgt: list  # target token ids (no bos/eos; the batch adds them)
    no_loss: list = field(default_factory=list)  # positions of tgt the loss skips (results a calculator writes)


def drop_long(examples, max_src, max_tgt):
    """
    Leave out, never truncate, examples longer than the limits; returns (kept, how many left out).
    Example: kept, dropped = drop_long(examples, max_src=384, max_tgt=512)
    """
    kept = [e for e in examples if len(e.src) <= max_src and len(e.tgt) + 1 <= max_tgt]
    return kept, len(examples) - len(kept)


def token_batches(examples, max_tokens, seed=0, shuffle=True):
    """
    Index lists of length-bucketed batches whose padded size (rows x (longest src + longest
    tgt)) stays under max_tokens. Sorting by length keeps padding small; the batches are then
    shuffled (deterministically by seed) so training does not see lengths in order.
    Example: token_batches(examples, 8192, seed=epoch)
    """
    rng = random.Random(seed)
    # targets vary more than sources, so bucket by target length first, then by source length
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].tgt) // 16, len(examples[i].src), rng.random()))
    batches, cur, S, T = [], [], 0, 0
    for i in order:
        s, t = len(examples[i].src), len(examples[i].tgt) + 1
        if cur and (len(cur) + 1) * (max(S, s) + max(T, t)) > max_tokens:
            batches.append(cur)
            cur, S, T = [], 0, 0
        cur.append(i)
        S, T = max(S, s), max(T, t)
    if cur:
        batches.append(cur)
    if shuffle:
        rng.shuffle(batches)
    return batches


def collate(examples, pad_id=0, bos_id=2, eos_id=3):
    """
    Pad a batch: src (B, S), tgt_in = bos + tgt (B, T), targets = tgt + eos (B, T), pad_id elsewhere.
    Example: src, tgt_in, targets = collate([examples[i] for i in batch])
    """
    import torch
    B = len(examples)
    S = max(len(e.src) for e in examples)
    T = max(len(e.tgt) for e in examples) + 1
    src = torch.full((B, S), pad_id, dtype=torch.long)
    tgt_in = torch.full((B, T), pad_id, dtype=torch.long)
    targets = torch.full((B, T), pad_id, dtype=torch.long)
    for b, e in enumerate(examples):
        src[b, :len(e.src)] = torch.tensor(e.src)
        tgt_in[b, :len(e.tgt) + 1] = torch.tensor([bos_id] + e.tgt)
        targets[b, :len(e.tgt) + 1] = torch.tensor(e.tgt + [eos_id])
        targets[b, e.no_loss] = pad_id  # the loss ignores pad_id
    return src, tgt_in, targets


def padding_fraction(examples, batches):
    """
    Share of the padded batch tensors (src and tgt) that is padding.
    Example: padding_fraction(examples, token_batches(examples, 8192))  # 0.08 on GSM8K train
    """
    real = padded = 0
    for batch in batches:
        es = [examples[i] for i in batch]
        real += sum(len(e.src) + len(e.tgt) + 1 for e in es)
        padded += len(es) * (max(len(e.src) for e in es) + max(len(e.tgt) for e in es) + 1)
    return 1 - real / max(padded, 1)


# -----------------------------------------------------------------------------


def stats(args):
    """Tokens per problem, over-length counts and padding on real data: the figures behind the defaults."""
    from traces import check_trace, reference_to_trace  # here, not at the top: traces.py builds on this file
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
    parser.add_argument("command", choices=["download", "stats"], help="download: fetch and verify GSM8K; stats: tokenizer and batch figures")
    parser.add_argument("--data-dir", default=None, help="GSM8K folder (default: $GSM8K_DIR, else data/gsm8k)")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB, help="tokenizer vocabulary size")
    parser.add_argument("--max-src", type=int, default=384, help="longest source in tokens")
    parser.add_argument("--max-tgt", type=int, default=512, help="longest target in tokens, with eos")
    parser.add_argument("--max-tokens", type=int, default=8192, help="token budget of one batch")
    args = parser.parse_args()
    try:
        if args.command == "download":
            print(f"GSM8K ready in {download(args.data_dir)}")
        else:
            stats(args)
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
