"""
The teacher's written problems as training data, and the rule that keeps them apart from test:
a question may not be a near-copy of a GSM8K test or val question, nor of a seen-stories question
(near_copies.py: the same story in other words, names, order or numbers). It serves train.py
(`--extra-problems FILE`: every problem of a `teacher.py --write-problems` file added to the
train split); problems.py applies the same check as each problem is written.

Decontamination protects test only if it runs before training: a problem that copies a test
story teaches the student that story's answer. train.py checks every row again as it loads the file,
by problems.py's rules that need no teacher (block_verdict's, and ids that no other problem or
variant has).
Example:
    python train.py --mode cot --extra-problems written.jsonl
"""
import sys
from pathlib import Path

from data import NUMBER, Problem, load_gsm8k, normalize_number, read_jsonl
from near_copies import NearCopyIndex
from variant_problems import seen_story_questions
from traces import check_trace, equations_only, trace_verdict

# -----------------------------------------------------------------------------
# Training on them: train.py --extra-problems FILE


def load_extra_problems(path, data_dir, taken_ids=(), held_out=()):
    """
    The problems of a --write-problems file as data.Problems (solution: the written trace), every
    row checked again by problems.py's rules that need no teacher (extra_row_error): a bad row is a
    ValueError naming file:line. Rows that are near-copies of GSM8K train questions are kept, and
    counted in a warning: they train those stories again.
    Example: extra = load_extra_problems("written.jsonl", None)
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"--extra-problems {path} {'is a folder' if Path(path).is_dir() else 'not found'}: "
                                f"make it with `python teacher.py --write-problems N ...`")
    known, train, ids = NearCopyIndex(), NearCopyIndex(), {}
    for split in ("test", "val", "train"):
        for p in load_gsm8k(split, data_dir):
            (train if split == "train" else known).add(p.question, split, p.solution)
            ids[p.id] = "GSM8K"
    for question in held_out:
        known.add(question, "seen-stories")
    ids.update(dict.fromkeys(taken_ids, "GSM8K"))
    problems, rows, copies = [], NearCopyIndex(), []
    for line, row in read_jsonl(path, numbered=True):
        why = extra_row_error(row, ids, known, rows)
        if why:
            raise ValueError(f"{path}:{line}: {why}; remove that line (or remake the file with teacher.py --write-problems)")
        ids[row["id"]] = line
        rows.add(row["question"], line, row["trace"])
        copies += [line] if train.find(row["question"], row["trace"]) else []
        problems.append(Problem(row["id"], row["question"], row["trace"], row["answer"]))
    if not problems:
        raise ValueError(f"{path} holds no problems: make it with `python teacher.py --write-problems N ...`")
    if copies:
        print(f"warning: {path}: {len(copies)} of {len(problems)} rows are near-copies of GSM8K train questions (lines "
              f"{', '.join(map(str, copies[:10]))}{', ...' if len(copies) > 10 else ''}): they train those stories again, "
              f"beyond any --stories or --limit", file=sys.stderr)
    return problems


TRACE_ERRORS = {"unparsed": "its trace fails check_trace (no '#### N' last line)",
                "false_equation": "its trace fails check_trace (an equation that does not hold)",
                "no_equation": "its trace has no equation to check (arithmetic in prose can be neither checked nor learned)"}


def extra_row_error(row, ids, known, rows):
    """
    What is wrong with a row of an --extra-problems file, or None: problems.py's block_verdict
    without the teacher. Its fields (an empty question); its id (used by an earlier row, the id of
    a GSM8K problem, or holding '~', the mark of variant ids <train id>~<k>: a variant question
    would be trained with another problem's trace); its trace (traces.trace_verdict against its
    answer: a '#### N' last line that is its answer, every equation holding, at least one);
    fewer than two numbers in its question; a near-copy of a known question or of an earlier row's (near_copies.py).
    Example: extra_row_error({"id": "w-1", "question": "q", "trace": "2 + 2 = 5\\n#### 5", "answer": "5"}, {}, NearCopyIndex(), NearCopyIndex())
    """
    if not (isinstance(row, dict) and all(isinstance(row.get(k), str) for k in ("id", "question", "trace", "answer"))):
        return "a row needs string fields id, question, trace and answer"
    if not row["question"].strip():
        return "an empty question"
    if row["id"] in ids:
        return f"id {row['id']!r} is " + ("the id of a GSM8K problem" if ids[row["id"]] == "GSM8K" else f"used twice (line {ids[row['id']]} too)")
    if "~" in row["id"]:
        return f"id {row['id']!r} holds '~', which marks the ids of variants (<train id>~<k>): give it an id without one"
    c, gold = check_trace(row["trace"]), normalize_number(row["answer"]) or row["answer"]
    verdict = trace_verdict(row["trace"], gold)
    if verdict == "wrong_answer":
        return f"its trace ends in {c['answer']}, not its answer {row['answer']}"
    if verdict:
        return TRACE_ERRORS[verdict]
    if len(NUMBER.findall(row["question"])) < 2:
        return "its question has fewer than two numbers (problems.py's too_few_numbers)"
    m = known.match(row["question"], row["trace"])
    if m:
        return f"its question is a near-copy of a {'GSM8K ' if m.label in ('test', 'val') else ''}{m.label} question ({m.reason})"
    m = rows.match(row["question"], row["trace"])
    return f"its question is a near-copy of the question of line {m.label} ({m.reason})" if m else None


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
