"""
New problems written by the teacher: it is shown k random GSM8K train problems with their
solutions in the trace format and asked for new ones. One is kept only when its solution
checks (traces.check_trace), a second solution that the teacher writes alone, asked as
teacher.py asks for any problem, has the same answer, its question has two numbers, and it
is no near-copy of a GSM8K test, val or train question nor of a problem already kept
(near_copies.py: the same story in other names, order, words or numbers). It serves teacher.py (`--write-problems N` runs this file, which
reuses teacher.py's client, output file and accounting); train.py reads what it keeps
(`--extra-problems FILE`, extra_problems.py).

The reply format the teacher is asked for (and the only one read):
    blocks separated by a line `---`; each block a line `Question: ...` holding the whole
    problem, then its solution in the trace format: one step per line, every computation an
    equation, a last line `#### N`. Zero-width and bidirectional control characters (Unicode's
    format characters) are stripped from the reply first: unseen, they would hide a copied story
    from the near-copy check, split a number, or make a question read differently than it prints.

Example:
    python teacher.py --write-problems 100 --base-url http://localhost:8000/v1 --model M --out written.jsonl
    python train.py --mode cot --extra-problems written.jsonl

Output: append-only JSONL flushed line by line (a rerun of the same command resumes, keeping
no duplicate; a second run on the same --out is refused while the first runs: <out>.lock) and a
summary <out>.summary.json with the requests as sent, tokens, cost and the rejections by reason.
Exit codes as teacher.py's: 0 done, 1 stopped by the API, 2 bad input (or --out in use), 3 the
request budget (--max-requests) or the server gave out before N were kept, 130 interrupted (143
after SIGTERM; either way the summary is written).
"""
import argparse
import json
import os
import random
import re
import signal
import sys
import threading
import time
import unicodedata
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from urllib.parse import urlsplit

from cli_checks import arg_number
from data import NUMBER, extract_answer, load_gsm8k
from near_copies import NearCopyIndex, gsm8k_near_copy_index
from files import write_atomic
from replies import normalize_reply, validate_trace
from teacher import KEY_ENV_VARS, Client, FatalAPIError, RequestFailed, build_messages, pick_shots
from teacher_http import scrub_url
from teacher_ledger import CUT_OFF_EMPTY, Ledger, add_totals, lock_output, previous_totals, read_rows, refuse_foreign
from teacher_run import cut_off_advice, positive_seconds, record_failure, stop_on_sigterm
from traces import check_trace, reference_to_trace, trace_verdict

# -----------------------------------------------------------------------------
# The prompt and the reply

WRITER_PROMPT = """You write new grade-school math word problems, each with its step-by-step solution.
Reply with blocks separated by a line holding only ---
Each block is a line "Question: " followed by the whole problem on that one line, then the solution:
one short step per line, every computation an explicit equation with its result, using only digits
and + - * / ( ), for example: She has 16 - 3 - 4 = 9 eggs left.
No markdown, no LaTeX, no units inside equations.
The last line of a block is #### followed by the final answer as a plain number, for example: #### 9"""


def example_pool(train):
    """The train problems fit to show as examples: reference traces that end in an answer and whose every equation holds."""
    pool = []
    for p in train:
        trace = reference_to_trace(p.solution)
        c = check_trace(trace)
        if c["well_formed"] and c["all_hold"] and c["n_steps"] >= 1:
            pool.append((p.question, trace))
    return pool


def writer_messages(pool, k, n_new, rng):
    """
    Chat messages asking for n_new problems, showing k examples drawn by rng from pool in the reply format.
    Example: writer_messages([("2 + 2?", "2 + 2 = 4\\n#### 4")], 1, 5, random.Random(0))[1]["content"]
    """
    shown = "\n---\n".join(f"Question: {q}\n{trace}" for q, trace in rng.sample(pool, k))
    ask = (f"Here are {k} problems with their solutions, in the reply format:\n\n{shown}\n\n"
           f"Write {n_new} new problems of the same kind: new stories, not these ones with other names or numbers, "
           f"each with at least two numbers and a whole-number answer. Use exactly the same format.")
    return [{"role": "system", "content": WRITER_PROMPT}, {"role": "user", "content": ask}]


