"""
The bookkeeping of one teacher.py run around its loop; it serves teacher.py (and problems.py).
Here: the checks and defaults of the command line, SIGTERM taken as Ctrl-C, the count of failed
requests that stops a run against a dead server, the run's status (done, failed, stopped,
interrupted), its summary file, the advice on replies cut off before any text, and its exit code.

Example:
    summary = write_summary(args, problems, todo, have, ledger, "done", None, client.shape.record(0.7, 512))
    code = exit_code(summary, args.out)   # 0 done, 1 stopped, 3 failed, 130 interrupted
"""
import argparse
import json
import math
import re
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from files import write_atomic
from teacher_http import scrub_url
from teacher_ledger import CUT_OFF_EMPTY, add_totals, eval_scores, previous_totals, read_rows


def positive_seconds(text):
    """argparse type: seconds above 0 (0 fails every request at once, nan and inf never end one).
    Example: positive_seconds("2.5") == 2.5"""
    x = float(text)
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return x


def share(text):
    """argparse type: a share from 0 to 1. Example: share("0.5") == 0.5"""
    x = float(text)
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share from 0 to 1")
    return x


def stop_on_sigterm():
    """
    Make SIGTERM stop a run as Ctrl-C does (KeyboardInterrupt in the main thread): the workers stop
    and the summary is written, so the run's cost stays in the totals. A second SIGTERM while the
    run winds down is ignored. Returns the Event set once SIGTERM came (for exit code 143, not 130).
    Example: terminated = stop_on_sigterm(); code = main(); code = 143 if code == 130 and terminated.is_set() else code
    """
    came = threading.Event()

    def handler(signum, frame):
        """The first SIGTERM: KeyboardInterrupt where the main thread is (waiting on the workers)."""
        if not came.is_set():
            came.set()
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    return came


def cut_off_advice(n, flag, cap):
    """
    The warning for n replies cut off at the token cap before any text (CUT_OFF_EMPTY), or None.
    Example: cut_off_advice(3, "--max-tokens", 512)  # "warning: 3 replies were cut off at --max-tokens 512 ..."
    """
    if not n:
        return None
    return (f"warning: {n} replies were cut off at {flag} {cap} before any text: a reasoning model's hidden reasoning "
            f"counts against the cap, so raise {flag}")


def check_teacher_args(parser, args):
    """
    Refuse a --base-url that is not http(s) or holds credentials and a missing --model (through
    parser.error), then fill the defaults that depend on the mode: temperature, attempts, --out.
    Example: check_teacher_args(parser, args); args.out == "traces/gpt-4o-train.jsonl"
    """
    if not args.base_url or not re.match(r"https?://", args.base_url):
        parser.error("--base-url must start with http:// or https:// (e.g. http://localhost:8000/v1)")
    if "@" in urlsplit(args.base_url).netloc:  # requests would send it as Basic auth, and print it in errors
        parser.error("--base-url must not hold credentials (user:key@host): put the key in TEACHER_API_KEY "
                     "(or OPENAI_API_KEY)")
    if not args.model:
        parser.error("--model is required with --source teacher")
    if args.temperature is None:
        args.temperature = 0.0 if args.eval else 0.7
    if args.max_attempts is None:
        args.max_attempts = 2 * args.samples + 2
    slug = re.sub(r"[^\w.-]+", "-", args.model).strip("-")
    args.out = args.out or f"traces/{slug}{'-eval' if args.eval else ''}-{args.split}.jsonl"


def record_failure(e, args, client, ledger):
    """
    Count a request that failed after all its retries. Twice --workers of them in a row, with no
    reply between, mean the server is down or unreachable: the run stops, rather than spend
    minutes of retries on every problem left (hours for a whole split).
    Example: record_failure(e, args, client, ledger)  # solve and ask_once, on RequestFailed
    """
    ledger.record(None, "request_failed", retries=e.retries, failures=e.failures)
    if ledger.failed_in_a_row >= 2 * args.workers:
        client.stop.set()


