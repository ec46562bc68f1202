"""
problems.py (teacher.py --write-problems) against a real HTTP server (tests/fake_llm.py) on
127.0.0.1 that writes problems of every kind, and train.py --extra-problems on what it kept,
on the real GSM8K data ($GSM8K_DIR).

Run: GSM8K_DIR=../shared/data/gsm8k python -m pytest -q tests/test_problems.py
"""
import itertools
import json
import re
import signal
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
import extra_problems  # noqa: E402
import near_copies  # noqa: E402
import problems  # noqa: E402
from files import sha256_file  # noqa: E402
from traces import check_trace, reference_to_trace  # noqa: E402
from conftest import gsm8k_dir_or_skip_module  # noqa: E402
from fake_llm import FakeLLM, counted  # noqa: E402
from test_train import run_train  # noqa: E402

DATA_DIR = gsm8k_dir_or_skip_module()  # conftest: a missing copy fails under CI, else skips this module

SECRET = "sk-test-SECRET123"
MODEL = "fake-writer"


def gsm8k_story(split):
    """A long question of the split whose reference solution checks, verbatim and with its first name changed."""
    for p in data.load_gsm8k(split, DATA_DIR):
        trace, name = reference_to_trace(p.solution), p.question.split()[0].strip("’'s,")
        if check_trace(trace)["all_hold"] and len(p.question.split()) >= 30 and name.istitle() and name not in ("A", "The"):
            return (p.question, trace), (re.sub(rf"\b{name}\b", "Zorblax", p.question), trace)


GOOD = [("A florist packs 14 bouquets with 9 tulips in each and gives away 26 tulips to a school fair. "
         "How many tulips are left in the bouquets?", "14 * 9 = 126 tulips are packed.\n126 - 26 = 100 tulips are left.\n#### 100"),
        ("Priya rides her scooter 7 kilometers to the library and 5 kilometers back home every Saturday for 6 weeks. "
         "How many kilometers does she ride in all?", "Each Saturday she rides 7 + 5 = 12 kilometers.\n12 * 6 = 72\n#### 72"),
        ("A robot vacuum cleans 3 rooms an hour. The museum has 48 rooms and two such robots that start together at noon. "
         "How many hours do they need to clean every room?", "Two robots clean 3 * 2 = 6 rooms an hour.\n48 / 6 = 8\n#### 8"),
        ("Omar buys 4 notebooks at $3 each and 2 pens at $5 each, then pays with a $50 bill. How much change does he get?",
         "4 * 3 = 12\n2 * 5 = 10\n12 + 10 = 22\n50 - 22 = 28\n#### 28")]
DISAGREES = ("A farmer plants 8 rows of 15 cabbages and rabbits eat 17 of them overnight. How many cabbages are left?",
             "8 * 15 = 120\n120 - 17 = 103\n#### 103")
FALSE_STEP = ("A train has 6 cars with 42 seats each, and 19 seats are empty. How many passengers are seated?",
              "6 * 42 = 250\n250 - 19 = 231\n#### 231")
TOO_FEW = ("How many legs do a cat and a bird have together?", "4 + 2 = 6\n#### 6")
NEW_NUMBERS = (GOOD[0][0].replace("14 bouquets", "15 bouquets"), "15 * 9 = 135\n135 - 26 = 109\n#### 109")
MALFORMED = "Question: A shop sells 5 hats for 8 dollars each. How much for all of them?\n5 * 8 = 40\nThe shop earns 40 dollars."
TEST, TEST_RENAMED = gsm8k_story("test")
VAL, VAL_RENAMED = gsm8k_story("val")


def block(problem):
    return f"Question: {problem[0]}\n{problem[1]}"


REPLIES = ["Here are six new problems.\n\n" + "\n---\n".join(
    [block(GOOD[0]), block(DISAGREES), block(FALSE_STEP), block(TEST), block(TEST_RENAMED), MALFORMED]),
    "\n---\n".join(map(block, [VAL, VAL_RENAMED, GOOD[0], GOOD[1], NEW_NUMBERS, TOO_FEW])),
    "\n---\n".join(map(block, [GOOD[2], GOOD[1], GOOD[3]]))]
# what the writer's replies of REPLIES hold besides the four good problems, by the reason each is rejected
REJECTED = {"false_equation": 1, "malformed": 1, "near_copy_kept": 3, "near_copy_test": 2, "near_copy_val": 2,
            "solver_disagrees": 1, "too_few_numbers": 1}
SOLUTIONS = {q: t for q, t in GOOD + [NEW_NUMBERS]} | {DISAGREES[0]: "8 * 15 = 120\n120 - 7 = 113\n#### 113"}


