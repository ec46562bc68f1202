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
    python teacher.py --write-problems 100 --base-url URL --model M --out written.jsonl    # new problems (problems.py)

The API key is read from $TEACHER_API_KEY, else $OPENAI_API_KEY; local servers need none.
Requests send max_tokens and a temperature, as every server takes them; a model that refuses one
(a reasoning model) has the request adapted once, for the whole run (see api_adapt.py).
Exit codes: 0 done, 1 stopped by the API (400/401/403/404), 2 bad input (or --out in use by another
run), 3 too few problems succeeded (--min-success), 130 interrupted (143 after SIGTERM: the summary
is written as on Ctrl-C).
"""
import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import requests

from api_adapt import ParameterRefused, RequestShape, read_refusal, refusal_line
from cli_checks import arg_number
from data import extract_answer, load_gsm8k
from download import iter_body
from recorded import generate_reference, score_recorded
from replies import normalize_reply, validate_trace
from teacher_http import ReplyTooLarge, parse_retry_after, read_capped, read_usage, scrub_url, secret_forms
from teacher_ledger import CUT_OFF_EMPTY, Ledger, lock_output, outputs_so_far, progress_line, refuse_foreign
from teacher_run import (check_teacher_args, exit_code, positive_seconds, record_failure, share, stop_on_sigterm,
                         write_summary)
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
    the first n whose traces are short and have two to four equations that all hold (none for n 0).
    Example: shots = pick_shots(load_gsm8k("train"), 5)
    """
    shots = []
    for p in train:
        if len(shots) >= n:
            break
        trace = reference_to_trace(p.solution)
        c = check_trace(trace)
        if 2 <= c["n_steps"] <= 4 and c["all_hold"] and len(trace) < 400:
            shots.append((p.question, trace))
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


