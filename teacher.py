"""
The teacher: chain-of-thought traces for GSM8K from a large LLM behind an OpenAI-compatible
chat completions endpoint (OpenAI, vLLM, llama.cpp's server, Ollama, most hosted models),
spoken to with `requests` alone.

Every reply is normalized into the project's trace format (see traces.py) and checked before
it is kept: it parses, its final answer is the GSM8K label, every equation in it holds, and
it was not cut off. Output is append-only JSONL flushed line by line, so a killed run loses
nothing and rerunning the same command resumes where it stopped.

Usage:
    python teacher.py --base-url http://localhost:8000/v1 --model Qwen/Qwen2.5-72B-Instruct --samples 4
    python teacher.py --source reference --split train    # the GSM8K reference solutions, offline
    python teacher.py --base-url https://api.openai.com/v1 --model gpt-4o --eval    # the upper bound
    python teacher.py --recorded ../shared/data/teachers/gsm8k-test-gpt-4.json --out traces/gpt-4-eval-test.jsonl

The API key is read from $TEACHER_API_KEY, else $OPENAI_API_KEY; local servers need none.
Exit codes: 0 done, 1 stopped by the API (400/401/403/404), 2 bad input, 3 too few problems
succeeded (--min-success), 130 interrupted.
"""
import argparse
import base64
import json
import math
import os
import random
import re
import signal
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import requests

from data import extract_answer, load_gsm8k
from download import iter_body
from files import write_atomic
from replies import normalize_reply, validate_trace
from traces import check_trace, reference_to_trace

KEY_ENV_VARS = ("TEACHER_API_KEY", "OPENAI_API_KEY")
RETRY_STATUS = {408, 409, 429}  # and every 5xx: the server may answer if asked again later
FATAL_HINTS = {  # retrying cannot fix these, so the run stops at once and says why
    400: "the server rejected the request: check --model, --max-tokens and --temperature",
    401: "the API key is missing or wrong: set TEACHER_API_KEY (or OPENAI_API_KEY)",
    403: "the API key is not allowed to use this model: check TEACHER_API_KEY (or OPENAI_API_KEY)",
    404: "the model name or the URL is wrong: --base-url is the part before /chat/completions, "
         "e.g. http://localhost:8000/v1",
}

# -----------------------------------------------------------------------------
# The prompt: instructions plus worked examples in the trace format

SYSTEM_PROMPT = """You solve grade-school math word problems step by step.
Write one short step per line. Write every computation as an explicit equation with its result,
using only digits and + - * / ( ), for example: She has 16 - 3 - 4 = 9 eggs left.
No markdown, no LaTeX, no units inside equations.
The last line is #### followed by the final answer as a plain number, for example: #### 9"""


def pick_shots(train, n):
    """
    Worked examples for the prompt from the train split's reference solutions (never test):
    the first n whose traces are short and have two to four equations that all hold.
    Example: shots = pick_shots(load_gsm8k("train"), 5)
    """
    shots = []
    for p in train:
        trace = reference_to_trace(p.solution)
        c = check_trace(trace)
        if 2 <= c["n_steps"] <= 4 and c["all_hold"] and len(trace) < 400:
            shots.append((p.question, trace))
            if len(shots) == n:
                break
    return shots


def build_messages(question, shots):
    """
    Chat messages: the instructions, each example as a user/assistant turn, then the question.
    Example: build_messages("How many?", [("2 + 2?", "2 + 2 = 4\\n#### 4")])[-1]["content"] == "How many?"
    """
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for q, trace in shots:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": trace}]
    return messages + [{"role": "user", "content": question}]


# -----------------------------------------------------------------------------
# The HTTP client: retries what may pass, stops at what cannot


class FatalAPIError(RuntimeError):
    """A 400, 401, 403 or 404: asking again cannot help, so the run stops."""


class RequestFailed(RuntimeError):
    """A request that still failed after all its retries (or was abandoned on stop); failures: why each try failed."""

    def __init__(self, message, retries, failures):
        super().__init__(message)
        self.retries, self.failures = retries, failures