def writer_server(solver_delay=0.0):
    """A FakeLLM that writes REPLIES in turn (again from the first once all are written) and solves
    each question as SOLUTIONS says, with replies whose usage counts tokens as a real server does."""
    turn, lock = itertools.count(), threading.Lock()

    def script(question, n):
        if "new problems of the same kind" in question:
            with lock:
                return counted(REPLIES[next(turn) % len(REPLIES)])
        return counted(SOLUTIONS.get(question, "I cannot solve this."), delay=solver_delay)
    return FakeLLM(script)


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    """Every test runs in its own folder with the sentinel key set, and must leave it in no file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEACHER_API_KEY", SECRET)
    monkeypatch.setenv("GSM8K_DIR", str(DATA_DIR))
    yield
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f"API key leaked into {f}"


def args(llm, n, *more):
    return ["--write-problems", str(n), "--base-url", llm.url, "--model", MODEL, "--data-dir", str(DATA_DIR),
            "--out", "written.jsonl", "--backoff", "0.01", "--timeout", "5", "--workers", "1", *more]


def rows(path="written.jsonl"):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def summary(path="written.jsonl"):
    return json.loads(Path(f"{path}.summary.json").read_text())


def test_only_good_problems_are_kept_once_each(capsys):
    with writer_server() as llm:
        code = problems.main(args(llm, 4))
        solved = [r["question"] for r in llm.requests if "new problems" not in r["question"]]
    out = capsys.readouterr().out
    assert code == 0
    kept = rows()
    assert [(r["question"], r["trace"]) for r in kept] == GOOD
    assert [r["id"] for r in kept] == [f"written-{i:05d}" for i in range(4)]
    assert all(r["answer"] == r["solver_answer"] and r["model"] == r["solver_model"] == MODEL for r in kept)
    assert kept[0]["request"].endswith("/1#0") and kept[3]["request"].endswith("/3#2")
    assert sorted(solved) == sorted([GOOD[0][0], DISAGREES[0], GOOD[1][0], GOOD[2][0], GOOD[3][0]])  # checks first, then a solver
    s = summary()
    assert s["this_run"]["rejections"] == REJECTED and s["status"] == "done"
    assert s["this_run"]["requests"] == 8 and s["per_kept_problem"]["requests"] == 2.0
    assert s["this_run"]["prompt_tokens"] > 0 and "near_copy_test 2" in out


def test_workers_side_by_side_keep_each_story_once(capsys):
    with writer_server(solver_delay=0.05) as llm:
        assert problems.main(args(llm, 4, "--workers", "6")) == 0
    kept = rows()
    assert sorted((r["question"], r["trace"]) for r in kept) == sorted(GOOD)  # the replies repeat them: no thread kept one twice
    assert [r["id"] for r in kept] == [f"written-{i:05d}" for i in range(4)]


def test_a_second_model_solves_and_a_rerun_with_enough_keeps_nothing_more(capsys):
    with writer_server() as llm:
        assert problems.main(args(llm, 2, "--solver-model", "fake-solver")) == 0
        models = {r["body"]["model"] for r in llm.requests}
        n = llm.count()
        assert problems.main(args(llm, 2, "--solver-model", "fake-solver")) == 0
        assert llm.count() == n  # two already kept: nothing asked
    assert models == {MODEL, "fake-solver"} and [r["solver_model"] for r in rows()] == ["fake-solver"] * 2
    assert summary()["total"]["runs"] == 2


def test_the_request_budget_spent_exits_3_and_says_so(capsys):
    with writer_server() as llm:
        code = problems.main(args(llm, 6, "--max-requests", "12"))
    err = capsys.readouterr().err
    assert code == 3 and "--max-requests 12 spent with 4 of 6 problems kept" in err
    assert len(rows()) == 4 and summary()["this_run"]["requests"] == 12 and summary()["status"] == "failed"


@pytest.mark.parametrize("text, words", [
    ("print('hello')\n", "not one teacher.py writes"),
    ('{"id": "train-00000", "trace": "2 + 2 = 4\\n#### 4", "source": "teacher", "model": "m"}\n{"id": "train-0', "not a written problem")])
def test_a_foreign_out_file_is_refused_untouched(text, words, capsys):
    Path("written.jsonl").write_text(text)
    with writer_server() as llm:
        assert problems.main(args(llm, 2)) == 2
        assert llm.count() == 0
    assert Path("written.jsonl").read_text() == text and words in capsys.readouterr().err


def test_a_kill_9_of_teacher_py_and_a_rerun_lose_and_duplicate_nothing(capsys):
    with writer_server(solver_delay=0.5) as llm:
        with open("log.txt", "w") as log:
            proc = subprocess.Popen([sys.executable, str(ROOT / "teacher.py"), *args(llm, 4, "--workers", "2")],
                                    stdout=log, stderr=log)
            deadline = time.time() + 120
            while time.time() < deadline and not (Path("written.jsonl").exists() and Path("written.jsonl").read_text().count("\n")):
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        before = Path("written.jsonl").read_bytes()
        assert 1 <= before.count(b"\n") < 4, "the run should have been killed midway"
        with open("written.jsonl", "ab") as f:  # what a kill in the middle of a write leaves behind
            f.write(b'{"id": "written-00003", "question": "A rob')
        assert problems.main(args(llm, 4)) == 0
    assert "cut-off last line" in capsys.readouterr().err
    assert Path("written.jsonl").read_bytes().startswith(before[:before.rfind(b"\n") + 1])
    kept = rows()
    assert sorted(r["question"] for r in kept) == sorted(q for q, _ in GOOD)
    assert [r["id"] for r in kept] == [f"written-{i:05d}" for i in range(4)]


def test_train_py_trains_on_extra_problems_and_records_them(gsm8k_dir, tokenizer_dir, tmp_path):
    with writer_server() as llm:
        assert problems.main(args(llm, 4)) == 0
    path = tmp_path / "written.jsonl"
    run = run_train(["--mode", "cot", "--extra-problems", str(path), "--steps", "3", "--eval-interval", "100", "--test-limit", "2",
                     "--out", str(tmp_path / "run")], gsm8k_dir, tokenizer_dir)
    assert f"extra problems: 4 from {path}, added to 64 train problems" in run.stdout
    metrics, config = (json.loads((tmp_path / "run" / f).read_text()) for f in ("metrics.json", "config.json"))
    digest = sha256_file(path)
    for record in (metrics, config):
        assert record["extra_problems"] == 4 and record["extra_problems_sha256"] == digest
    assert config["train_problems"] == 68
    Path("bad.jsonl").write_text(path.read_text().replace('#### 72"', '#### 73"'))  # the second row's trace ends in another answer
    bad = run_train(["--mode", "cot", "--extra-problems", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "bad")],
                    gsm8k_dir, tokenizer_dir, check=False)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'bad.jsonl'}:2: its trace")


def test_extra_problems_get_variants_like_any_train_problem():
    import variant_problems
    extra = [data.Problem(f"written-{i:05d}", q, t, t.split()[-1]) for i, (q, t) in enumerate(GOOD)]
    more, traces = variant_problems.with_variants(extra, {p.id: [p.solution] for p in extra}, 4, 1337, set())
    assert len(more) > len(extra) and {p.id.split("~")[0] for p in more} == {p.id for p in extra}
    assert all(check_trace(traces[p.id][0])["answer"] == p.answer for p in more)


@pytest.mark.parametrize("bad, words", [
    ({"trace": "14 * 9 = 127\n127 - 26 = 101\n#### 101", "answer": "101"}, "fails check_trace"),
    ({"question": TEST[0]}, "near-copy of a GSM8K test question"),
    ({"question": VAL_RENAMED[0]}, "near-copy of a GSM8K val question"),
    ({"answer": "99"}, "not its answer 99"),
    ({"id": "written-00000"}, "used twice")])
def test_a_bad_row_is_refused_naming_its_line(bad, words, tmp_path):
    good = [{"id": f"written-{i:05d}", "question": q, "trace": t, "answer": t.split()[-1]} for i, (q, t) in enumerate(GOOD)]
    good[2] = {**good[2], **bad}
    path = tmp_path / "extra.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in good))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}:3: .*{re.escape(words)}"):
        extra_problems.load_extra_problems(path, DATA_DIR)


def test_ngrams_ignore_numbers_case_and_punctuation():
    a = "Tom buys 3 apples at $2 each, and Ann buys 5 pears at $4 each; how many fruits do they buy in all?"
    b = "TOM buys 30 apples at $7 each and Ann buys 1 pears at $9 each. How many fruits do they buy in all"
    index = near_copies.NearCopyIndex()
    index.add(a, "test")
    assert index.find(b) == "test" and index.find("Ann buys pears at the market with Tom every week and they pay in cash.") is None


def test_a_seen_stories_question_is_refused_as_extra_problem(tmp_path):
    """The seen-stories questions are held out of training: --extra-problems may not bring one back (issue 36, item 2)."""
    seen = [r for r in data.read_jsonl(data.ROOT / "results/seen-stories/seen-stories.jsonl")][:1]
    good = [{"id": f"written-{i:05d}", "question": q, "trace": t, "answer": t.split()[-1]} for i, (q, t) in enumerate(GOOD)]
    path = tmp_path / "extra.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in good))
    assert len(extra_problems.load_extra_problems(path, DATA_DIR, held_out=[seen[0]["question"]])) == len(good)
    good[1] = {**good[1], "question": seen[0]["question"]}
    path.write_text("".join(json.dumps(r) + "\n" for r in good))
    assert len(extra_problems.load_extra_problems(path, DATA_DIR)) == len(good)  # not held out: accepted (the check can fail)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}:2: .*near-copy of a seen-stories question"):
        extra_problems.load_extra_problems(path, DATA_DIR, held_out=[seen[0]["question"]])