def strip_invisible(text):
    """
    text without Unicode's format characters (category Cf: zero-width spaces and joiners, the
    bidirectional marks, embeddings, overrides and isolates, the byte order mark, soft hyphens).
    Example: strip_invisible("Ann has 1\u200b2 \u202ecats") == "Ann has 12 cats"
    """
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


QUESTION_LINE = re.compile(r"^[*_#\s]*question(?:\s*\d+)?[*_\s]*[:.][*_\s]*(.+)$", re.IGNORECASE)


def parse_reply(text, truncated=False):
    """
    The blocks of a writer's reply as (question, trace, why): why is None for a block in the
    reply format, else malformed (no 'Question:' line, no solution, no '#### N' last line) or
    truncated (the last block of a reply cut off at --max-tokens). Invisible characters are
    stripped first (strip_invisible).
    Example: parse_reply("Question: 2 and 3?\\n2 + 3 = 5\\n#### 5\\n---\\nQuestion: no answer")[1][2] == "malformed"
    """
    blocks = [b for b in re.split(r"(?m)^[ \t]*-{3,}[ \t]*$", strip_invisible(text).replace("\r\n", "\n")) if b.strip()]
    out = []
    for i, block in enumerate(blocks):
        lines = [line.strip() for line in block.strip().split("\n") if line.strip()]
        starts = [j for j, line in enumerate(lines) if QUESTION_LINE.match(line)]
        lines = lines[starts[0]:] if starts else lines  # a line of chat before the question ("Here are five...") is no part of it
        m = QUESTION_LINE.match(lines[0])
        if truncated and i == len(blocks) - 1:
            out.append((None, None, "truncated"))
        elif not m or len(lines) < 2 or not lines[-1].lstrip("*_ ").startswith("####"):
            out.append((None, None, "malformed"))
        else:
            out.append((m.group(1).strip(), normalize_reply("\n".join(lines[1:])), None))
    return out


# -----------------------------------------------------------------------------
# The checks


def block_verdict(question, trace, indexes, min_equations):
    """
    Why a written problem must not be kept, before any second solution is asked for, or None:
    its solution's verdict (unparsed, false_equation, no_equation: traces.trace_verdict against its
    own answer), too_few_numbers (under two in the question), or near_copy_<label>: a near-copy of a
    question of one of the NearCopyIndexes (GSM8K test, val and train; the problems kept; those checked).
    Example: block_verdict("Ann has 2 cats and 3 dogs. How many pets?", "2 + 3 = 6\\n#### 6", [], 1) == "false_equation"
    """
    reason = trace_verdict(trace, extract_answer(trace), min_equations)
    if reason:
        return reason
    if len(NUMBER.findall(question)) < 2:
        return "too_few_numbers"
    label = next(filter(None, (index.find(question, trace) for index in indexes)), None)
    return f"near_copy_{label}" if label else None


def second_solution(question, answer, args, solver, shots):
    """
    Solve the question alone, as teacher.py asks for any problem (its prompt and checks), without
    the written solution: (reply, solver trace, reason); reason None when its answer is `answer`,
    else solver_<why> (solver_cut_off_before_any_text: --solver-max-tokens spent on hidden reasoning).
    Raises RequestFailed when the request failed after its retries.
    Example: reply, trace, reason = second_solution(q, "18", args, solver, shots)
    """
    reply = solver.chat(build_messages(question, shots), args.solver_temperature, args.solver_max_tokens)
    trace, reason = validate_trace(reply["text"], reply["finish_reason"], answer, args.min_equations)
    if reason == "truncated" and not reply["text"].strip():
        reason = CUT_OFF_EMPTY
    return reply, trace, None if reason is None else "solver_disagrees" if reason == "wrong_answer" else f"solver_{reason}"


# -----------------------------------------------------------------------------
# The writer loop


