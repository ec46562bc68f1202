"""
Issue 36, hardening round 4, train.py and evaluate.py's side: a run still training is not scored
unless asked, --compare shows each model's step and says when an evaluation is stale, an --out in
another run is refused, one-line errors instead of tracebacks, train.py's re-check of
--extra-problems as strict as problems.py's, and the small ones (duplicate ids, '1,0,0', a folder
as eval file, long questions, --stories=--, big exact integers).
"""
import fcntl
import json
import re
import time
from pathlib import Path

import pytest
import torch

import arithmetic
import data
import eval_inputs
import evaluate as ev
import extra_problems
import report
import traces
import train
from checkpoint import save_checkpoint
from model import EncoderDecoder, ModelConfig



def tiny_run(folder, tok, step=3, max_src=16, metrics=True):
    """A run folder with a tiny untrained answer-only model (last.pt at step) and its config.json: seconds to score."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=16, n_heads=2, n_enc_layers=1, n_dec_layers=1, d_ff=32, dropout=0.0,
                      max_src_len=max_src, max_tgt_len=32, pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id)
    save_checkpoint(folder / "last.pt", EncoderDecoder(cfg), tokenizer={"path": str(tok.path), "sha256": tok.sha256},
                    train_config={"mode": "answer", "max_new_tokens": 4, "eval_batch": 8}, step=step)
    (folder / "config.json").write_text(json.dumps({"mode": "answer", "preset": "smoke"}))
    if metrics:
        (folder / "metrics.json").write_text("{}")
    return folder


def eval_file(path, questions):
    path.write_text("".join(json.dumps({"id": f"q{i}", "question": q, "answer": 3}) + "\n" for i, q in enumerate(questions)))
    return path


def score(run, file, **kw):
    return ev.evaluate_run(run, eval_file=str(file), latency_samples=0, device="cpu", max_new_tokens=4, **kw)


# ----------------------------------------------------------------------------- item 3: a run still training


def test_a_run_still_training_is_refused_unless_asked(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"")
    lock = open(run / ".lock", "a")  # what train.py's lock_run_folder holds while it trains
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with pytest.raises(ValueError, match=r"still training .*\.lock.*--while-training"):
        eval_inputs.resolve_run(run)
    with pytest.raises(ValueError, match="still training"):
        eval_inputs.resolve_run(run / "last.pt")  # a checkpoint of a run in training too
    assert eval_inputs.resolve_run(run, while_training=True) == (run, run / "last.pt")
    assert "still training" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit:
        ev.main([str(run)])
    assert str(exit.value.code).startswith("error: ") and "still training" in str(exit.value.code) and "\n" not in str(exit.value.code)
    assert ev.parse_args([str(run), "--while-training"]).while_training
    lock.close()  # train.py ended: its lock is gone, the run is scored again without a word about it
    assert eval_inputs.resolve_run(run) == (run, run / "last.pt")
    assert "still training" not in capsys.readouterr().out


def test_compare_shows_each_models_step_and_warns_when_an_evaluation_is_stale(tmp_path, tokenizer, capsys):
    file = eval_file(tmp_path / "qs.jsonl", ["Tom has 3 apples. How many?", "Ann has 2 pens and 1 cup. How many?"])
    a, b = tiny_run(tmp_path / "a", tokenizer, step=3), tiny_run(tmp_path / "b", tokenizer, step=5)
    for run in (a, b):
        score(run, file)
    args = ev.parse_args(["--compare", "x", "--eval-file", str(file), "--out", str(tmp_path / "report")])
    md = report.compare([a, b], args).read_text()
    assert "| step |" in md and re.search(r"\| answer \[a\] .*\| 3 \|$", md, re.M) and re.search(r"\| answer \[b\] .*\| 5 \|$", md, re.M)
    assert "stale" not in md
    time.sleep(0.05)
    tiny_run(b, tokenizer, step=9)  # training went on after b was scored
    md = report.compare([a, b], args).read_text()
    assert re.search(r"Warning: .*eval-qs.*evaluates step 5 of .*last\.pt, which is now at step 9.*stale", md)
    assert "stale" in capsys.readouterr().err


# ----------------------------------------------------------------------------- item 4: --out in another run, a run compared with itself


def test_an_out_in_another_runs_folder_is_refused(tmp_path, tokenizer):
    file = eval_file(tmp_path / "qs.jsonl", ["Tom has 3 apples. How many?"])
    a, b = tiny_run(tmp_path / "a", tokenizer), tiny_run(tmp_path / "b", tokenizer)
    for out in (b, b / "eval-mine"):
        with pytest.raises(ValueError, match=rf"--out {re.escape(str(out))} is (inside )?(the folder of )?run {re.escape(str(b))}"):
            score(a, file, out=out)
    assert sorted(p.name for p in b.iterdir()) == ["config.json", "last.pt", "metrics.json"]  # nothing written there
    assert score(a, file, out=tmp_path / "elsewhere")["results"][0]["n"] == 1  # a folder of no run is fine
    assert score(a, file, out=a / "eval-mine")["results"][0]["n"] == 1  # and so is one inside the run itself


def test_compare_refuses_one_evaluation_twice_and_warns_of_a_run_compared_with_itself(tmp_path, tokenizer, capsys, monkeypatch):
    """Run folders named as in a checkout (runs/cot): eval.json names its run by that relative path."""
    monkeypatch.chdir(tmp_path)
    file = eval_file(tmp_path / "qs.jsonl", ["Tom has 3 apples. How many?", "Ann has 2 pens and 1 cup. How many?"])
    a, b = tiny_run(Path("a"), tokenizer), tiny_run(Path("b"), tokenizer)
    score(a, file)
    score(b, file)
    out = ["--compare", "x", "--eval-file", str(file), "--out", str(tmp_path / "report")]
    for twice in ([a, a], [a, a / "eval-qs"]):
        with pytest.raises(ValueError, match="the same evaluation"):
            report.compare(twice, ev.parse_args(out))
    score(a, file, out=Path("copy"))  # a second evaluation of a, as `evaluate.py a --out copy` made before
    with pytest.raises(ValueError, match=r"both evaluate run .*a .*give each run once"):
        report.compare([Path("copy"), a, b], ev.parse_args(out))
    score(a, file, calculator=True)  # the same run asked otherwise: compared, with a warning
    md = report.compare([a / "eval-qs", a / "eval-qs-calc", b], ev.parse_args(out)).read_text()
    assert re.search(r"Warning: .*run .*a is compared with itself", md) and "compared with itself" in capsys.readouterr().err


# ----------------------------------------------------------------------------- item 6: one line, never a traceback


def test_train_py_refuses_a_missing_or_folder_extra_problems_before_making_the_run_folder(tmp_path, capsys):
    for path, words in ((tmp_path / "nope.jsonl", "not found"), (tmp_path, "is a folder")):
        with pytest.raises(SystemExit) as exit:
            train.resolve_config(["--extra-problems", str(path), "--out", str(tmp_path / "run")])
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert exit.value.code == 2 and "--extra-problems" in last and words in last
    assert not (tmp_path / "run").exists()


def test_an_answer_too_large_to_write_is_a_line_of_the_eval_file(tmp_path):
    f = tmp_path / "big.jsonl"
    f.write_text(json.dumps({"question": "q?", "answer": 1}) + "\n" + json.dumps({"question": "q?", "answer": "1e1000000"}) + "\n")
    with pytest.raises(ValueError, match="big.jsonl:2: not a row of an eval file"):
        ev.load_problems("test", f)
    assert data.normalize_number("1e1000000") is None and data.normalize_number("1e-1000000") is None


def test_ctrl_c_during_evaluate_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(ev, "evaluate_run", interrupted)
    with pytest.raises(SystemExit) as exit:
        ev.main(["runs/somewhere"])
    err = capsys.readouterr().err
    assert exit.value.code == 130 and err.strip().count("\n") == 0 and "interrupted" in err and "runs/somewhere" in err


# ----------------------------------------------------------------------------- item 11: --extra-problems as strict as problems.py

GOOD = [("A florist packs 14 bouquets with 9 tulips in each and gives away 26 tulips to a school fair. "
         "How many tulips are left in the bouquets?", "14 * 9 = 126 tulips are packed.\n126 - 26 = 100 tulips are left.\n#### 100"),
        ("Priya rides her scooter 7 kilometers to the library and 5 kilometers back home every Saturday for 6 weeks. "
         "How many kilometers does she ride in all?", "Each Saturday she rides 7 + 5 = 12 kilometers.\n12 * 6 = 72\n#### 72"),
        ("Omar buys 4 notebooks at $3 each and 2 pens at $5 each, then pays with a $50 bill. How much change does he get?",
         "4 * 3 = 12\n2 * 5 = 10\n12 + 10 = 22\n50 - 22 = 28\n#### 28")]


def extra_file(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def good_rows():
    return [{"id": f"written-{i:05d}", "question": q, "trace": t, "answer": t.split()[-1]} for i, (q, t) in enumerate(GOOD)]


@pytest.mark.parametrize("bad, words", [
    ({"question": "   "}, "empty question"),
    ({"question": "Ann reads a book every week. How many weeks in a year?", "trace": "52 * 1 = 52\n#### 52", "answer": "52"},
     "fewer than two numbers"),
    ({"trace": "The answer is one hundred.\n#### 100", "answer": "100"}, "no equation"),
    ({"id": "written-00002~3"}, "'~'"),
    ({"id": "train-00012"}, "id of a GSM8K problem"),
    ({"question": GOOD[0][0].replace("florist", "gardener")}, "near-copy of the question of line 1")])
def test_extra_problems_are_checked_as_problems_py_checks_them(bad, words, tmp_path, gsm8k_dir):
    rows = good_rows()
    rows[2] = {**rows[2], **bad}
    path = extra_file(tmp_path / "extra.jsonl", rows)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}:3: .*{re.escape(words)}"):
        extra_problems.load_extra_problems(path, gsm8k_dir)


def test_extra_problems_that_copy_train_stories_are_counted_in_a_warning(tmp_path, gsm8k_dir, capsys):
    train_problems = data.load_gsm8k("train", gsm8k_dir)
    copies = [p for p in train_problems if traces.trace_verdict(traces.reference_to_trace(p.solution), p.answer) is None
              and len(data.NUMBER.findall(p.question)) >= 2][:2]
    rows = good_rows() + [{"id": f"copied-{i}", "question": p.question, "trace": traces.reference_to_trace(p.solution), "answer": p.answer}
                          for i, p in enumerate(copies)]
    assert len(extra_problems.load_extra_problems(extra_file(tmp_path / "extra.jsonl", rows), gsm8k_dir)) == 5
    err = capsys.readouterr().err
    assert re.search(r"warning: .*extra.jsonl: 2 of 5 rows are near-copies of GSM8K train questions \(lines 4, 5\)", err)
    assert len(extra_problems.load_extra_problems(extra_file(tmp_path / "extra.jsonl", good_rows()), gsm8k_dir)) == 3
    assert "warning" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- the low items


def test_duplicate_ids_in_an_eval_file_are_refused_by_line(tmp_path):
    f = tmp_path / "dup.jsonl"
    f.write_text("".join(json.dumps({"id": i, "question": "q?", "answer": 1}) + "\n" for i in ("a", "b", "a")))
    with pytest.raises(ValueError, match=r"dup.jsonl:3: id 'a' is the id of line 1"):
        ev.load_problems("test", f)


def test_commas_must_group_digits_by_threes(tmp_path):
    assert [data.normalize_number(s) for s in ("1,0,0", "12,34", "1,2345", "1.2,3")] == [None] * 4
    assert [data.normalize_number(s) for s in ("1,000", "$12,345,678.50", "5,", "-1,200", "100")] == ["1000", "12345678.5", "5", "-1200", "100"]
    assert data.extract_answer("so\n#### 1,0,0") is None and data.extract_answer("#### 1,000") == "1000"
    f = tmp_path / "commas.jsonl"
    f.write_text(json.dumps({"question": "q?", "answer": "1,0,0"}) + "\n")
    with pytest.raises(ValueError, match="commas.jsonl:1: not a row"):
        ev.load_problems("test", f)


def test_big_numbers_keep_every_digit():
    x = int("7" * 40)
    assert data.normalize_number(str(x)) == str(x) != data.normalize_number(str(x + 1))  # not rounded to 28 digits


def test_an_eval_file_that_is_a_folder_is_called_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="is a folder"):
        ev.load_problems("test", tmp_path)


def test_questions_longer_than_the_runs_max_src_are_counted_in_one_warning(tmp_path, tokenizer, capsys):
    run = tiny_run(tmp_path / "run", tokenizer, max_src=16)
    long = "Tom has 3 apples and " + "then he buys 2 more apples and " * 6 + "how many?"
    rep = score(run, eval_file(tmp_path / "qs.jsonl", [long, "Tom has 3 apples. How many?", long]))
    out = capsys.readouterr().out
    assert out.count("longer than") == 1 and re.search(r"warning: 2 of 3 questions are longer than the 16 tokens", out)
    assert any("2 of 3 questions are longer than" in w for w in rep["warnings"])


@pytest.mark.parametrize("argv", [["--stories=--"], ["--out=--"], ["--lr=--"]])
def test_a_flag_given_dashes_for_its_value_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        train.resolve_config(argv)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit.value.code == 2 and argv[0].split("=")[0] in last and "needs a value" in last
    with pytest.raises(SystemExit) as exit:
        ev.parse_args(["RUN", "--limit=--"])
    assert exit.value.code == 2 and "--limit" in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_true_equation_with_big_exact_integers_holds():
    x, y = int("7" * 400), int("3" * 399)
    for equation in (f"{x} + {y} = {x + y}", f"{x} * 2 = {2 * x}", f"{x} / 7 = {x // 7}", f"{x} - 1 = {x - 1}"):
        c = traces.check_trace(f"{equation}\n#### 1")
        assert c["steps"][0].ok, equation
    assert not traces.check_trace(f"{x} + 1 = {x}\n#### 1")["steps"][0].ok  # and a false one does not
    assert traces.check_trace(f"{x} + 0.5 = 1\n#### 1")["steps"][0].value.endswith(".5")  # a huge non-integer prints exactly
    for bad in ["9" * 1500 + " + 1", " * ".join(["9" * 400] * 4), "1+" * 250 + "1"]:  # pathological: refused quickly, not computed
        t0 = time.time()
        with pytest.raises(arithmetic.ArithmeticFault):
            arithmetic.safe_eval(bad)
        assert time.time() - t0 < 0.5
