"""
The teacher's written problems as training data, and the rule that keeps them apart from test:
a question may share no 13-gram of words with a GSM8K test or val question (TinyGSM's
decontamination, after lower-casing and removing numbers and punctuation). It serves train.py
(`--extra-problems FILE`: every problem of a `teacher.py --write-problems` file added to the
train split) and problems.py (the same rule, applied as each problem is written).

Decontamination protects test only if it runs before training: a problem that copies a test
story teaches the student that story's answer. train.py checks every row again as it loads the file.
Example:
    python train.py --mode cot --extra-problems written.jsonl
"""
import re
import sys
from pathlib import Path

from data import Problem, load_gsm8k, read_jsonl
from traces import check_trace, equations_only

# -----------------------------------------------------------------------------
# Near-copies: TinyGSM's decontamination rule

NGRAM = 13  # words in a row that two questions may not share


def ngrams(question):
    """
    The question's 13-grams of words after lower-casing and removing numbers and punctuation
    (the whole question as one gram when it is shorter): numbers and names may change, a shared
    13-gram still marks the same story.
    Example: len(ngrams("Tom has 3 apples and buys 4 more. How many apples does Tom have now in all?")) == 3
    """
    words = re.sub(r"[^\w\s]|[\d_]", "", question.lower()).split()
    return {tuple(words[i:i + NGRAM]) for i in range(max(1, len(words) - NGRAM + 1))}


class NgramIndex:
    """
    Which known question a new one shares a 13-gram with: add(question, label), then
    find(question) gives the label of a match, or None.
    Example: ix = NgramIndex(); ix.add(q, "test"); ix.find(q) == "test"
    """

    def __init__(self):
        self.labels = {}

    def add(self, question, label):
        for gram in ngrams(question):
            self.labels.setdefault(gram, label)

    def find(self, question):
        return next((self.labels[g] for g in ngrams(question) if g in self.labels), None)


def gsm8k_index(data_dir, splits=("test", "val")):
    """
    An NgramIndex of the questions of GSM8K splits, each labelled by its split: test, and val (the
    train problems train.py holds out, data.is_val), which must stay unseen to measure anything.
    Example: gsm8k_index(None).find(load_gsm8k("test")[0].question) == "test"
    """
    index = NgramIndex()
    for split in splits:
        for p in load_gsm8k(split, data_dir):
            index.add(p.question, split)
    return index


# -----------------------------------------------------------------------------
# Training on them: train.py --extra-problems FILE


def load_extra_problems(path, data_dir, taken_ids=()):
    """
    The problems of a --write-problems file as data.Problems (solution: the written trace), every
    row checked again: the fields, check_trace (an answer line that is the row's answer, every
    equation holding) and no 13-gram shared with a GSM8K test or val question. A bad row is a
    ValueError naming file:line. Example: extra = load_extra_problems("written.jsonl", None)
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"--extra-problems {path} not found: make it with `python teacher.py --write-problems N ...`")
    known, problems, ids = gsm8k_index(data_dir), [], set(taken_ids)
    for line, row in read_jsonl(path, numbered=True):
        why = extra_row_error(row, ids, known)
        if why:
            raise ValueError(f"{path}:{line}: {why}; remove that line (or remake the file with teacher.py --write-problems)")
        ids.add(row["id"])
        problems.append(Problem(row["id"], row["question"], row["trace"], row["answer"]))
    if not problems:
        raise ValueError(f"{path} holds no problems: make it with `python teacher.py --write-problems N ...`")
    return problems


def extra_row_error(row, ids, known):
    """
    What is wrong with a row of an --extra-problems file, or None: its fields, an id already used,
    a trace that fails check_trace or ends in another answer, a question near a GSM8K test or val one.
    Example: extra_row_error({"id": "w-1", "question": "q", "trace": "2 + 2 = 5\\n#### 5", "answer": "5"}, set(), NgramIndex())
    """
    if not (isinstance(row, dict) and all(isinstance(row.get(k), str) for k in ("id", "question", "trace", "answer"))):
        return "a row needs string fields id, question, trace and answer"
    if row["id"] in ids:
        return f"id {row['id']!r} is used twice (or by a GSM8K train problem)"
    c = check_trace(row["trace"])
    if not (c["well_formed"] and c["all_hold"]):
        return "its trace fails check_trace (no '#### N' last line, or an equation that does not hold)"
    if c["answer"] != row["answer"]:
        return f"its trace ends in {c['answer']}, not its answer {row['answer']}"
    split = known.find(row["question"])
    return f"its question shares a 13-gram with a GSM8K {split} question" if split else None


def add_extra_problems(cfg, train, traces, log):
    """
    train.py: the train problems and their traces (in cfg.trace_format) with every problem of
    cfg.extra_problems added, whatever --limit; a bad file exits with one line naming its line.
    Example: train, traces = add_extra_problems(cfg, train, traces, print)
    """
    if not cfg.extra_problems:
        return train, traces
    try:
        extra = load_extra_problems(cfg.extra_problems, cfg.data_dir or None, {p.id for p in train})
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    log(f"extra problems: {len(extra)} from {cfg.extra_problems}, added to {len(train)} train problems")
    shaped = {p.id: [equations_only(p.solution) if cfg.trace_format == "equations" else p.solution] for p in extra}
    return train + extra, {**traces, **shaped}


def extra_record(files):
    """What config.json and metrics.json keep of the extra problems, from train.py's data_files: count and sha256 ({} without)."""
    f = files.get("extra_problems")
    return {"extra_problems": f["rows"], "extra_problems_sha256": f["sha256"], "extra_problems_file": f["path"]} if f else {}
