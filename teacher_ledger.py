"""
The teacher's output file and the counts kept beside it; it serves teacher.py (and recorded.py).
The file is append-only JSONL with one writer, the Ledger, which also counts requests, retries,
rejections, tokens and latency (and replies whose usage block is missing or invalid, warned of
once). Here too: the refusal to touch a file that is not teacher.py's output (or whose summary
path is a folder), the lock that keeps a second run off an output file, reading rows back after a
kill, resuming from them, cost and latency, the totals over every run into one file, and the
scores of an --eval file.

Example:
    ledger = Ledger("traces/gpt-4o-train.jsonl")
    ledger.record(reply, None, row)
    ledger.counts(2.5, 10)["cost_usd"]
"""
import fcntl
import json
import os
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np

from files import check_output_file


ROW_START = b'{"id": '  # how json.dumps begins every row written here: the mark of our files
CUT_OFF_EMPTY = "cut_off_before_any_text"  # finish_reason length, no text: hidden reasoning spent the cap
USAGE_WARNINGS = {  # said once a run, at the first reply of each kind (teacher_http.read_usage)
    "usage_missing": "the server sent a reply without a usage block: its tokens, and so its cost, are not counted "
                     "(the summary counts such replies as usage_missing); check --price-in and --price-out against "
                     "the provider's bill",
    "usage_invalid": "the server sent a reply whose usage block is invalid (a negative or fractional count, or more "
                     "reasoning than completion tokens): its tokens are not counted (the summary counts such replies "
                     "as usage_invalid)"}


def refuse_foreign(path):
    """
    Raise ValueError (naming the file) unless path can be written (files.check_output_file), its
    summary (<path>.summary.json) too, and path is missing, empty or this tool's output (a live,
    --eval, --recorded or reference run's): every line starts as our rows do (the last may be cut
    anywhere by a kill). So a script or a README given as --out is refused before a byte of it
    changes, and a summary that could not be written fails before any request, not after them all.
    Example: refuse_foreign("traces/gpt-4o-train.jsonl")  # returns, or raises
    """
    path, summary = Path(path), Path(f"{path}.summary.json")
    check_output_file(path)
    if summary.is_dir():
        raise ValueError(f"{summary}, where the summary of --out {path} goes, is a folder: move it away or pass another --out")
    check_output_file(summary)
    lines = path.read_bytes().split(b"\n") if path.exists() else []
    for i, line in enumerate(lines, 1):
        cut = i == len(lines)  # no newline after it: possibly cut short by a kill
        if line.strip() and not (line.startswith(ROW_START) or cut and ROW_START.startswith(line)):
            raise ValueError(f"{path}: line {i} is not one teacher.py writes, so the file is not its output "
                             f"and was left untouched; pass another --out")


