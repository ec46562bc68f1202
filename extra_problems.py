"""
The teacher's written problems as training data, and the rule that keeps them apart from test:
a question may not be a near-copy of a GSM8K test or val question, nor of a seen-stories question
(near_copies.py: the same story in other words, names, order or numbers). It serves train.py
(`--extra-problems FILE`: every problem of a `teacher.py --write-problems` file added to the
train split); problems.py applies the same check as each problem is written.

Decontamination protects test only if it runs before training: a problem that copies a test
story teaches the student that story's answer. train.py checks every row again as it loads the file.
Example:
    python train.py --mode cot --extra-problems written.jsonl
"""
import sys
from pathlib import Path

from data import Problem, read_jsonl
from near_copies import NearCopyIndex, gsm8k_near_copy_index
from variant_problems import seen_story_questions
from traces import check_trace, equations_only

# -----------------------------------------------------------------------------
# Training on them: train.py --extra-problems FILE


def load_extra_problems(path, data_dir, taken_ids=(), held_out=()):
    """
    The problems of a --write-problems file as data.Problems (solution: the written trace), every
    row checked again: the fields, check_trace (an answer line that is the row's answer, every
    equation holding) and no near-copy of a GSM8K test or val question or of a held-out question
    (the seen stories). A bad row is a ValueError naming file:line.
    Example: extra = load_extra_problems("written.jsonl", None)
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"--extra-problems {path} not found: make it with `python teacher.py --write-problems N ...`")
    known, problems, ids = gsm8k_near_copy_index(data_dir), [], set(taken_ids)
    for question in held_out:
        known.add(question, "seen-stories")
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
    a trace that fails check_trace or ends in another answer, a near-copy of a known question (near_copies.py).
    Example: extra_row_error({"id": "w-1", "question": "q", "trace": "2 + 2 = 5\\n#### 5", "answer": "5"}, set(), NearCopyIndex())
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
    m = known.match(row["question"], row["trace"])
    return f"its question is a near-copy of a {'GSM8K ' if m.label in ('test', 'val') else ''}{m.label} question ({m.reason})" if m else None


def add_extra_problems(cfg, train, traces, log):
    """
    train.py: the train problems and their traces (in cfg.trace_format) with every problem of
    cfg.extra_problems added, whatever --limit; a bad file exits with one line naming its line.
    Example: train, traces = add_extra_problems(cfg, train, traces, print)
    """
    if not cfg.extra_problems:
        return train, traces
    try:
        held_out = seen_story_questions(cfg.seen_stories)  # a seen-stories question trained on would no longer be unseen
        extra = load_extra_problems(cfg.extra_problems, cfg.data_dir or None, {p.id for p in train}, held_out)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    log(f"extra problems: {len(extra)} from {cfg.extra_problems}, added to {len(train)} train problems")
    shaped = {p.id: [equations_only(p.solution) if cfg.trace_format == "equations" else p.solution] for p in extra}
    return train + extra, {**traces, **shaped}


def extra_record(files):
    """What config.json and metrics.json keep of the extra problems, from train.py's data_files: count and sha256 ({} without)."""
    f = files.get("extra_problems")
    return {"extra_problems": f["rows"], "extra_problems_sha256": f["sha256"], "extra_problems_file": f["path"]} if f else {}