def parse_retry_after(value):
    """
    Seconds to wait from a Retry-After header (seconds or an HTTP date); None if absent or unreadable.
    Example: parse_retry_after("2") == 2.0
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def scrub_url(url):
    """
    A URL fit to print: without user:password@ and without the query string (both may hold keys).
    Example: scrub_url("https://u:pw@host/v1?key=sk-1") == "https://host/v1"
    """
    return re.sub(r"//[^/@]*@", "//", url).split("?")[0].split("#")[0]


def secret_forms(key):
    """
    What to redact for an API key: the key, and the base64 it turns into inside longer base64
    text (an echoed 'Authorization: Basic base64(user:key)') at each of the three byte offsets
    it can start at, in the standard and URL-safe alphabets. The characters at its two ends also
    depend on the neighbouring bytes, so they stay: they tell under two bytes of the key.
    Example: "c2stMTIzNDU2" in secret_forms("sk-123456")
    """
    raw, forms = key.encode(), {key}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        core = encoded[4 * ((shift + 2) // 3):4 * ((shift + len(raw)) // 3)]  # the groups of key bytes alone
        forms |= {core, core.replace("+", "-").replace("/", "_")}
    return sorted((f for f in forms if len(f) >= 8 or f == key), key=len, reverse=True)  # short cores match by chance


class Client:
    """
    POST {base_url}/chat/completions with retries: connection errors, timeouts, 408, 409, 429,
    5xx and malformed replies are retried with exponential backoff and jitter (Retry-After
    honoured, capped at max_wait); 400, 401, 403, 404 (and any other 4xx) raise FatalAPIError.
    Each try must be over within `timeout` seconds, start to last byte. Everything the server
    says passes redact() before it leaves this class: some servers echo the key.
    Setting `stop` makes every thread give up at its next wait.
    Example: Client("http://localhost:8000/v1", "llama3").chat(messages, 0.7, 512)["text"]
    """

    def __init__(self, base_url, model, api_key=None, timeout=60.0, max_retries=6, backoff=1.0, max_wait=60.0):
        self.url, self.model, self.api_key = base_url.rstrip("/") + "/chat/completions", model, api_key
        self.secrets = secret_forms(api_key) if api_key else []
        self.timeout, self.max_retries, self.backoff, self.max_wait = timeout, max_retries, backoff, max_wait
        self.stop = threading.Event()
        self.local = threading.local()  # a requests.Session is not thread-safe: one per worker

    def redact(self, text):
        for secret in self.secrets:
            text = text.replace(secret, "[API key]")
        return text

    def chat(self, messages, temperature, max_tokens):
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens}
        failures = []  # why each try failed: counted by reason in the summary
        for attempt in range(self.max_retries + 1):
            retry_after = None
            t0 = time.perf_counter()
            try:
                # requests' timeout bounds each socket read, so a server sending a byte a second
                # would hold it for ever: stream the body and hold the whole try to a deadline
                deadline = time.monotonic() + self.timeout
                with self.local.session.post(self.url, json=body, headers=headers, timeout=self.timeout, stream=True) as r:
                    content = b"".join(iter_body(r, deadline))
                latency = time.perf_counter() - t0
                said = self.redact(content.decode("utf-8", "replace"))  # redact, then cut: a cut key would half leak
                if r.status_code in FATAL_HINTS:
                    self.stop.set()  # no other thread should start a request that will fail alike
                    said = said[:300].strip()
                    raise FatalAPIError(f"HTTP {r.status_code} from {scrub_url(self.url)} (model {self.model!r}): "
                                        f"{FATAL_HINTS[r.status_code]}" + ("" if self.api_key else " (no key was sent)")
                                        + (f"\nthe server said: {said}" if said else ""))
                if r.ok:
                    return self.parse(json.loads(content), latency, attempt, failures)
                why = f"HTTP {r.status_code}"
                retry_after = parse_retry_after(r.headers.get("Retry-After"))
                if r.status_code not in RETRY_STATUS and r.status_code < 500:
                    self.stop.set()
                    raise FatalAPIError(f"HTTP {r.status_code} from {scrub_url(self.url)}: {said[:300]}")
            except requests.RequestException as e:  # refused, reset, timed out, past the deadline
                why = type(e).__name__
            except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError) as e:  # not JSON, or fields missing
                why = f"malformed reply ({type(e).__name__})"
            failures.append(why)
            if attempt == self.max_retries or self.stop.is_set():
                break
            delay = retry_after if retry_after is not None else self.backoff * 2 ** attempt * (0.5 + random.random())
            if self.stop.wait(min(delay, self.max_wait)):
                break
        raise RequestFailed(f"{why} (after {attempt} retries)", attempt, failures)

    def parse(self, reply, latency, retries, failures):
        choice = reply["choices"][0]
        text, finish = choice["message"]["content"], choice.get("finish_reason")
        if not isinstance(text, str):
            raise TypeError("no text in the reply")
        usage = reply.get("usage") or {}
        return {"text": self.redact(text), "finish_reason": None if finish is None else self.redact(str(finish)),
                "latency_s": round(latency, 3), "prompt_tokens": int(usage.get("prompt_tokens") or 0),
                "completion_tokens": int(usage.get("completion_tokens") or 0), "retries": retries, "failures": failures}


# -----------------------------------------------------------------------------
# The output file: append-only JSONL, one writer, counts kept beside it


ROW_START = b'{"id": '  # how json.dumps begins every row written here: the mark of our files


def refuse_foreign(path):
    """
    Raise ValueError (naming the file) unless path is missing, empty or this tool's output:
    every line starts as our rows do (the last may be cut anywhere by a kill). So a script or a
    README given as --out is refused before a byte of it changes.
    Example: refuse_foreign("traces/gpt-4o-train.jsonl")  # returns, or raises
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder: give a file name such as {path / 'traces.jsonl'}")
    lines = path.read_bytes().split(b"\n") if path.exists() else []
    for i, line in enumerate(lines, 1):
        cut = i == len(lines)  # no newline after it: possibly cut short by a kill
        if line.strip() and not (line.startswith(ROW_START) or cut and ROW_START.startswith(line)):
            raise ValueError(f"{path}: line {i} is not one teacher.py writes, so the file is not its output "
                             f"and was left untouched; pass another --out")


