"""
recorded.py: the three published shapes of recorded teacher files, in miniature fixtures written
here, scored as teacher.py --eval scores a live teacher, on the real GSM8K data ($GSM8K_DIR).

Run: GSM8K_DIR=../shared/data/gsm8k python -m pytest -q tests/test_recorded.py
"""
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import data  # noqa: E402
import traces  # noqa: E402
import teacher  # noqa: E402
from recorded import gpt3_params, load_teacher_eval, read_recorded, run_recorded  # noqa: E402

from conftest import gsm8k_dir_or_skip_module  # noqa: E402
DATA_DIR = gsm8k_dir_or_skip_module()  # conftest: a missing copy fails under CI, else skips this module

TEST = data.load_gsm8k("test", DATA_DIR)[:4]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Every test runs in its own folder."""
    monkeypatch.chdir(tmp_path)


def cli(capsys, *argv):
    """Run teacher.main in-process; return (exit code, stdout, stderr)."""
    code = teacher.main(["--data-dir", str(DATA_DIR)] + list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def summary(path):
    return json.loads(Path(f"{path}.summary.json").read_text())



def write_jsonl(path, rows):
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_recorded_gsm8k_style_list_is_scored_like_a_live_reply(capsys):
    p0, p1, p2, p3 = TEST
    preds = [f"She sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### {p0.answer}",
             f"2 + 1 = <<2+1=4>>4\n#### 4",                         # a false annotation stays false when written out
             f"#### Working\n70000 - 0 = 70000\nso #### {p2.answer} dollars",  # a '####' heading is not the answer
             f"3 * 3 * 60 = {p3.answer}"]                            # no marker: the last number
    Path("gsm8k-test-tiny.json").write_text(json.dumps(
        [{"question": p.question, "answer": p.solution, "model_prediction": m, "result": k != 1}
         for k, (p, m) in enumerate(zip(TEST, preds))]))
    s = run_recorded("gsm8k-test-tiny.json", None, TEST, "t.jsonl")
    rows, loaded = load_teacher_eval("t.jsonl")
    assert loaded == s and (s["model"], s["shape"], s["n"], s["missing"]) == ("tiny", "gsm8k", 4, 0)
    assert rows[0]["output"] == "She sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = 18.\n#### 18"
    assert traces.check_trace(rows[0]["output"])["n_steps"] == 2 and traces.check_trace(rows[1]["output"])["n_wrong"] == 1
    assert rows[2]["output"] == "Working\n70000 - 0 = 70000\nso\n#### 70000"
    assert [r["pred"] for r in rows] == ["18", "4", "70000", "540"] and [r["correct"] for r in rows] == [1, 0, 1, 1]
    # the publishers marked the fourth one right too: theirs and ours are both kept
    assert (s["exact_match"], s["published_exact_match"], s["params"]) == (0.75, 0.75, None)
    assert [r["id"] for r in rows] == [p.id for p in TEST] and all(r["model"] == "tiny" for r in rows)


def test_recorded_boxed_jsonl_by_id_keeps_the_first_of_a_repeated_id():
    p0, p1, p2, p3 = TEST
    gen = lambda text: {"generation": [text] if text is not None else None, "answer": None, "score": 1}
    write_jsonl("boxed.jsonl", [
        {"id": 3, "input": p3.question, "cot": gen(f"3 \\times 3 = 9 sprints, so \\( 9 \\times 60 = \\boxed{{{p3.answer}}} \\)")},
        {"id": 0, "input": p0.question, "cot": gen("16 - 7 = 9, and 9 \\cdot 2 = \\boxed{\\$18}")},
        {"id": 0, "input": p0.question, "cot": gen("a later copy: \\boxed{17}")},
        {"id": 2, "input": p2.question, "cot": gen(None)},      # the publisher lost this reply
        {"id": 1, "input": p1.question, "cot": gen("\\[ 2 + \\frac{2}{2} = 3 \\]\n\\boxed{3}")}])
    s = run_recorded("boxed.jsonl", None, TEST, "b.jsonl")
    by_id = {r["id"]: r for r in lines("b.jsonl")}
    assert (s["shape"], s["n"], s["duplicate_ids_skipped"], s["empty_outputs"]) == ("boxed", 4, 1, 1)
    assert by_id[p0.id]["output"] == "16 - 7 = 9, and 9 * 2 = $18\n#### 18"
    assert by_id[p3.id]["output"] == "3 * 3 = 9 sprints, so 9 * 60 = 540\n#### 540"
    assert by_id[p1.id]["output"] == "2 + (2 / 2) = 3\n#### 3" and traces.check_trace(by_id[p1.id]["output"])["all_hold"]
    assert (by_id[p2.id]["output"], by_id[p2.id]["correct"], by_id[p2.id]["finish_reason"]) == ("", False, "empty")
    assert (s["correct"], s["published_exact_match"]) == (3, 1.0)


def test_recorded_gpt3_file_holds_several_models_and_one_is_picked(capsys):
    rows = [{"question": p.question, "ground_truth": p.solution.replace("####", "A:"),
             "6b_finetuning": {"solution": f"2 * 2 = <<2*2=4>>4\nA: {p.answer}", "is_correct": True},
             "175b_finetuning": {"solution": "1 + 1 = <<1+1=2>>2\nA: 2", "is_correct": False}} for p in TEST]
    write_jsonl("gsm8k-test-gpt3.jsonl", rows)
    s = run_recorded("gsm8k-test-gpt3.jsonl", None, TEST, "six.jsonl")
    assert "gpt3/6b_finetuning, gpt3/175b_finetuning; scoring gpt3/6b_finetuning" in capsys.readouterr().err
    assert (s["model"], s["exact_match"], s["params"], s["models_in_file"]) == \
        ("gpt3/6b_finetuning", 1.0, 6e9, ["gpt3/6b_finetuning", "gpt3/175b_finetuning"])
    assert lines("six.jsonl")[0]["output"] == f"2 * 2 = 4\n#### {TEST[0].answer}"
    s = run_recorded("gsm8k-test-gpt3.jsonl", "gpt3/175b_finetuning", TEST, "big.jsonl")
    assert (s["exact_match"], s["params"], lines("big.jsonl")[0]["pred"]) == (0.0, 175e9, "2")
    with pytest.raises(ValueError, match="holds gpt3/6b_finetuning, gpt3/175b_finetuning, not 'gpt3/7b'.*--model"):
        run_recorded("gsm8k-test-gpt3.jsonl", "gpt3/7b", TEST, "x.jsonl")
    assert gpt3_params("gpt3/175b_verification") is None  # best of 100 by a verifier: not one model's size


def test_recorded_file_of_unknown_shape_is_refused_in_one_line(capsys):
    write_jsonl("other.jsonl", [{"problem": "q", "response": "#### 1"}])
    with pytest.raises(ValueError, match="other.jsonl: not a recorded teacher file of a known shape; expected"):
        read_recorded("other.jsonl")
    Path("notes.txt").write_text("some notes\n")
    code, out, err = cli(capsys, "--recorded", "notes.txt")
    assert code == 2 and err.count("\n") == 1 and "notes.txt:1: not valid JSON" in err and "expected" in err
    write_jsonl("mixed.jsonl", [{"id": 0, "cot": {"generation": ["#### 1"]}}, {"id": 1, "text": "#### 2"}])
    with pytest.raises(ValueError, match="mixed.jsonl:2: not a boxed-shaped row"):
        read_recorded("mixed.jsonl")
    assert not Path("traces").exists()


def test_recorded_missing_problems_are_named_by_line_and_misordered_files_refused(capsys):
    p0, p1, p2, p3 = TEST
    gen = lambda p: {"generation": [f"\\boxed{{{p.answer}}}"], "score": 1}
    write_jsonl("gsm8k-test-gap.jsonl", [{"id": i, "input": p.question, "cot": gen(p)} for i, p in enumerate(TEST) if i != 2])
    s = run_recorded("gsm8k-test-gap.jsonl", None, TEST, "g.jsonl")
    assert (s["n"], s["missing"], s["missing_lines"]) == (3, 1, [2]) and p2.id not in {r["id"] for r in lines("g.jsonl")}
    # the command line scores all of test: every other line is missing too, and the warning names them
    code, out, err = cli(capsys, "--recorded", "gsm8k-test-gap.jsonl", "--out", "g.jsonl")
    assert code == 0 and "no output for 1316 test problems, at lines 2, 4, 5, 6," in err
    assert json.loads(out)["n"] == 3 and summary("g.jsonl")["missing_lines"][:3] == [2, 4, 5]
    test_file = summary("g.jsonl")["test_file"]  # which test.jsonl it was scored against, by content
    assert test_file["name"] == "test.jsonl" and test_file["rows"] == 1319 and test_file["official"] and len(test_file["sha256"]) == 64
    write_jsonl("swapped.jsonl", [{"id": 1 - i, "input": p.question, "cot": gen(p)} for i, p in enumerate(TEST[:2])])
    with pytest.raises(ValueError, match="test line 0 answers another question"):
        run_recorded("swapped.jsonl", None, TEST, "s.jsonl")
    write_jsonl("beyond.jsonl", [{"id": 7, "input": p0.question, "cot": gen(p0)}])
    with pytest.raises(ValueError, match="output for test line 7, but test has lines 0-3"):
        run_recorded("beyond.jsonl", None, TEST, "b.jsonl")


def test_recorded_out_that_is_not_teacher_output_is_refused_untouched(capsys, tmp_path):
    gen = lambda p: {"generation": [f"\\boxed{{{p.answer}}}"], "score": 1}
    write_jsonl("boxed.jsonl", [{"id": i, "input": p.question, "cot": gen(p)} for i, p in enumerate(TEST)])
    Path("README.md").write_text("# My notes\n\nKeep these.\n")
    Path("train.sh").write_text("#!/bin/sh\npython train.py --out runs/cot\n")
    for name in ("README.md", "train.sh"):
        before = Path(name).read_bytes()
        code, out, err = cli(capsys, "--recorded", "boxed.jsonl", "--out", name)
        assert code == 2 and err.count("\n") == 1 and f"{name}: line 1 is not one teacher.py writes" in err
        assert Path(name).read_bytes() == before and not Path(f"{name}.summary.json").exists()
    # our own output may be scored again over itself; a folder, or a file taken for a folder, is refused
    assert cli(capsys, "--recorded", "boxed.jsonl", "--out", "b.jsonl")[0] == 0
    assert cli(capsys, "--recorded", "boxed.jsonl", "--out", "b.jsonl")[0] == 0
    Path("outdir").mkdir()
    for out, said in (("outdir", "is a folder"), ("train.sh/x.jsonl", "is a file, not a folder")):
        code, _, err = cli(capsys, "--recorded", "boxed.jsonl", "--out", out)
        assert code == 2 and err.count("\n") == 1 and said in err and "Traceback" not in err
    assert list(Path("outdir").iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_recorded_out_in_a_read_only_folder_is_refused_before_reading(capsys):
    gen = lambda p: {"generation": [f"\\boxed{{{p.answer}}}"], "score": 1}
    write_jsonl("boxed.jsonl", [{"id": i, "input": p.question, "cot": gen(p)} for i, p in enumerate(TEST)])
    Path("ro").mkdir()
    Path("ro").chmod(0o555)
    code, _, err = cli(capsys, "--recorded", "boxed.jsonl", "--out", "ro/x.jsonl")
    assert code == 2 and "is not writable" in err and list(Path("ro").iterdir()) == []


def test_recorded_rows_of_the_wrong_types_are_refused_by_line(capsys):
    p0, p1 = TEST[:2]
    gen = lambda p: {"generation": [f"\\boxed{{{p.answer}}}"], "score": 1}
    bad_rows = {"input is a list": {"id": 1, "input": [p1.question], "cot": gen(p1)},
                "input is a number": {"id": 1, "input": 7, "cot": gen(p1)},
                "generation is a string": {"id": 1, "input": p1.question, "cot": {"generation": p1.answer}},
                "id is true": {"id": True, "input": p1.question, "cot": gen(p1)}}
    for why, row in bad_rows.items():
        write_jsonl("bad.jsonl", [{"id": 0, "input": p0.question, "cot": gen(p0)}, row])
        code, out, err = cli(capsys, "--recorded", "bad.jsonl", "--out", "b.jsonl")
        assert code == 2 and "bad.jsonl:2: not a boxed-shaped row" in err and "Traceback" not in err, why
    Path("folder").mkdir()
    Path("latin.jsonl").write_bytes(b'{"id": 0, "input": "caf\xe9"}\n')
    for given, said in (("folder", "folder is a folder"), ("latin.jsonl", "latin.jsonl: not UTF-8 text")):
        code, out, err = cli(capsys, "--recorded", given)
        assert code == 2 and said in err and err.count("\n") == 1
    assert not Path("b.jsonl").exists()