def write_summary(args, problems, todo, have, ledger, status, error, request):
    """
    Write (atomically) and return the summary of a run that has stopped asking: its status, what
    the file now holds, what its requests sent (request: the fields, after any adaptation to the
    server), this run's requests, tokens and cost, and their totals over every run into the file.
    Example: summary = write_summary(args, problems, todo, have, ledger, "done", None, client.shape.record(0.7, 512))
    """
    out = Path(args.out)
    rows, summary_path = read_rows(out), Path(f"{out}.summary.json")
    n_done, ids = Counter(r["id"] for r in rows), {p.id for p in problems}
    before = previous_totals(summary_path)
    this_run = ledger.counts(args.price_in, args.price_out)
    succeeded = sum(n_done[p.id] > len(have.get(p.id, [])) for p in todo)
    status, error = run_status(status, error, ledger, succeeded, todo, this_run, args)
    summary = {"mode": "eval" if args.eval else "generate", "status": status, "error": error, "model": args.model,
               "base_url": scrub_url(args.base_url), "split": args.split, "out": str(out), "problems": len(problems),
               "asked": len(todo), "succeeded": succeeded}
    if args.eval:
        summary.update({**eval_scores(rows, args.price_in, args.price_out), "missing": len(ids - set(n_done))})
    else:
        summary.update({"problems_done": sum(n_done[i] >= args.samples for i in ids), "traces_in_file": len(rows),
                        "problems_without_trace": sum(n_done[i] == 0 for i in ids),
                        "samples": args.samples, "temperature": request["temperature"]})
    summary.update({"request": request, "this_run": this_run, "total": add_totals(before, this_run)})
    write_atomic(summary_path, json.dumps(summary, indent=2) + "\n")
    return summary


def run_status(status, error, ledger, succeeded, todo, this_run, args):
    """
    (status, error) of a run that asked about every problem: failed when its last requests all
    failed, or when fewer than --min-success of the problems asked got a new line. A dead server,
    replies that never parse, a teacher whose every reply is rejected: none of that may pass for success.
    Example: status, error = run_status("done", None, ledger, 0, todo, ledger.counts(0, 0), args)
    """
    if status == "done" and ledger.failed_in_a_row >= 2 * args.workers:
        status, error = "failed", (
            f"the last {ledger.failed_in_a_row} requests all failed after their retries (failed attempts: "
            f"{this_run['failed_attempts']}), so the run stopped with {succeeded} of {len(todo)} problems asked done: "
            f"check the server at {scrub_url(args.base_url)}, then rerun to resume")
    elif status == "done" and succeeded < args.min_success * len(todo):
        status, error = "failed", (
            f"{succeeded} of {len(todo)} problems asked got {'a reply' if args.eval else 'a trace kept'} (--min-success "
            f"{args.min_success}); failed attempts: {this_run['failed_attempts'] or 'none'}; rejections: "
            f"{this_run['rejections'] or 'none'}; check the server at {scrub_url(args.base_url)}, then rerun to resume")
    return status, error


def exit_code(summary, out):
    """
    Warn on stderr of failed attempts and problems left without a reply, say why a run did not
    finish, and return the exit code: 0 done, 1 stopped by the API, 3 failed, 130 interrupted.
    Example: sys.exit(exit_code(summary, "traces/gpt-4o-train.jsonl"))
    """
    failed = summary["this_run"]["failed_attempts"]
    if failed and summary["status"] != "failed":  # a failed run's error line says it
        print(f"warning: failed attempts by reason: {failed} (each retried up to --max-retries times)", file=sys.stderr)
    if summary.get("missing"):
        print(f"warning: {summary['missing']} problems got no reply (see request_failed); rerun to ask them again",
              file=sys.stderr)
    advice = cut_off_advice(summary["this_run"]["rejections"].get(CUT_OFF_EMPTY), "--max-tokens",
                            summary["request"]["max_tokens"])
    if advice:
        print(advice, file=sys.stderr)
    if summary["status"] == "stopped":
        print(f"error: {summary['error']}", file=sys.stderr)
        return 1
    if summary["status"] == "failed":
        print(f"error: {summary['error']}", file=sys.stderr)
        return 3
    if summary["status"] == "interrupted":
        print(f"interrupted: every finished line is in {out}; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
