"""
Hardening, round 4 (issue 36), the teacher side: teacher.py and teacher.py --write-problems
(problems.py) against a real loopback server (tests/fake_llm.py), on the real GSM8K data. Bad
numbers are usage errors, a bad reply or usage block fails or is flagged in one line, a second
run on the same --out is refused while the first runs, and SIGTERM keeps the summary.

Run: GSM8K_DIR=../shared/data/gsm8k python -m pytest -q tests/test_teacher_hardening.py
"""
import gzip
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402
import problems  # noqa: E402
import teacher  # noqa: E402
from conftest import gsm8k_dir_or_skip_module  # noqa: E402
from fake_llm import FakeLLM, counted, ok, status, with_usage  # noqa: E402

DATA_DIR = gsm8k_dir_or_skip_module()  # conftest: a missing copy fails under CI, else skips this module

SECRET = "sk-test-SECRET123"
MODEL = "fake-72b"
BY_Q = {p.question: p for p in data.load_gsm8k("train", DATA_DIR)[:20]}

# problems the writer writes, each with the solution the solver gives alone (as tests/test_problems.py)
GOOD = [("A florist packs 14 bouquets with 9 tulips in each and gives away 26 tulips to a school fair. "
         "How many tulips are left in the bouquets?", "14 * 9 = 126 tulips are packed.\n126 - 26 = 100 tulips are left.\n#### 100"),
        ("Priya rides her scooter 7 kilometers to the library and 5 kilometers back home every Saturday for 6 weeks. "
         "How many kilometers does she ride in all?", "Each Saturday she rides 7 + 5 = 12 kilometers.\n12 * 6 = 72\n#### 72")]
SOLUTIONS = dict(GOOD)
WRITE_ASK = "new problems of the same kind"