class Writer:
    """
    One run of the writer on --workers threads: the clients, the output file (teacher.Ledger: the
    only writer of it, counting requests, tokens and cost), the problems kept and checked so far
    and the rejections by reason. Its lock makes each claim of a question, and each kept line
    with its id, whole: two threads never keep the same story twice, nor spend past the budget.
    Example: Writer(args, client, solver, train, known, kept_rows).run()  # (status, error)
    """

    def __init__(self, args, client, solver, train, known, rows):
        self.args, self.client, self.solver, self.known = args, client, solver, known
        self.pool, self.shots = example_pool(train), pick_shots(train, args.shots)
        if args.examples > len(self.pool):  # checked before the output file is opened
            raise ValueError(f"--examples {args.examples} is more than the {len(self.pool)} train problems fit to show "
                             f"as examples: give at most {len(self.pool)} (default 5)")
        self.kept, self.checked, self.rejected = NearCopyIndex(), NearCopyIndex(), Counter()
        for row in rows:
            self.kept.add(row["question"], "kept", row.get("trace"))
        self.n_kept, self.n_before, self.started, self.n_asked = len(rows), len(rows), 0, 0
        self.ledger, self.lock = Ledger(args.out), threading.Lock()
        self.run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())

    def take_request(self):
        """Whether one more request may start (N not kept yet, budget left, no stop); counts it as started."""
        with self.lock:
            go = (self.n_kept < self.args.write_problems and self.started < self.args.max_requests
                  and not self.client.stop.is_set())
            self.started += go
            return go

    def run(self):
        """Ask for problems until --write-problems are kept or the budget is spent: (status, error)."""
        status, error = "done", None
        pool = ThreadPoolExecutor(self.args.workers)
        futures = [pool.submit(self.work) for _ in range(self.args.workers)]
        try:
            for fut in as_completed(futures):
                fut.result()  # re-raises FatalAPIError (or a bug) from the worker
        except KeyboardInterrupt:
            status = "interrupted"
        except FatalAPIError as e:
            status, error = "stopped", str(e)
        finally:
            server_gone = self.client.stop.is_set()  # set by record_failure: requests failed after all their retries
            self.client.stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            self.ledger.close()
        if status == "done" and self.n_kept < self.args.write_problems:
            why = (f"the last {self.ledger.failed_in_a_row} requests all failed after their retries (failed attempts: "
                   f"{dict(sorted(self.ledger.failures.items()))}; check the server at {scrub_url(self.args.base_url)})"
                   if server_gone else f"--max-requests {self.args.max_requests} spent")
            status, error = "failed", (f"{why} with {self.n_kept} of {self.args.write_problems} problems kept; "
                                       f"rerun the same command to resume (with a higher --max-requests to allow more)")
        return status, error

    def work(self):
        while self.take_request():
            self.ask_for_problems()

    def ask_for_problems(self):
        """One writer request (already counted by take_request), then every block of its reply checked."""
        a = self.args
        with self.lock:
            self.n_asked += 1
            n = self.n_asked
        rng = random.Random(f"{a.seed}-{self.n_before}-{n}")  # the n-th request of a run; a resume draws anew
        request = f"{self.run_id}/{n}"
        try:
            reply = self.client.chat(writer_messages(self.pool, a.examples, a.per_request, rng), a.temperature, a.max_tokens)
        except RequestFailed as e:
            return record_failure(e, a, self.client, self.ledger)
        cut_off_empty = reply["finish_reason"] == "length" and not reply["text"].strip()  # hidden reasoning spent the cap
        self.ledger.record(reply, CUT_OFF_EMPTY if cut_off_empty else None)
        for block, (question, trace, why) in enumerate(parse_reply(reply["text"], reply["finish_reason"] == "length")):
            with self.lock:  # the check and the claim at once: a thread with the same story sees it claimed
                why = why or block_verdict(question, trace, [self.known, self.kept, self.checked], a.min_equations)
                if why:
                    self.rejected[why] += 1
                else:
                    self.checked.add(question, "checked", trace)
            if not why and self.take_request():
                self.check_and_keep(question, trace, f"{request}#{block}")

    def check_and_keep(self, question, trace, request):
        """Ask for the second solution (a request already counted); keep the problem (one line of the output) when it agrees."""
        a, answer = self.args, extract_answer(trace)
        try:
            reply, solver_trace, why = second_solution(question, answer, a, self.solver, self.shots)
        except RequestFailed as e:
            return record_failure(e, a, self.client, self.ledger)
        with self.lock:
            if why or self.n_kept >= a.write_problems:
                self.rejected[why or "enough_kept"] += 1
                return self.ledger.record(reply)
            row = {"id": f"written-{self.n_kept:05d}", "question": question, "trace": trace, "answer": answer,
                   "source": "written", "model": a.model, "solver_model": a.solver_model,
                   "solver_answer": extract_answer(solver_trace), "solver_trace": solver_trace, "request": request}
            self.ledger.record(reply, None, row)
            self.kept.add(question, "kept", trace)
            self.n_kept += 1

    def counts(self):
        """This run's counts (teacher.Ledger's), the rejections of every check included."""
        c = self.ledger.counts(self.args.price_in, self.args.price_out)
        return {**c, "rejections": dict(sorted((Counter(c["rejections"]) + self.rejected).items()))}