class Client:
    """
    POST {base_url}/chat/completions with retries: connection errors, timeouts, 408, 409, 429,
    5xx and malformed replies are retried with exponential backoff and jitter (Retry-After
    honoured, capped at max_wait); 400, 401, 403, 404 (and any other 4xx) raise FatalAPIError,
    except a 400 refusing a parameter the request can do without (see chat and api_adapt.py).
    A reply over 32 MiB unpacked fails its request at once (teacher_http.read_capped).
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
        self.shape = RequestShape()  # the fields every request sends, adapted to what the server refuses

    def redact(self, text):
        for secret in self.secrets:
            text = text.replace(secret, "[API key]")
        return text

    def chat(self, messages, temperature, max_tokens):
        """
        The reply to one request. A model that refuses a parameter (a reasoning model refuses
        max_tokens, a temperature, the system role) gets the request reshaped once per refusal
        and asked again; the shape is kept for the run, so later requests take no extra round trip.
        """
        adapted = set()  # the adaptations this request has made: each at most once
        while True:
            body = self.shape.body(self.model, messages, temperature, max_tokens)
            try:
                return self.post(body)
            except ParameterRefused as refusal:
                if not self.shape.adapt(refusal, body, adapted):
                    self.stop.set()
                    raise FatalAPIError(f"HTTP 400 from {scrub_url(self.url)} (model {self.model!r}): "
                                        f"{refusal_line(refusal, adapted)}") from None

    def post(self, body):
        """POST one request body, retrying what may pass; a refused parameter is raised as ParameterRefused."""
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        failures = []  # why each try failed: counted by reason in the summary
        for attempt in range(self.max_retries + 1):
            retry_after = None
            t0 = time.perf_counter()
            try:
                # requests' timeout bounds each socket read, so a server sending a byte a second
                # would hold it for ever: stream the body and hold the whole try to a deadline
                deadline = time.monotonic() + self.timeout
                with self.local.session.post(self.url, json=body, headers=headers, timeout=self.timeout, stream=True) as r:
                    content = read_capped(iter_body(r, deadline))
                latency = time.perf_counter() - t0
                said = self.redact(content.decode("utf-8", "replace"))  # redact, then cut: a cut key would half leak
                if r.status_code == 400 and (refusal := read_refusal(said)):
                    raise refusal  # chat() may reshape the request and ask again
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
            except ReplyTooLarge as e:  # asking again would fetch as much again
                why = str(e)
                failures.append(why)
                break
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
        if text is None and finish == "length":  # the cap was spent on hidden reasoning before any text
            text = ""
        if not isinstance(text, str):
            raise TypeError("no text in the reply")
        # a reasoning model's hidden tokens: billed, and already counted in completion_tokens; a usage
        # block that is missing or invalid counts nothing and is flagged (the Ledger warns once)
        prompt, completion, reasoning, usage_problem = read_usage(reply.get("usage"))
        return {"text": self.redact(text), "finish_reason": None if finish is None else self.redact(str(finish)),
                "latency_s": round(latency, 3), "prompt_tokens": prompt, "completion_tokens": completion,
                "reasoning_tokens": reasoning, "usage_problem": usage_problem, "retries": retries, "failures": failures}


# -----------------------------------------------------------------------------
# The loop: ask about every problem on --workers threads, keep what passes

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
        if reason == "truncated" and not reply["text"].strip():
            reason = CUT_OFF_EMPTY  # the reasoning spent the cap: the summary advises a larger --max-tokens
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
    cut_off_empty = reply["finish_reason"] == "length" and not output  # counted, so the summary can advise
    ledger.record(reply, CUT_OFF_EMPTY if cut_off_empty else None, {
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
    request = client.shape.record(args.temperature, args.max_tokens)  # what was sent, after any adaptation
    return write_summary(args, problems, todo, have, ledger, status, error, request)


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
                print(progress_line(i, len(todo), c), flush=True)
    except KeyboardInterrupt:
        status = "interrupted"
    except FatalAPIError as e:
        status, error = "stopped", str(e)
    finally:
        client.stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        ledger.close()
    return status, error


# -----------------------------------------------------------------------------


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
    a("--limit", type=arg_number(int, at_least=1), help="only the first N problems of the split")
    a("--samples", type=arg_number(int, at_least=1), default=1, help="distinct accepted traces to keep per problem")
    a("--max-attempts", type=arg_number(int, at_least=1),
      help="requests per problem and run before giving up on it (default: 2 * samples + 2)")
    a("--min-equations", type=arg_number(int, at_least=0), default=1,
      help="reject traces with fewer checkable equations (0: off)")
    a("--shots", type=arg_number(int, at_least=0), default=4, help="worked examples from the train split in the prompt (0: none)")
    a("--temperature", type=arg_number(float, at_least=0), help="sampling temperature (default: 0.7, or 0 with --eval; none for a model that "
                                         "takes only its default)")
    a("--max-tokens", type=arg_number(int, at_least=1), default=512, help="longest reply in tokens, a reasoning model's hidden reasoning "
                                                  "included; a reply cut off there is rejected")
    a("--workers", type=arg_number(int, at_least=1), default=8, help="concurrent requests")
    a("--timeout", type=positive_seconds, default=60.0,
      help="seconds a request may take, first byte sent to last byte received, before it is retried")
    a("--max-retries", type=arg_number(int, at_least=0), default=6,
      help="retries of a request on connection errors, timeouts, 408/409/429/5xx")
    a("--backoff", type=arg_number(float, at_least=0), default=1.0,
      help="first retry delay in seconds, doubled on each retry, with jitter")
    a("--max-wait", type=arg_number(float, at_least=0), default=60.0,
      help="cap in seconds on any retry delay, Retry-After included")
    a("--min-success", type=share, default=0.5,
      help="exit 3 (status failed) if fewer than this share of the problems asked got a trace kept (with --eval: "
           "a reply); 0: never")
    a("--price-in", type=arg_number(float, at_least=0), default=0.0, help="USD per million prompt tokens, for the cost estimate")
    a("--price-out", type=arg_number(float, at_least=0), default=0.0,
      help="USD per million completion tokens, for the cost estimate")
    return parser


def main(argv=None):
    """Run the command line; returns the exit code (0 done, 1 stopped by the API, 2 bad input, 3 too few problems
    succeeded, 130 interrupted). Example: main(["--source", "reference", "--split", "test"])"""
    argv = sys.argv[1:] if argv is None else argv
    if any(a.split("=")[0] == "--write-problems" for a in argv):  # new problems: problems.py, which imports this file
        os.execv(sys.executable, [sys.executable, str(Path(__file__).with_name("problems.py")), *argv])
    parser = get_parser()
    args = parser.parse_args(argv)
    args.split = args.split or ("test" if args.eval else "train")
    try:
        if args.recorded:  # every test problem, matched to the file's outputs by its line
            return score_recorded(args)
        problems = load_gsm8k(args.split, args.data_dir)[:args.limit]
        if args.source == "reference":
            args.out = args.out or f"traces/reference-{args.split}.jsonl"
            refuse_foreign(args.out)  # it is overwritten whole: it must be ours
            print(json.dumps(generate_reference(problems, args.out)))
            return 0
        check_teacher_args(parser, args)
        refuse_foreign(args.out)  # before the lock and any request: a bad --out (or summary path) is said at once
        api_key = next((os.environ[v] for v in KEY_ENV_VARS if os.environ.get(v)), None)
        client = Client(args.base_url, args.model, api_key, args.timeout, args.max_retries, args.backoff, args.max_wait)
        # one more than needed, so a train problem that is itself an example can be left out of its prompt
        shots = pick_shots(load_gsm8k("train", args.data_dir), args.shots + 1)
        with lock_output(args.out):  # a second run on this --out is refused while this one runs
            summary = run_teacher(args, problems, client, shots)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return exit_code(summary, args.out)


if __name__ == "__main__":
    # Ctrl-C is how a run stops cleanly: keep it so where the shell started us with SIGINT ignored (`cmd &`)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    terminated = stop_on_sigterm()  # SIGTERM stops the run as Ctrl-C does: the summary keeps its cost
    code = main()
    code = 143 if code == 130 and terminated.is_set() else code
    sys.stdout.flush()
    sys.stderr.flush()
    # requests still in flight would hold the interpreter open for up to --timeout, and
    # everything worth keeping is already on disk, so leave without waiting for them
    os._exit(code)