def good(q, n=0):
    """A correct reply to the train problem q."""
    a = BY_Q[q].answer
    return ok(f"{a} + {n} = {int(a) + n}\n{int(a) + n} - {n} = {a}\n#### {a}")


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    """Every test runs in its own folder with the sentinel key set, and must leave it in no file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEACHER_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("GSM8K_DIR", str(DATA_DIR))
    monkeypatch.setattr(teacher.random, "random", lambda: 0.5)
    yield
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f"API key leaked into {f}"


def teach(capsys, url, *argv):
    """teacher.main in-process: (exit code, stdout, stderr); a usage error's SystemExit code is returned too."""
    try:
        code = teacher.main(["--base-url", url, "--model", MODEL, "--data-dir", str(DATA_DIR), "--backoff", "0.01",
                             "--max-wait", "1", "--timeout", "5", "--workers", "1", "--out", "t.jsonl", *argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    return code, out, err


def write(capsys, url, n, *argv):
    """problems.main (teacher.py --write-problems) in-process: (exit code, stdout, stderr)."""
    try:
        code = problems.main(write_args(url, n, *argv))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    return code, out, err


def write_args(url, n, *more):
    return ["--write-problems", str(n), "--base-url", url, "--model", MODEL, "--data-dir", str(DATA_DIR),
            "--out", "w.jsonl", "--backoff", "0.01", "--max-wait", "1", "--timeout", "5", "--workers", "1", *more]


def writer_server(reply="\n---\n".join(f"Question: {q}\n{t}" for q, t in GOOD), solver_delay=0.0, refuses=()):
    """A FakeLLM that writes `reply` to every writer request and solves each question as SOLUTIONS says."""
    def script(question, n):
        if WRITE_ASK in question:
            return counted(reply)
        return counted(SOLUTIONS.get(question, "I cannot solve this."), delay=solver_delay)
    return FakeLLM(script, refuses=refuses)


def summary(path):
    return json.loads(Path(f"{path}.summary.json").read_text())


def error_lines(err):
    return [line for line in err.splitlines() if line.startswith("error: ") or "usage:" in line or "Traceback" in line]


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


# -----------------------------------------------------------------------------
# 6, 7, 9, 10 and --max-requests 0: bad numbers are usage errors, before any request


@pytest.mark.parametrize("flag, value", [("--max-retries", "-1"), ("--shots", "-1"), ("--temperature", "nan"),
                                         ("--temperature", "inf"), ("--temperature", "-0.5"), ("--price-in", "nan"),
                                         ("--price-in", "-2"), ("--price-out", "inf")])
@pytest.mark.parametrize("tool", ["teacher", "write"])
def test_bad_numbers_are_usage_errors_before_any_request(capsys, tool, flag, value):
    with FakeLLM(lambda q, n: status(500)) as llm:
        if tool == "teacher":
            code, _, err = teach(capsys, llm.url, "--limit", "1", flag, value)
        else:
            code, _, err = write(capsys, llm.url, 1, flag, value)
        assert llm.count() == 0
    assert code == 2 and flag in err and "Traceback" not in err, err
    assert not Path("t.jsonl.summary.json").exists() and not Path("w.jsonl.summary.json").exists()


@pytest.mark.parametrize("flag, value", [("--max-requests", "0"), ("--solver-temperature", "nan"),
                                         ("--examples", "0"), ("--max-retries", "-3")])
def test_write_problems_bad_numbers_are_usage_errors(capsys, flag, value):
    with writer_server() as llm:
        code, _, err = write(capsys, llm.url, 1, flag, value)
        assert llm.count() == 0  # --max-requests 0 used to mean 10 x N
    assert code == 2 and flag in err, err


def test_write_problems_examples_beyond_the_pool_is_refused_in_one_line(capsys):
    with writer_server() as llm:
        code, _, err = write(capsys, llm.url, 1, "--examples", "100000")
        assert llm.count() == 0
    assert code == 2 and "Traceback" not in err and "--examples 100000" in err, err
    assert len(error_lines(err)) == 1


# -----------------------------------------------------------------------------
# 7: --shots 0 means no worked example


def test_shots_zero_sends_no_worked_example(capsys):
    with FakeLLM(lambda q, n: good(q, n)) as llm:
        code, _, err = teach(capsys, llm.url, "--limit", "2", "--shots", "0")
        sizes = [len(r["body"]["messages"]) for r in llm.requests]
    assert code == 0 and sizes == [2, 2], (sizes, err)  # the instructions and the question
    with writer_server() as llm:
        code, _, err = write(capsys, llm.url, 1, "--shots", "0")
        solver = [len(r["body"]["messages"]) for r in llm.requests if WRITE_ASK not in r["question"]]
    assert code == 0 and solver == [2], (solver, err)
    assert teacher.pick_shots(data.load_gsm8k("train", DATA_DIR)[:200], 0) == []


# -----------------------------------------------------------------------------
# 6: a reply that unpacks to far more than any reply can be, and a summary path that is a folder


def test_a_gzip_reply_that_unpacks_too_large_fails_its_request_with_a_reason(capsys):
    p = next(iter(BY_Q.values()))
    reply = {"choices": [{"message": {"role": "assistant", "content": f"{p.answer} + 0 = {p.answer}\n#### {p.answer}"},
                          "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    bomb = gzip.compress(json.dumps(reply).encode() + b" " * (48 << 20), 1)  # 48 MiB of padding, ~50 kB packed
    with FakeLLM(lambda q, n: status(200, bomb, {"Content-Encoding": "gzip"})) as llm:
        code, _, err = teach(capsys, llm.url, "--limit", "1", "--max-attempts", "1", "--min-success", "0")
        asked = llm.count()
    failed = summary("t.jsonl")["this_run"]["failed_attempts"]
    assert code == 0 and asked == 1 and list(failed) == ["reply over 32 MiB unpacked"], (failed, err)
    assert not Path("t.jsonl").read_text()


@pytest.mark.parametrize("tool", ["teacher", "write"])
def test_a_summary_path_that_is_a_folder_is_refused_before_any_request(capsys, tool):
    out = "t.jsonl" if tool == "teacher" else "w.jsonl"
    Path(f"{out}.summary.json").mkdir()
    with writer_server() as llm:
        code, _, err = teach(capsys, llm.url, "--limit", "1") if tool == "teacher" else write(capsys, llm.url, 1)
        assert llm.count() == 0
    assert code == 2 and f"{out}.summary.json" in err and "folder" in err and len(error_lines(err)) == 1, err


# -----------------------------------------------------------------------------
# 9: cost from bad usage blocks


@pytest.mark.parametrize("usage, kind", [
    (None, "usage_missing"),
    ({"prompt_tokens": -5000, "completion_tokens": -100}, "usage_invalid"),
    ({"prompt_tokens": 100, "completion_tokens": 20, "completion_tokens_details": {"reasoning_tokens": 500}}, "usage_invalid")])
def test_a_bad_usage_block_is_flagged_once_and_costs_nothing_negative(capsys, usage, kind):
    with FakeLLM(lambda q, n: with_usage(good(q)["text"], usage)) as llm:
        code, _, err = teach(capsys, llm.url, "--limit", "3", "--price-in", "2", "--price-out", "8")
    s = summary("t.jsonl")["this_run"]
    assert code == 0 and s["lines_written"] == 3 and s[kind] == 3, (s, err)
    assert s["cost_usd"] >= 0 and s["prompt_tokens"] >= 0 and s["reasoning_tokens"] <= s["completion_tokens"]
    warnings = [line for line in err.splitlines() if line.startswith("warning:") and "usage" in line]
    assert len(warnings) == 1 and kind in warnings[0], err


def test_a_good_usage_block_is_counted_as_before(capsys):
    with FakeLLM(lambda q, n: good(q)) as llm:
        code, _, err = teach(capsys, llm.url, "--limit", "2", "--price-in", "2", "--price-out", "8")
    s = summary("t.jsonl")["this_run"]
    assert code == 0 and (s["prompt_tokens"], s["completion_tokens"], s["usage_missing"], s["usage_invalid"]) == (200, 40, 0, 0)
    assert s["cost_usd"] == round((200 * 2 + 40 * 8) / 1e6, 6) and "usage" not in err


# -----------------------------------------------------------------------------
# 8: reasoning models in --write-problems


def test_write_problems_counts_replies_cut_off_before_any_text_and_advises(capsys):
    def script(q, n):
        return ok(None, "length", completion_tokens=64, reasoning_tokens=64)
    with FakeLLM(script, refuses=("max_tokens",)) as llm:
        code, out, err = write(capsys, llm.url, 2, "--max-requests", "4", "--max-tokens", "64")
    s = summary("w.jsonl")
    assert code == 3 and s["this_run"]["rejections"] == {"cut_off_before_any_text": 4}, (s, err)
    assert "rejected: cut_off_before_any_text 4" in out
    assert "cut off at --max-tokens 64 before any text" in err and "raise --max-tokens" in err
    assert s["request"]["token_cap_field"] == "max_completion_tokens" and s["request"]["max_tokens"] == 64


def test_write_problems_says_each_adaptation_once_and_records_the_requests(capsys):
    with writer_server(refuses=("max_tokens",)) as llm:
        code, _, err = write(capsys, llm.url, 2)
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert code == 0 and len(notes) == 1 and "max_completion_tokens" in notes[0], err
    s = summary("w.jsonl")
    assert s["request"]["token_cap_field"] == s["solver_request"]["token_cap_field"] == "max_completion_tokens"
    assert s["request"]["adaptations"] and s["solver_request"]["max_tokens"] == 512


# -----------------------------------------------------------------------------
# Low items of --write-problems: a dead server's reasons, another solver on resume, one warning, SIGTERM,
# invisible characters


def test_write_problems_against_a_dead_server_names_the_reasons(capsys):
    code, _, err = write(capsys, closed_port_url(), 2, "--max-retries", "0")
    last = err.strip().splitlines()[-1]
    assert code == 3 and last.startswith("error: the last 2 requests all failed") and "ConnectionError" in last, err


def test_a_resume_with_another_solver_model_is_refused(capsys):
    with writer_server() as llm:
        assert write(capsys, llm.url, 1)[0] == 0
        n = llm.count()
        code, _, err = write(capsys, llm.url, 2, "--solver-model", "another-solver")
        assert llm.count() == n
    assert code == 2 and "--solver-model" in err and "another --out" in err and len(error_lines(err)) == 1, err


def test_the_cut_off_last_line_warning_is_printed_once(capsys):
    with writer_server() as llm:
        assert write(capsys, llm.url, 1)[0] == 0
        with open("w.jsonl", "ab") as f:
            f.write(b'{"id": "written-00001", "question": "A rob')
        code, _, err = write(capsys, llm.url, 1)
    assert code == 0 and err.count("cut-off last line") == 1, err


def test_zero_width_and_bidi_characters_are_stripped_from_written_problems(capsys):
    (q, t), hidden = GOOD[0], "\u202e\u200b\u2066\ufeff"
    dirty = q.replace("florist", f"flo{hidden}rist").replace("tulips", "tu\u200dlips", 1)
    with writer_server(reply=f"Question: {dirty}\n{t.replace('126', '12' + chr(0x200b) + '6', 1)}") as llm:
        code, _, err = write(capsys, llm.url, 1, "--max-requests", "4")
    rows = [json.loads(x) for x in Path("w.jsonl").read_text().splitlines()]
    assert code == 0 and [(r["question"], r["trace"]) for r in rows] == [(q, t)], err


@pytest.mark.parametrize("tool", ["write", "teacher"])
def test_sigterm_stops_the_run_with_its_summary(tool):
    out, first = ("w.jsonl", None) if tool == "write" else ("t.jsonl", next(iter(BY_Q)))

    def script(q, n):  # the writer's problems solved slowly; teacher.py's first problem answered, the rest held
        if tool == "write":
            return counted(SOLUTIONS.get(q, "x"), delay=0.4) if WRITE_ASK not in q else counted(
                "\n---\n".join(f"Question: {q}\n{t}" for q, t in GOOD))
        return good(q) if q == first else {**good(q), "delay": 60}
    with FakeLLM(script) as llm:
        argv = write_args(llm.url, 50) if tool == "write" else [
            "--base-url", llm.url, "--model", MODEL, "--data-dir", str(DATA_DIR), "--limit", "5", "--workers", "1",
            "--timeout", "90", "--out", out]
        with open("log.txt", "w") as log:
            proc = subprocess.Popen([sys.executable, str(ROOT / "teacher.py"), *argv],
                                    stdout=log, stderr=log, env={**os.environ, "TEACHER_API_KEY": SECRET})
            deadline = time.time() + 120
            while time.time() < deadline and proc.poll() is None and not (
                    Path(out).exists() and Path(out).read_text().count("\n") >= 1):
                time.sleep(0.02)
            assert proc.poll() is None, Path("log.txt").read_text()[-2000:]
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(30)
    log = Path("log.txt").read_text()
    assert rc == 143, log[-2000:]
    s = summary(out)
    assert s["status"] == "interrupted" and s["this_run"]["requests"] >= 1 and "rerun the same command" in log
    assert s["total"]["requests"] == s["this_run"]["requests"]  # the run's cost is in the totals


# -----------------------------------------------------------------------------
# 5: one run per --out


@pytest.mark.parametrize("tool", ["write", "teacher"])
def test_a_second_run_on_the_same_out_is_refused_while_the_first_runs(capsys, tool):
    out = "w.jsonl" if tool == "write" else "t.jsonl"
    hold, held = {"n": itertools.count()}, threading.Event()  # held: the first run's next request has arrived

    def script(q, n):
        if WRITE_ASK in q:
            return counted("\n---\n".join(f"Question: {q}\n{t}" for q, t in GOOD))
        first = next(hold["n"]) == 0
        held.set() if not first else None
        if q in SOLUTIONS:
            return counted(SOLUTIONS[q], delay=0 if first else 30)
        return good(q) if first else {**good(q), "delay": 30}
    with FakeLLM(script) as llm:
        argv = write_args(llm.url, 2) if tool == "write" else [
            "--base-url", llm.url, "--model", MODEL, "--data-dir", str(DATA_DIR), "--limit", "3", "--workers", "1",
            "--timeout", "60", "--out", out]
        with open("log.txt", "w") as log:
            proc = subprocess.Popen([sys.executable, str(ROOT / "teacher.py"), *argv], stdout=log, stderr=log,
                                    env={**os.environ, "TEACHER_API_KEY": SECRET})
            deadline = time.time() + 120  # the first has one line written and its next request held
            while time.time() < deadline and proc.poll() is None and not (
                    Path(out).exists() and Path(out).read_text().count("\n") == 1):
                time.sleep(0.02)
            try:
                assert proc.poll() is None, Path("log.txt").read_text()[-2000:]
                held.wait(120)  # counted only then: the first run's own next request is not the second run's
                n = llm.count()
                fast = ("--max-retries", "0", "--timeout", "2")  # before the fix, the second run's requests were held
                code, _, err = (write(capsys, llm.url, 2, *fast) if tool == "write"
                                else teach(capsys, llm.url, "--limit", "3", "--max-attempts", "1", *fast))
                asked = llm.count() - n
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(30)
    assert code == 2 and asked == 0 and "in use" in err and out in err and len(error_lines(err)) == 1, err
    assert Path(out).read_text().count("\n") == 1  # nothing duplicated
