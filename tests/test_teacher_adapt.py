"""
teacher.py against reasoning models: a real loopback server (tests/fake_llm.py, refuses=...) that
answers as the OpenAI API does for o-series and GPT-5 models (its 400 bodies word for word, usage
with completion_tokens_details, finish_reason "length" with empty content), on the real GSM8K data.

Run: GSM8K_DIR=../shared/data/gsm8k python -m pytest -q tests/test_teacher_adapt.py
"""
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402
import teacher  # noqa: E402
from api_adapt import fold_system, read_refusal  # noqa: E402
from conftest import gsm8k_dir_or_skip_module  # noqa: E402
from fake_llm import FakeLLM, ok, status  # noqa: E402

DATA_DIR = gsm8k_dir_or_skip_module()  # conftest: a missing copy fails under CI, else skips this module

MODEL = "o3-mini"
BY_Q = {p.question: p for p in data.load_gsm8k("train", DATA_DIR)[:20] + data.load_gsm8k("test", DATA_DIR)[:8]}
REASONING_MODEL = ("max_tokens", "temperature", "messages[0].role")  # all that OpenAI's reasoning models refuse
TODAYS_FIELDS = ["model", "messages", "temperature", "max_tokens"]


def solved(q, n, reasoning_tokens=300):
    """A correct reply, as a reasoning model bills it: completion_tokens counts the hidden reasoning too."""
    p = BY_Q[q]
    return ok(f"{p.answer} * {n + 2} = {int(p.answer) * (n + 2)}\n#### {p.answer}",
              completion_tokens=20 + reasoning_tokens, reasoning_tokens=reasoning_tokens)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TEACHER_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setattr(teacher.random, "random", lambda: 0.5)