def read_rows(path, repair=False):
    """
    Rows of an append-only JSONL file. A last line cut off by a kill is left out with a warning
    (and cut from the file when repair is set, so appending can go on); a bad earlier line is
    an error, since only the last line can be half-written. Nothing is cut from a file that is
    not ours or has a bad line: those are errors first.
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
    if keep < len(raw):
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
        self.latencies, self.rejections, self.failures = [], Counter(), Counter()
        self.failed_in_a_row = 0  # requests that failed after all their retries, since the last reply

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
                self.latencies.append(reply["latency_s"])
            if reason:
                self.rejections[reason] += 1
            if row is not None:
                # flushed per line: a kill loses at most the line being written (fsync would guard power loss)
                self.f.write(json.dumps(row, ensure_ascii=False) + "\n")
                self.f.flush()
                self.accepted += 1

    def close(self):
        with self.lock:
            self.f.close()

    def counts(self, price_in, price_out):
        return {"requests": self.requests, "requests_retried": self.retried, "retries": self.retries,
                "rejections": dict(sorted(self.rejections.items())),
                "failed_attempts": dict(sorted(self.failures.items())), "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "lines_written": self.accepted,
                **cost_and_latency(self.prompt_tokens, self.completion_tokens, price_in, price_out, self.latencies)}


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


# -----------------------------------------------------------------------------
# The three jobs: reference traces, teacher traces, the teacher's own score


def generate_reference(problems, out_path):
    """
    The GSM8K reference solutions in the trace format, written offline (atomically) in the
    same JSONL as teacher traces, so every later step can run without an API.
    Example: generate_reference(load_gsm8k("train"), "traces/reference-train.jsonl")
    """
    traces = [reference_to_trace(p.solution) for p in problems]
    write_atomic(out_path, "".join(json.dumps({
        "id": p.id, "question": p.question, "trace": t, "answer": p.answer, "source": "reference", "model": None,
        "sample": 0, "prompt_tokens": 0, "completion_tokens": 0, "latency_s": 0.0}, ensure_ascii=False) + "\n"
        for p, t in zip(problems, traces)))
    # kept as written by GSM8K's authors, false equations included: the summary says how many
    summary = {"mode": "reference", "out": str(out_path), "problems": len(problems), "problems_done": len(problems),
               "traces_in_file": len(problems),
               "traces_with_false_equation": sum(not check_trace(t)["all_hold"] for t in traces)}
    write_atomic(f"{out_path}.summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


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


def solve(p, have, args, client, ledger, shots):
    """
    Ask about one problem until it has --samples distinct accepted traces or --max-attempts requests were made.
    Example: solve(problem, ["an earlier trace"], args, client, ledger, shots)  # run_teacher calls it on each thread
    """
    seen = set(have)
    messages = build_messages(p.question, [s for s in shots if s[0] != p.question][:args.shots])
    for _ in range(args.max_attempts):
        if len(seen) >= args.samples or client.stop.is_set():
            return
        try:
            reply = client.chat(messages, args.temperature, args.max_tokens)
        except RequestFailed as e:
            record_failure(e, args, client, ledger)
            continue
        trace, reason = validate_trace(reply["text"], reply["finish_reason"], p.answer, args.min_equations)
        if reason is None and trace in seen:
            reason = "duplicate"
        row = None
        if reason is None:
            row = {"id": p.id, "question": p.question, "trace": trace, "answer": p.answer, "source": "teacher",
                   "model": args.model, "sample": len(seen), "prompt_tokens": reply["prompt_tokens"],
                   "completion_tokens": reply["completion_tokens"], "latency_s": reply["latency_s"]}
            seen.add(trace)
        ledger.record(reply, reason, row)


def ask_once(p, have, args, client, ledger, shots):
    """
    Ask about one test problem once and keep the reply whatever it says: the teacher's own score.
    Example: ask_once(problem, [], args, client, ledger, shots)  # run_teacher calls it with --eval
    """
    if client.stop.is_set():
        return
    try:
        reply = client.chat(build_messages(p.question, shots[:args.shots]), args.temperature, args.max_tokens)
    except RequestFailed as e:  # no reply to keep: the problem stays missing and a rerun asks again
        record_failure(e, args, client, ledger)
        return
    output = normalize_reply(reply["text"])
    pred = extract_answer(output)
    ledger.record(reply, None, {
        "id": p.id, "question": p.question, "gold": p.answer, "output": output, "pred": pred, "model": args.model,
        "correct": pred == p.answer, "prompt_tokens": reply["prompt_tokens"],
        "completion_tokens": reply["completion_tokens"], "latency_s": reply["latency_s"],
        "finish_reason": reply["finish_reason"]})


def run_teacher(args, problems, client, shots):
    """
    Resume from the output file, ask about every problem not done yet on --workers threads, write the
    summary: this run's requests, tokens and cost, and their totals over every run into the file.
    Example: run_teacher(args, load_gsm8k("train")[:10], client, shots)["total"]["cost_usd"]  # args: see main()
    """
    out, work, need = Path(args.out), (ask_once if args.eval else solve), (1 if args.eval else args.samples)
    have = outputs_so_far(out, args.model)
    todo = [p for p in problems if len(have.get(p.id, [])) < need]
    print(f"{len(problems) - len(todo)} of {len(problems)} problems already done in {out}, asking about {len(todo)}")
    ledger = Ledger(out)
    status, error = ask_all(todo, have, work, args, client, ledger, shots)
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
                        "samples": args.samples, "temperature": args.temperature})
    summary.update({"this_run": this_run, "total": add_totals(before, this_run)})
    write_atomic(summary_path, json.dumps(summary, indent=2) + "\n")
    return summary


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


def ask_all(todo, have, work, args, client, ledger, shots):
    """
    Run work on every problem of todo on --workers threads, printing progress every 30 s; returns
    (status, error): done, interrupted (Ctrl-C) or stopped (an error no retry can pass). The ledger is closed after.
    Example: status, error = ask_all(todo, have, solve, args, client, Ledger(out), shots)
    """
    status, error = "done", None
    pool = ThreadPoolExecutor(args.workers)
    futures = [pool.submit(work, p, have.get(p.id, []), args, client, ledger, shots) for p in todo]
    try:
        t_print = time.time()
        for i, fut in enumerate(as_completed(futures), 1):
            fut.result()  # re-raises FatalAPIError (or a bug) from the worker
            if time.time() - t_print > 30 or i == len(futures):
                t_print = time.time()
                c = ledger.counts(args.price_in, args.price_out)
                print(f"{i}/{len(todo)} problems | {c['lines_written']} lines written | rejected {c['rejections']} | "
                      f"failed attempts {c['failed_attempts']} | {c['prompt_tokens']}+{c['completion_tokens']} tokens "
                      f"${c['cost_usd']:.4f}", flush=True)
    except KeyboardInterrupt:
        status = "interrupted"
    except FatalAPIError as e:
        status, error = "stopped", str(e)
    finally:
        client.stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        ledger.close()
    return status, error


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


def load_teacher_eval(path):
    """
    The teacher's score for evaluate.py: (rows, summary) of an --eval file and the summary
    beside it (rebuilt from the rows if the run was killed before it could write one).
    Example: rows, summary = load_teacher_eval("traces/gpt-4o-eval-test.jsonl"); summary["exact_match"]
    """
    rows = read_rows(path)
    summary_path = Path(f"{path}.summary.json")
    if summary_path.exists():
        return rows, json.loads(summary_path.read_text(encoding="utf-8"))
    return rows, {"model": rows[0].get("model") if rows else None, **eval_scores(rows)}


# -----------------------------------------------------------------------------
# Recorded teachers: outputs that others published for GSM8K test, scored as --eval scores a live one

RECORDED_SHAPES = ("a JSON list of {question, model_prediction} (GSM8K-style '#### N', list position = test line), "
                   "JSONL of {id, input, cot: {generation: [text]}} ('\\boxed{N}', id = test line) or "
                   "JSONL of {question, ground_truth, MODEL: {solution, is_correct}} ('A: N', line = test line)")


def read_recorded(path):
    """
    The outputs in a recorded teacher file, in whichever of the three published shapes it has
    (see RECORDED_SHAPES): (shape, {model: {test line: (question or None, reply or None, the
    publishers' own verdict or None)}}, duplicated ids). A repeated id keeps its first output. Replies come
    back in the form normalize_reply reads; any other shape is an error naming the file.
    Example: shape, models, dups = read_recorded("../shared/data/teachers/gsm8k-test-gpt-4.json"); list(models)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recorded teacher file {path} not found")
    text = path.read_text(encoding="utf-8")
    head, rows = text.lstrip()[:1], []
    # one JSON document (a list), else one JSON value per line
    for i, line in enumerate([text] if head == "[" else text.split("\n"), 1):
        try:
            rows += json.loads(line) if head == "[" else [json.loads(line)] if line.strip() else []
        except ValueError:
            where = path if head == "[" else f"{path}:{i}"
            raise ValueError(f"{where}: not valid JSON, so not a recorded teacher file; expected {RECORDED_SHAPES}") from None
    first = rows[0] if rows and isinstance(rows[0], dict) else {}
    name = re.sub(r"^gsm8k-test-", "", path.stem)  # the shared files are named gsm8k-test-<model>
    gpt3 = [k for k, v in first.items() if isinstance(v, dict) and "solution" in v]
    if head == "[" and "model_prediction" in first:
        shape, models = "gsm8k", [name]
    elif isinstance(first.get("cot"), dict) and "generation" in first["cot"] and "id" in first:
        shape, models = "boxed", [name]
    elif "ground_truth" in first and gpt3:
        shape, models = "gpt3", [f"{name}/{k}" for k in gpt3]
    else:
        raise ValueError(f"{path}: not a recorded teacher file of a known shape; expected {RECORDED_SHAPES}")
    out, dups = {m: {} for m in models}, 0
    for i, row in enumerate(rows):
        try:
            if shape == "gsm8k":
                got = {name: (row["question"], row["model_prediction"], row.get("result"))}
                line = i
            elif shape == "boxed":
                gen, line = row["cot"]["generation"], int(row["id"])
                got = {name: (row.get("input"), gen[0] if gen else None, row["cot"].get("score"))}
            else:  # one output per model; the GPT-3 models close with 'A: N' where GSM8K writes '#### N'
                line = i
                got = {f"{name}/{k}": (row["question"], re.sub(r"(^|\n)A:[ \t]*(?=[^\n]*\s*$)", r"\1#### ",
                                                              row[k]["solution"]), row[k].get("is_correct"))
                       for k in gpt3}
            if any(not isinstance(reply, (str, type(None))) for _, reply, _ in got.values()):
                raise TypeError("a reply that is not text")
        except (KeyError, TypeError, ValueError, IndexError):
            where = f"{path}: list entry {i}" if head == "[" else f"{path}:{i + 1}"
            raise ValueError(f"{where}: not a {shape}-shaped row like the first one; expected {RECORDED_SHAPES}") from None
        for m, value in got.items():
            if line in out[m]:
                dups += 1
                continue
            out[m][line] = value
    return shape, out, dups


def gpt3_params(model):
    """
    Parameters of a model of the GPT-3 file when the name says it and one model alone answers:
    '6b_finetuning' is a 6B model; '_verification' rows are best of 100 samples by another model.
    Example: gpt3_params("gpt3-finetuned/175b_finetuning") == 175e9
    """
    m = re.search(r"/(\d+)b_finetuning$", model)
    return float(m.group(1)) * 1e9 if m else None


def run_recorded(path, model, problems, out=None):
    """
    Score one model of a recorded teacher file as `--eval` scores a live teacher: every reply
    normalized by normalize_reply and its answer extracted by the project's rule, written
    (atomically) as the same eval JSONL and summary, which also holds the publishers' own score.
    Test problems without an output are left out and named by their line in test.jsonl.
    The default out is traces/<model>-eval-test.jsonl.
    Example: run_recorded("../shared/data/teachers/gsm8k-test-gpt-4.json", None, load_gsm8k("test"))["n"] == 1319
    """
    shape, models, dups = read_recorded(path)
    if model is None:
        model = next(iter(models))
        if len(models) > 1:
            print(f"{path} holds {len(models)} models: {', '.join(models)}; scoring {model} (pick one with --model)",
                  file=sys.stderr)
    if model not in models:
        raise ValueError(f"{path} holds {', '.join(models)}, not {model!r}: pass one of them to --model")
    outputs, slug = models[model], re.sub(r"[^\w.-]+", "-", model)
    out = out or f"traces/{slug}-eval-test.jsonl"
    beyond = sorted(i for i in outputs if not 0 <= i < len(problems))
    if beyond:
        raise ValueError(f"{path}: output for test line {beyond[0]}, but test has lines 0-{len(problems) - 1}")
    rows, missing = [], []
    for i, p in enumerate(problems):
        if i not in outputs:
            missing.append(i)
            continue
        question, reply, published = outputs[i]
        if question is not None and question.split() != p.question.split():  # whitespace may differ, words not
            raise ValueError(f"{path}: the output for test line {i} answers another question ({question[:60]!r}); "
                             f"the file must follow GSM8K test's order")
        output = normalize_reply(reply) if reply else ""  # a reply the publisher lost counts as wrong
        pred = extract_answer(output)
        rows.append({"id": p.id, "question": p.question, "gold": p.answer, "output": output, "pred": pred,
                     "model": model, "correct": pred == p.answer, "prompt_tokens": None, "completion_tokens": None,
                     "latency_s": None, "finish_reason": None if reply else "empty", "published_correct": published})
    write_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    summary = {"mode": "recorded", "status": "done", "error": None, "model": model, "recorded": str(path),
               "shape": shape, "models_in_file": list(models), "split": "test", "out": str(out),
               "problems": len(problems), **eval_scores(rows), "missing": len(missing), "missing_lines": missing,
               "empty_outputs": sum(not r["output"] for r in rows), "duplicate_ids_skipped": dups,
               # the publishers' own scoring of the same replies (result, score, is_correct), where every row has it
               "published_exact_match": None if any(r["published_correct"] is None for r in rows) else
               round(sum(bool(r["published_correct"]) for r in rows) / max(1, len(rows)), 4),
               "params": gpt3_params(model)}
    write_atomic(f"{out}.summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


# -----------------------------------------------------------------------------


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


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = parser.add_argument
    a("--source", choices=["teacher", "reference"], default="teacher",
      help="ask the LLM teacher, or write the GSM8K reference solutions offline")
    a("--eval", action="store_true", help="score the teacher: ask once per problem (default: test), keep every reply")
    a("--recorded", metavar="FILE", help="score a file of published teacher outputs on GSM8K test instead of asking "
                                         "an API (see ../shared/data/teachers/README.md); --model picks one model "
                                         "of a file that holds several")
    a("--base-url", help="OpenAI-compatible API root, before /chat/completions (e.g. http://localhost:8000/v1)")
    a("--model", help="model name as the server knows it")
    a("--split", choices=["train", "val", "test"], help="GSM8K split (default: train, or test with --eval)")
    a("--out", help="output JSONL (default: traces/<model>-<split>.jsonl, traces/<model>-eval-<split>.jsonl with "
                    "--eval, traces/reference-<split>.jsonl); the summary goes to <out>.summary.json")
    a("--data-dir", help="GSM8K folder (default: $GSM8K_DIR, else data/gsm8k)")
    a("--limit", type=int, help="only the first N problems of the split")
    a("--samples", type=int, default=1, help="distinct accepted traces to keep per problem")
    a("--max-attempts", type=int, help="requests per problem and run before giving up on it (default: 2 * samples + 2)")
    a("--min-equations", type=int, default=1, help="reject traces with fewer checkable equations (0: off)")
    a("--shots", type=int, default=4, help="worked examples from the train split in the prompt")
    a("--temperature", type=float, help="sampling temperature (default: 0.7, or 0 with --eval)")
    a("--max-tokens", type=int, default=512, help="longest reply in tokens; a reply cut off there is rejected")
    a("--workers", type=int, default=8, help="concurrent requests")
    a("--timeout", type=positive_seconds, default=60.0,
      help="seconds a request may take, first byte sent to last byte received, before it is retried")
    a("--max-retries", type=int, default=6, help="retries of a request on connection errors, timeouts, 408/409/429/5xx")
    a("--backoff", type=float, default=1.0, help="first retry delay in seconds, doubled on each retry, with jitter")
    a("--max-wait", type=float, default=60.0, help="cap in seconds on any retry delay, Retry-After included")
    a("--min-success", type=share, default=0.5,
      help="exit 3 (status failed) if fewer than this share of the problems asked got a trace kept (with --eval: "
           "a reply); 0: never")
    a("--price-in", type=float, default=0.0, help="USD per million prompt tokens, for the cost estimate")
    a("--price-out", type=float, default=0.0, help="USD per million completion tokens, for the cost estimate")
    return parser


def main(argv=None):
    """Run the command line; returns the exit code (0 done, 1 stopped by the API, 2 bad input, 3 too few problems
    succeeded, 130 interrupted). Example: main(["--source", "reference", "--split", "test"])"""
    parser = get_parser()
    args = parser.parse_args(argv)
    args.split = args.split or ("test" if args.eval else "train")
    try:
        if args.recorded:  # every test problem, matched to the file's outputs by its line
            summary = run_recorded(args.recorded, args.model, load_gsm8k("test", args.data_dir), args.out)
            print(json.dumps({k: v for k, v in summary.items() if k != "missing_lines"}))
            if summary["missing"]:
                lines = ", ".join(map(str, summary["missing_lines"][:20])) + (", ..." if summary["missing"] > 20 else "")
                print(f"warning: {args.recorded} has no output for {summary['missing']} test problems, at lines {lines} "
                      f"of test.jsonl (0-based); they are left out of n", file=sys.stderr)
            return 0
        problems = load_gsm8k(args.split, args.data_dir)[:args.limit]
        if args.source == "reference":
            args.out = args.out or f"traces/reference-{args.split}.jsonl"
            refuse_foreign(args.out)  # it is overwritten whole: it must be ours
            print(json.dumps(generate_reference(problems, args.out)))
            return 0
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
        api_key = next((os.environ[v] for v in KEY_ENV_VARS if os.environ.get(v)), None)
        client = Client(args.base_url, args.model, api_key, args.timeout, args.max_retries, args.backoff, args.max_wait)
        # one more than needed, so a train problem that is itself an example can be left out of its prompt
        shots = pick_shots(load_gsm8k("train", args.data_dir), args.shots + 1)
        summary = run_teacher(args, problems, client, shots)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    failed = summary["this_run"]["failed_attempts"]
    if failed and summary["status"] != "failed":  # a failed run's error line says it
        print(f"warning: failed attempts by reason: {failed} (each retried up to --max-retries times)", file=sys.stderr)
    if summary.get("missing"):
        print(f"warning: {summary['missing']} problems got no reply (see request_failed); rerun to ask them again",
              file=sys.stderr)
    if summary["status"] == "stopped":
        print(f"error: {summary['error']}", file=sys.stderr)
        return 1
    if summary["status"] == "failed":
        print(f"error: {summary['error']}", file=sys.stderr)
        return 3
    if summary["status"] == "interrupted":
        print(f"interrupted: every finished line is in {args.out}; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    # Ctrl-C is how a run stops cleanly: keep it so where the shell started us with SIGINT ignored (`cmd &`)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # requests still in flight would hold the interpreter open for up to --timeout, and
    # everything worth keeping is already on disk, so leave without waiting for them
    os._exit(code)