def lock_output(path):
    """
    Hold an exclusive lock on <path>.lock while this run lives (the system drops it at exit, even on
    kill -9), as train.py holds its run folder's: a second run appending to the same output file
    would ask the same problems again and duplicate ids. Raises ValueError in one line if another
    run holds it. Returns the open lock file: keep it referenced; closing it releases the lock.
    Example: with lock_output("written.jsonl"): ...  # the run
    """
    lock_path = Path(f"{path}.lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(lock_path, "a")
    except OSError as e:
        raise ValueError(f"{lock_path}: cannot open the lock of --out {path} ({e.strerror}); pass another --out") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ValueError(f"{path} is in use by another run (it holds {lock_path}); wait for it to end or pass another "
                         f"--out") from None
    return lock


def read_rows(path, repair=False, warn=True):
    """
    Rows of an append-only JSONL file. A last line cut off by a kill is left out with a warning
    (and cut from the file when repair is set, so appending can go on; warn=False: without the
    warning, for a first look before the repair, which says it); a bad earlier line is an error,
    since only the last line can be half-written. Nothing is cut from a file that is not ours or
    has a bad line: those are errors first.
    Example: rows = read_rows("traces/gpt-4o-train.jsonl", repair=True)
    """
    path = Path(path)
    if repair:
        refuse_foreign(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    keep = raw.rfind(b"\n") + 1  # whatever follows the last newline never got its end
    if keep:
        last = raw[raw.rfind(b"\n", 0, keep - 1) + 1:keep]
        try:
            json.loads(last)
        except ValueError:
            keep -= len(last)
    rows = []
    for i, line in enumerate(raw[:keep].decode("utf-8").split("\n"), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise ValueError(f"{path}:{i}: not valid JSON; fix or remove that line") from None
    if keep < len(raw) and warn:
        print(f"warning: {path}: dropped a cut-off last line ({len(raw) - keep} bytes); earlier lines are intact",
              file=sys.stderr)
        if repair:
            os.truncate(path, keep)
    return rows


class Ledger:
    """
    The only writer of the output file and the keeper of the run's counts. Its lock makes every
    line and every count update whole; once closed it ignores late replies, so Ctrl-C and a
    fatal error leave a file of complete lines.
    Example: ledger = Ledger("t.jsonl"); ledger.record(reply, None, row); ledger.counts(2.5, 10)["cost_usd"]
    """

    def __init__(self, path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "a", encoding="utf-8")
        self.lock = threading.Lock()
        self.requests = self.retried = self.retries = self.prompt_tokens = self.completion_tokens = self.accepted = 0
        self.reasoning_tokens = 0  # the part of completion_tokens a reasoning model spent unseen
        self.latencies, self.rejections, self.failures = [], Counter(), Counter()
        self.failed_in_a_row = 0  # requests that failed after all their retries, since the last reply
        self.usage_problems = Counter()  # replies whose usage block is missing or invalid: their tokens are not counted

    def record(self, reply, reason=None, row=None, retries=0, failures=()):
        with self.lock:
            if self.f.closed:
                return
            self.requests += 1
            retries = reply["retries"] if reply else retries
            self.retried += retries > 0
            self.retries += retries
            self.failures.update(reply["failures"] if reply else failures)
            self.failed_in_a_row = 0 if reply else self.failed_in_a_row + 1
            if reply:
                self.prompt_tokens += reply["prompt_tokens"]
                self.completion_tokens += reply["completion_tokens"]
                self.reasoning_tokens += reply["reasoning_tokens"]
                self.latencies.append(reply["latency_s"])
                self.count_usage_problem(reply.get("usage_problem"))
            if reason:
                self.rejections[reason] += 1
            if row is not None:
                # flushed per line: a kill loses at most the line being written (fsync would guard power loss)
                self.f.write(json.dumps(row, ensure_ascii=False) + "\n")
                self.f.flush()
                self.accepted += 1

    def count_usage_problem(self, problem):
        """Count a reply whose usage block is missing or invalid; the first of each kind is warned of on stderr."""
        if problem:
            self.usage_problems[problem] += 1
            if self.usage_problems[problem] == 1:
                print(f"warning: {USAGE_WARNINGS[problem]}", file=sys.stderr, flush=True)

    def close(self):
        with self.lock:
            self.f.close()

    def counts(self, price_in, price_out):
        return {"requests": self.requests, "requests_retried": self.retried, "retries": self.retries,
                "rejections": dict(sorted(self.rejections.items())),
                "failed_attempts": dict(sorted(self.failures.items())), "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "reasoning_tokens": self.reasoning_tokens,
                "lines_written": self.accepted, "usage_missing": self.usage_problems["usage_missing"],
                "usage_invalid": self.usage_problems["usage_invalid"],
                # completion_tokens already holds the reasoning tokens: the cost counts them once
                **cost_and_latency(self.prompt_tokens, self.completion_tokens, price_in, price_out, self.latencies)}


def progress_line(done, todo, c):
    """
    The line a run prints every 30 s, from the ledger's counts c (reasoning tokens where the model reports them).
    Example: progress_line(3, 8, ledger.counts(0, 0))
    """
    reasoning = f" ({c['reasoning_tokens']} of them reasoning)" if c["reasoning_tokens"] else ""
    return (f"{done}/{todo} problems | {c['lines_written']} lines written | rejected {c['rejections']} | "
            f"failed attempts {c['failed_attempts']} | {c['prompt_tokens']}+{c['completion_tokens']} tokens{reasoning} "
            f"${c['cost_usd']:.4f}")


def cost_and_latency(tokens_in, tokens_out, price_in, price_out, latencies):
    """
    Cost in USD from token counts and per-million prices, and the median and 90th percentile
    latency in seconds (rounded to ms; None without data).
    Example: cost_and_latency(600, 120, 2.5, 10, [1.0, 2.0])["cost_usd"] == 0.0027
    """
    lat = [None, None] if not latencies else [round(float(x), 3) for x in np.percentile(latencies, [50, 90])]
    return {"cost_usd": round((tokens_in * price_in + tokens_out * price_out) / 1e6, 6),
            "latency_median_s": lat[0], "latency_p90_s": lat[1]}


def add_totals(before, now):
    """
    Counts over every run into one output file: this run's added to the totals of the summary
    before it (its flat counts if it predates totals). Latency percentiles cannot be added, so
    they stay per run.
    Example: add_totals({"requests": 3, "rejections": {"duplicate": 1}, "runs": 1},
                        {"requests": 2, "rejections": {"duplicate": 1}})
             == {"requests": 5, "rejections": {"duplicate": 2}, "runs": 2}
    """
    total = {k: round(before.get(k, 0) + now[k], 6) for k in now if not isinstance(now[k], dict) and k != "runs"
             and not k.startswith("latency")}
    for k in (k for k in now if isinstance(now[k], dict)):  # counts by reason: rejections, failed_attempts
        total[k] = dict(sorted((Counter(before.get(k) or {}) + Counter(now[k])).items()))
    return {**total, "runs": before.get("runs", 1 if before else 0) + 1}


def outputs_so_far(out, model):
    """
    The outputs already in the file out, by problem id (a run resumes from them); output of another
    model is an error: two models' traces in one file could never be told apart.
    Example: have = outputs_so_far(Path("traces/gpt-4o-train.jsonl"), "gpt-4o")
    """
    have = {}
    for row in read_rows(out, repair=True):
        if row.get("model") != model:
            raise ValueError(f"{out} holds output of {row.get('model') or row.get('source')!r}, not {model!r}: "
                             f"pass another --out")
        have.setdefault(row["id"], []).append(row.get("trace", row.get("output")))
    return have


def previous_totals(summary_path):
    """
    The totals over earlier runs that the summary file holds, {} if none (a run killed before it
    could write its summary is missing from the totals).
    Example: before = previous_totals(Path("traces/gpt-4o-train.jsonl.summary.json"))
    """
    try:
        before = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.exists() else {}
    except ValueError:
        before = {}
    return before.get("total") or before.get("this_run") or before  # flat counts: a summary without totals


def eval_scores(rows, price_in=0.0, price_out=0.0):
    """
    Exact match, tokens, cost and latency over the rows of an --eval file (the kept replies only:
    failed requests and retries are in the summary's this_run and total).
    Example: eval_scores(read_rows("traces/gpt-4o-eval-test.jsonl"), 2.5, 10)["exact_match"]
    """
    correct = sum(bool(r["correct"]) for r in rows)
    # a recorded teacher's rows have None for what was not published (tokens, latency)
    tokens_in, tokens_out = sum(r["prompt_tokens"] or 0 for r in rows), sum(r["completion_tokens"] or 0 for r in rows)
    return {"n": len(rows), "correct": correct, "exact_match": round(correct / max(len(rows), 1), 4),
            "prompt_tokens": tokens_in, "completion_tokens": tokens_out,
            **cost_and_latency(tokens_in, tokens_out, price_in, price_out,
                               [r["latency_s"] for r in rows if r["latency_s"] is not None]),
            "finish_reasons": dict(Counter(str(r["finish_reason"]) for r in rows))}