def cli(capsys, llm, *argv):
    code = teacher.main(["--base-url", llm.url, "--model", MODEL, "--data-dir", str(DATA_DIR), "--backoff", "0.01",
                         "--max-wait", "1", "--timeout", "5", "--out", "t.jsonl", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def summary():
    return json.loads(Path("t.jsonl.summary.json").read_text())


def refused(llm):
    """How many requests the server refused, by the field it refused."""
    return Counter(param for r in llm.requests for param in REASONING_MODEL + ("max_completion_tokens",)
                   if (param == "messages[0].role" and r["body"]["messages"][0]["role"] == "system")
                   or (param == "temperature" and r["body"].get("temperature", 1) != 1)
                   or (param in ("max_tokens", "max_completion_tokens") and param in r["body"]))


def notes(err):
    return [line for line in err.splitlines() if line.startswith("note: ")]


# -----------------------------------------------------------------------------
# Each adaptation alone: one refused request, then every request in the new shape


@pytest.mark.parametrize("field, says", [
    ("max_tokens", "the token cap goes in max_completion_tokens"),
    ("temperature", "the model's default temperature"),
    ("messages[0].role", "the instructions open the first user message")])
def test_each_adaptation_alone_costs_one_round_trip_and_is_kept(capsys, field, says):
    with FakeLLM(solved, refuses=(field,)) as llm:
        code, _, err = cli(capsys, llm, "--split", "train", "--limit", "3", "--workers", "1")
    assert code == 0 and len(Path("t.jsonl").read_text().splitlines()) == 3
    assert len(llm.requests) == 4 and refused(llm)[field] == 1  # the first request only
    first, later = llm.requests[0]["body"], [r["body"] for r in llm.requests[1:]]
    assert list(first) == TODAYS_FIELDS and first["messages"][0]["role"] == "system"
    for body in later:
        assert ("max_completion_tokens" in body) == (field == "max_tokens") and ("max_tokens" in body) != (field == "max_tokens")
        assert ("temperature" in body) == (field != "temperature")
        assert (body["messages"][0]["role"] == "system") == (field != "messages[0].role")
    assert len(notes(err)) == 1 and says in notes(err)[0]
    request = summary()["request"]
    assert request["adaptations"] == [notes(err)[0][len("note: "):]]
    assert request["token_cap_field"] == ("max_completion_tokens" if field == "max_tokens" else "max_tokens")
    assert (summary()["temperature"] == "model's default") == (field == "temperature")
    assert request["instructions"] == ("folded into the first user message" if field == "messages[0].role"
                                       else "system message")


def test_folded_instructions_open_the_first_user_message():
    messages = teacher.build_messages("How many?", [("2 + 2?", "2 + 2 = 4\n#### 4")])
    folded = fold_system(messages)
    assert [m["role"] for m in folded] == ["user", "assistant", "user"]
    assert folded[0]["content"] == teacher.SYSTEM_PROMPT + "\n\n2 + 2?" and folded[-1]["content"] == "How many?"
    assert messages[1]["content"] == "2 + 2?"  # the caller's messages are left as they were
    assert fold_system([{"role": "system", "content": "Be brief."}]) == [{"role": "user", "content": "Be brief."}]


# -----------------------------------------------------------------------------
# All of them together, in both modes: the acceptance runs of issue 27


def test_traces_from_a_reasoning_model_keep_8_and_record_what_was_sent(capsys):
    with FakeLLM(solved, refuses=REASONING_MODEL) as llm:
        code, out, err = cli(capsys, llm, "--split", "train", "--limit", "8", "--price-in", "1", "--price-out", "4")
    rows = [json.loads(x) for x in Path("t.jsonl").read_text().splitlines()]
    assert code == 0 and len(rows) == 8 and len({r["id"] for r in rows}) == 8
    assert all(r["trace"].endswith(f"#### {BY_Q[r['question']].answer}") for r in rows)
    s = summary()
    assert s["status"] == "done" and s["problems_done"] == 8
    assert s["request"]["token_cap_field"] == "max_completion_tokens" and s["temperature"] == "model's default"
    assert s["request"]["instructions"] == "folded into the first user message" and len(s["request"]["adaptations"]) == 3
    assert len(notes(err)) == 3  # each said once, whichever thread met it
    run = s["this_run"]
    assert run["reasoning_tokens"] == 8 * 300 and run["completion_tokens"] == 8 * 320  # reasoning is inside completion
    assert run["cost_usd"] == round((run["prompt_tokens"] * 1 + 8 * 320 * 4) / 1e6, 6)  # so counted once in the cost
    assert s["total"]["reasoning_tokens"] == 8 * 300 and "(2400 of them reasoning)" in out
    # each question asked again at most once per adaptation: at most 3 refusals before its answer
    assert all(n <= 4 for n in Counter(r["question"] for r in llm.requests).values())
    assert len([r for r in llm.requests if not any(refused_here(r))]) == 8


def refused_here(r):
    body = r["body"]
    return ["max_tokens" in body, body.get("temperature", 1) != 1, body["messages"][0]["role"] == "system"]


def test_eval_of_a_reasoning_model_works_the_same_way(capsys):
    with FakeLLM(solved, refuses=REASONING_MODEL) as llm:
        code, out, err = cli(capsys, llm, "--eval", "--limit", "4", "--workers", "1")
    s = summary()
    assert code == 0 and (s["n"], s["correct"], s["missing"]) == (4, 4, 0)
    assert len(llm.requests) == 4 + 3  # the first problem's three refusals, then one request each
    assert [list(r["body"]) for r in llm.requests[3:]] == [["model", "messages", "max_completion_tokens"]] * 4
    assert s["request"]["temperature"] == "model's default" and "0.0" in s["request"]["adaptations"][1]
    assert s["this_run"]["reasoning_tokens"] == 4 * 300 and len(notes(err)) == 3


# -----------------------------------------------------------------------------
# What it cannot adapt to stops the run in one line; an empty cut-off reply is named


def test_a_server_refusing_both_cap_fields_stops_in_one_line_without_looping(capsys):
    with FakeLLM(solved, refuses=("max_tokens", "max_completion_tokens")) as llm:
        code, _, err = cli(capsys, llm, "--split", "train", "--limit", "3", "--workers", "1")
    assert code == 1 and len(llm.requests) == 2  # max_tokens, then max_completion_tokens once: no loop
    error = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and len(err.split("error: ", 1)[1].splitlines()) == 1
    assert "refuses both max_tokens and max_completion_tokens" in error[0] and "Unsupported parameter" in error[0]
    assert summary()["status"] == "stopped"


def test_a_refused_parameter_the_teacher_needs_is_named_in_one_line(capsys):
    body = json.dumps({"error": {"message": "Unsupported value: 'model' does not support\n'o3-mini' here.",
                                 "type": "invalid_request_error", "param": "model", "code": "unsupported_value"}})
    with FakeLLM(lambda q, n: status(400, body)) as llm:
        code, _, err = cli(capsys, llm, "--eval", "--limit", "2", "--workers", "1")
    assert code == 1 and len(llm.requests) == 1
    (line,) = [x for x in err.splitlines() if x.startswith("error: ")]
    assert "refuses the parameter 'model'" in line and "does not support 'o3-mini' here" in line
    assert len(err.split("error: ", 1)[1].splitlines()) == 1


def test_a_reply_cut_off_before_any_text_is_named_and_advice_given(capsys):
    def script(q, n):  # the first reply spends the whole cap on reasoning; null content as some servers send
        return ok(None if n == 0 else "", "length", completion_tokens=64, reasoning_tokens=64) if n < 2 else solved(q, n)
    with FakeLLM(script, refuses=("max_tokens",)) as llm:
        code, _, err = cli(capsys, llm, "--split", "train", "--limit", "2", "--workers", "1", "--max-tokens", "64")
    assert code == 0 and summary()["this_run"]["rejections"] == {"cut_off_before_any_text": 3}
    assert "cut off at --max-tokens 64 before any text" in err and "raise --max-tokens" in err
    with FakeLLM(lambda q, n: ok("", "length", completion_tokens=64, reasoning_tokens=64)) as llm:
        Path("t.jsonl").unlink()
        code, _, err = cli(capsys, llm, "--eval", "--limit", "2", "--min-success", "0")
    rows = [json.loads(x) for x in Path("t.jsonl").read_text().splitlines()]
    assert code == 0 and [(r["output"], r["finish_reason"], r["correct"]) for r in rows] == [("", "length", False)] * 2
    assert "raise --max-tokens" in err and summary()["this_run"]["reasoning_tokens"] == 128


# -----------------------------------------------------------------------------
# Today's servers (llama.cpp, vLLM, Ollama, non-reasoning models): exactly the requests as before


def test_a_server_that_takes_every_field_gets_todays_requests_and_no_extra_round_trip(capsys):
    with FakeLLM(lambda q, n: ok(f"2 + 2 = 4\n#### {BY_Q[q].answer}")) as llm:
        code, out, err = cli(capsys, llm, "--split", "train", "--limit", "4", "--temperature", "0.5", "--max-tokens", "300")
    assert code == 0 and len(llm.requests) == 4 and not notes(err)
    for r in llm.requests:
        body = r["body"]
        assert list(body) == TODAYS_FIELDS and (body["model"], body["temperature"], body["max_tokens"]) == (MODEL, 0.5, 300)
        assert body["messages"] == teacher.build_messages(r["question"], [m for m in teacher.pick_shots(
            data.load_gsm8k("train", DATA_DIR), 5) if m[0] != r["question"]][:4])
    s = summary()
    assert s["request"] == {"token_cap_field": "max_tokens", "max_tokens": 300, "temperature": 0.5,
                            "instructions": "system message", "adaptations": []}
    assert s["this_run"]["reasoning_tokens"] == 0 and "of them reasoning" not in out


def test_read_refusal_reads_only_a_named_unsupported_parameter():
    said = json.dumps({"error": {"message": "Unsupported parameter: 'max_tokens'", "param": "max_tokens",
                                 "code": "unsupported_parameter", "type": "invalid_request_error"}})
    assert read_refusal(said).param == "max_tokens"
    assert read_refusal('{"error": {"message": "bad", "param": "max_tokens"}}') is None  # no code: not a refusal
    assert read_refusal("<html>400</html>") is None and read_refusal('{"error": "x"}') is None