def kept_so_far(out, model, solver_model):
    """
    The rows already in the output file (a rerun resumes from them): problems this file wrote for
    the same model and solver model, else an error naming the file (teacher.read_rows refuses a
    file not ours): one file holds one writer's problems, each checked by the same solver.
    Example: rows = kept_so_far(Path("written.jsonl"), "gpt-4o", "gpt-4o")
    """
    refuse_foreign(out)
    rows = read_rows(out, warn=False)  # checked before a cut-off last line is cut (and warned of, once, below)
    for i, row in enumerate(rows, 1):
        if row.get("source") != "written":
            raise ValueError(f"{out}: row {i} is not a written problem (teacher traces?): pass another --out")
        if row.get("model") != model:
            raise ValueError(f"{out} holds problems written by {row.get('model')!r}, not {model!r}: pass another --out")
        if row.get("solver_model") != solver_model:
            raise ValueError(f"{out} holds problems solved again by {row.get('solver_model')!r}, not {solver_model!r}: "
                             f"pass the same --solver-model, or another --out")
    return read_rows(out, repair=True)


def write_summary(args, writer, status, error, rows_before):
    """The summary beside the output: this run's counts, their totals over every run, the cost of one kept problem, and
    what the writer's and the solver's requests sent (request, solver_request: after any adaptation to the server)."""
    path = Path(f"{args.out}.summary.json")
    this_run, kept = writer.counts(), writer.n_kept - rows_before
    per_kept = {k: round(this_run[k] / kept, 2) if kept else None for k in ("requests", "prompt_tokens", "completion_tokens")}
    summary = {"mode": "write_problems", "status": status, "error": error, "model": args.model,
               "solver_model": args.solver_model, "base_url": scrub_url(args.base_url), "out": str(args.out),
               "wanted": args.write_problems, "kept_in_file": writer.n_kept, "kept_this_run": kept,
               "per_kept_problem": per_kept, "request": writer.client.shape.record(args.temperature, args.max_tokens),
               "solver_request": writer.solver.shape.record(args.solver_temperature, args.solver_max_tokens),
               "this_run": this_run, "total": add_totals(previous_totals(path), this_run)}
    write_atomic(path, json.dumps(summary, indent=2) + "\n")
    return summary


# -----------------------------------------------------------------------------


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flag = parser.add_argument  # one flag a line
    count, at_least_0 = arg_number(int, at_least=1), arg_number(float, at_least=0)  # numbers out of range: usage errors
    flag("--write-problems", type=count, required=True, metavar="N", help="new problems to keep (counting those already in --out)")
    flag("--base-url", required=True, help="OpenAI-compatible API root, before /chat/completions")
    flag("--model", required=True, help="the model that writes the problems")
    flag("--solver-model", help="the model that solves each one again, alone (default: --model; a resume needs the same)")
    flag("--out", help="output JSONL (default: traces/<model>-problems.jsonl); the summary goes to <out>.summary.json")
    flag("--data-dir", help="GSM8K folder (default: $GSM8K_DIR, else data/gsm8k)")
    flag("--seed", type=int, default=0, help="draws the examples shown in each request")
    flag("--examples", type=count, default=5, help="train problems with their solutions shown in each request")
    flag("--per-request", type=count, default=5, help="new problems asked for in each request")
    flag("--workers", type=count, default=4, help="requests at a time")
    flag("--max-requests", type=count, help="requests this run may make, writing and solving (default: 10 x N)")
    flag("--temperature", type=at_least_0, default=1.0, help="the writer's sampling temperature")
    flag("--max-tokens", type=count, default=2048, help="longest writer reply; a block cut off there is rejected")
    flag("--shots", type=arg_number(int, at_least=0), default=4,
         help="worked examples in the solver's prompt, as teacher.py --shots (0: none)")
    flag("--solver-temperature", type=at_least_0, default=0.0, help="the second solution's temperature")
    flag("--solver-max-tokens", type=count, default=512, help="longest second solution")
    flag("--min-equations", type=arg_number(int, at_least=0), default=1, help="fewer checkable equations in either solution: rejected")
    flag("--timeout", type=positive_seconds, default=60.0, help="seconds a request may take before it is retried")
    flag("--max-retries", type=arg_number(int, at_least=0), default=6,
         help="retries of a request on connection errors, timeouts, 408/409/429/5xx")
    flag("--backoff", type=at_least_0, default=1.0, help="first retry delay in seconds, doubled on each retry, with jitter")
    flag("--max-wait", type=at_least_0, default=60.0, help="cap in seconds on any retry delay, Retry-After included")
    flag("--price-in", type=at_least_0, default=0.0, help="USD per million prompt tokens, for the cost")
    flag("--price-out", type=at_least_0, default=0.0, help="USD per million completion tokens, for the cost")
    return parser


