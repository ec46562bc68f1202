"""
GSM8K data: the files and their splits, answers and numbers, and token-budget batches.
Everything about a reasoning trace (its format, the checker, the calculator) is in traces.py,
the tokenizer in tokenizer.py, the download and the files' provenance in download.py.

This file knows nothing of training: it turns files into problems, and token sequences into
padded batches.

Usage:
    python data.py download [--data-dir DIR]      # fetch + verify GSM8K
"""
import argparse
import hashlib
import json
import os
import random
import re
import sys
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation, localcontext
from pathlib import Path

from download import download, warn_if_unofficial

ROOT = Path(__file__).resolve().parent
VAL_SIZE = 300  # out of 7473 hash buckets: the share held out for model selection (266 problems of the official train file)

# -----------------------------------------------------------------------------
# Problems and splits


def resolve_data_dir(data_dir=None):
    """The GSM8K folder: the flag if given, else $GSM8K_DIR, else ./data/gsm8k beside this file."""
    return Path(data_dir or os.environ.get("GSM8K_DIR") or ROOT / "data" / "gsm8k")


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
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8 JSONL") from None
    for i, line in enumerate(lines, 1):
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


def nested_stories(problems, n):
    """
    The n problems whose questions' sha256 ranks lowest, in their original order (all of them
    when n is 0 or at least their number). A hash rather than a position makes the sets nested,
    every smaller one inside every larger one, and free of the file's order: train.py --stories.
    Example: nested_stories(load_gsm8k("train"), 900)  # 900 stories, all inside nested_stories(..., 1800)
    """
    if not n or n >= len(problems):
        return problems
    keep = {p.id for p in sorted(problems, key=lambda p: hashlib.sha256(p.question.encode()).hexdigest())[:n]}
    return [p for p in problems if p.id in keep]


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
    rows, problems = read_jsonl(path, numbered=True), []
    if not rows:  # else an empty train.jsonl surfaces as a SentencePiece internal error
        raise ValueError(f"{path} holds no problems (an empty file): `python data.py download` fetches the official one")
    for i, (line, row) in enumerate(rows):
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
    if not Path(path).is_file():
        raise FileNotFoundError(f"traces file {path} {'is a folder' if Path(path).is_dir() else 'not found'}: "
                                f"make it with `python teacher.py ... --out {path}`, or give the file in it")
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
    Canonical string of a number: '$', '%', a trailing period and thousands commas dropped, trailing
    zeros removed so that equal numbers compare equal, every digit kept. None if it is not a
    number: a comma that does not group digits by threes ("1,0,0", "12,34": never read as 100 or
    1234), or more than MAX_NUMBER_DIGITS digits either side of the point ("1e1000000").
    Example: normalize_number("$1,200.50") == "1200.5" and normalize_number("1,0,0") is None
    """
    s = ungroup(text.strip().replace("$", "").rstrip("%").rstrip(".").rstrip(",").strip())
    try:
        d = Decimal(s) if s else None  # exact: "1.00004" must not become "1"
    except InvalidOperation:
        return None
    if d is None or not d.is_finite() or abs(d.adjusted()) > MAX_NUMBER_DIGITS:
        return None
    with localcontext() as context:  # as many digits as it has: the default 28 would round a 30-digit integer
        context.prec = len(d.as_tuple().digits) + 1
        s = format(d.normalize(), "f")
    return "0" if s == "-0" else s


MAX_NUMBER_DIGITS = 1000  # a number longer than this is not one a problem or a trace writes


def ungroup(s):
    """
    s without the commas that group its whole part by threes, or None when a comma stands anywhere
    else: "1,0,0" is no number rather than 100.
    Example: ungroup("-1,200.5") == "-1200.5" and ungroup("12,34") is None
    """
    if "," not in s:
        return s
    whole, _, decimals = s.partition(".")
    return s.replace(",", "") if "," not in decimals and re.fullmatch(r"[-+]?\s*\d{1,3}(,\d{3})+", whole) else None


def format_number(x, max_decimals=4):
    """
    A Fraction as the shortest decimal string, rounded to max_decimals places, exactly (a
    float would overflow, or lose digits, on big values).
    Example: format_number(Fraction(10, 3), 2) == "3.33"
    """
    if x.denominator == 1:
        return str(x.numerator)
    scaled = round(x, max_decimals) * 10 ** max_decimals  # a whole number: round to a Fraction, then shift
    whole, decimals = divmod(abs(int(scaled)), 10 ** max_decimals)
    s = f"{'-' if scaled < 0 else ''}{whole}.{decimals:0{max_decimals}d}".rstrip("0").rstrip(".")
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


# -----------------------------------------------------------------------------
# Examples and token-budget batches

# the special ids: the tokenizer is trained with them (tokenizer.py), the batches add bos and eos,
# and train.py passes them from the tokenizer into the model's config
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


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


def collate(examples, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID):
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["download"], help="download: fetch and verify GSM8K (tokenizer statistics: python tokenizer.py)")
    parser.add_argument("--data-dir", default=None, help="GSM8K folder (default: $GSM8K_DIR, else data/gsm8k)")
    args = parser.parse_args()
    try:
        print(f"GSM8K ready in {download(resolve_data_dir(args.data_dir))}")
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