def main(argv=None):
    """Run the command line; returns the exit code (see the module docstring). Example: main(["--write-problems", "5", ...])"""
    parser = get_parser()
    args = parser.parse_args(argv)
    if not re.match(r"https?://", args.base_url) or "@" in urlsplit(args.base_url).netloc:
        parser.error("--base-url must start with http:// or https:// and hold no credentials (put the key in TEACHER_API_KEY)")
    args.solver_model = args.solver_model or args.model
    args.max_requests = args.max_requests or 10 * args.write_problems
    slug = re.sub(r"[^\w.-]+", "-", args.model).strip("-")
    args.out = args.out or f"traces/{slug}-problems.jsonl"
    try:
        refuse_foreign(args.out)  # the file and its summary path, before the lock and any request
        lock = lock_output(args.out)  # a second run on this --out is refused while this one runs
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with lock:
        return write_problems(args)


def write_problems(args):
    """The run, under the lock of its --out: read what is kept, ask until N are kept, write the summary; the exit code."""
    key = next((os.environ[v] for v in KEY_ENV_VARS if os.environ.get(v)), None)
    client = Client(args.base_url, args.model, key, args.timeout, args.max_retries, args.backoff, args.max_wait)
    solver = Client(args.base_url, args.solver_model, key, args.timeout, args.max_retries, args.backoff, args.max_wait)
    solver.stop = client.stop  # one run: a fatal error or Ctrl-C stops both
    if args.solver_model == args.model:
        solver.shape = client.shape  # one model: adapted once, and said once
    else:
        client.shape.label, solver.shape.label = f"writer {args.model}: ", f"solver {args.solver_model}: "
    try:
        rows = kept_so_far(Path(args.out), args.model, args.solver_model)
        train = load_gsm8k("train", args.data_dir)
        known = gsm8k_near_copy_index(args.data_dir, ("test", "val", "train"))  # train too: a copy of a train story is no new problem
        writer = Writer(args, client, solver, train, known, rows)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(rows)} of {args.write_problems} problems already kept in {args.out}")
    status, error = writer.run()
    summary = write_summary(args, writer, status, error, len(rows))
    rejections = summary["this_run"]["rejections"]
    print("rejected: " + (", ".join(f"{k} {v}" for k, v in rejections.items()) or "none"))
    print(json.dumps(summary))
    for advice in (cut_off_advice(rejections.get(CUT_OFF_EMPTY), "--max-tokens", args.max_tokens),
                   cut_off_advice(rejections.get(f"solver_{CUT_OFF_EMPTY}"), "--solver-max-tokens", args.solver_max_tokens)):
        if advice:
            print(advice, file=sys.stderr)
    if status == "interrupted":
        print(f"interrupted: every kept problem is in {args.out}; rerun the same command to resume", file=sys.stderr)
    elif error:
        print(f"error: {error}", file=sys.stderr)
    return {"done": 0, "stopped": 1, "failed": 3, "interrupted": 130}[status]


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops cleanly, as in teacher.py
    terminated = stop_on_sigterm()  # and SIGTERM as Ctrl-C: the summary keeps this run's cost in the totals
    code = main()
    code = 143 if code == 130 and terminated.is_set() else code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # a request still in flight holds nothing worth waiting for
