"""study.py end to end on real GSM8K with the smoke preset: two students side by side, resume,
a run trained with other settings, a student that fails while another trains."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import data

ROOT = Path(__file__).resolve().parent.parent


def run_study(args, gsm8k_dir):
    env = {**os.environ, "GSM8K_DIR": str(gsm8k_dir)}
    return subprocess.run([sys.executable, "study.py", "--preset", "smoke"] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tok_dir(gsm8k_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    data.get_tokenizer(data.DEFAULT_VOCAB, gsm8k_dir, path)
    return path


def study_args(out, tok_dir, epochs=1):
    return ["--out", str(out), "--modes", "answer,cot", "--jobs", "2",
            "--train-args", f"--tokenizer-dir {tok_dir} --epochs {epochs} --test-limit 8", "--eval-args", "--limit 8 --latency-samples 0"]


def test_study_two_jobs_then_resume(gsm8k_dir, tok_dir, tmp_path):
    out = tmp_path / "study"
    r = run_study(study_args(out, tok_dir), gsm8k_dir)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    steps = json.loads((out / "study.json").read_text())["steps"]
    cmds = [s["cmd"] for s in steps]
    # the two students train side by side, then the four evaluations one at a time, then one compare
    assert len(cmds) == 7 and all("train.py" in c for c in cmds[:2]) and "--compare" in cmds[-1]
    assert {s["threads"] for s in steps[:2]} == {max(1, os.cpu_count() // 2)} and not any("threads" in s for s in steps[2:])
    assert sum("evaluate.py" in c and "--compare" not in c for c in cmds[2:6]) == 4
    for mode in ("answer", "cot"):
        assert "test exact match" in (out / f"{mode}.log").read_text()  # each student's training output in its own file
        assert (out / mode / "eval-test-limit8" / "eval.json").exists() and (out / mode / "eval-test-calc-limit8" / "eval.json").exists()
    assert r.stdout.count("exact match") >= 4  # evaluations print to the terminal
    report = (out / "report" / "report.md").read_text()
    assert "answer" in report and "cot" in report
    # Rerun: everything is there, so only the report is written again.
    r = run_study(study_args(out, tok_dir), gsm8k_dir)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("trained already") == 2
    assert len(json.loads((out / "study.json").read_text())["steps"]) == 8
    # Other settings: the old runs are refused, not mixed into a new study.
    r = run_study(study_args(out, tok_dir, epochs=2), gsm8k_dir)
    assert r.returncode == 1 and "was trained with --epochs 1.0, not 2.0" in r.stderr and "another --out" in r.stderr


def test_study_student_failing_while_another_trains(gsm8k_dir, tok_dir, tmp_path):
    out = tmp_path / "s"
    (out / "cot").mkdir(parents=True)
    (out / "cot" / "last.pt").write_bytes(b"not a checkpoint")  # cot's resume fails at once
    r = run_study(study_args(out, tok_dir), gsm8k_dir)
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: step failed") and "--mode cot" in err[0] and "cot.log" in err[0]
    assert "cannot read checkpoint" in (out / "cot.log").read_text()
    assert (out / "answer" / "metrics.json").exists()  # the student already training finished and is kept
    assert not list(out.glob("*/eval-*")) and not (out / "report").exists()  # nothing evaluated after a failure


def test_study_rejects_bad_modes(tmp_path):
    for modes, message in (("answer,bogus", "unknown mode 'bogus'"), ("cot,cot", "each student once")):
        r = subprocess.run([sys.executable, "study.py", "--modes", modes, "--out", str(tmp_path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and message in r.stderr


def test_study_restarts_a_run_stopped_before_its_first_checkpoint(tmp_path):
    """train.py refuses a non-empty --out without --resume or --overwrite: the study picks the one that fits."""
    import study
    run_dir = tmp_path / "cot"
    assert study.how_to_go_on(run_dir) == []
    run_dir.mkdir()
    (run_dir / ".lock").touch()
    assert study.how_to_go_on(run_dir) == []
    (run_dir / "log.jsonl").write_text(json.dumps({"step": 20, "loss": 3.2}) + "\n")  # killed before step 500's checkpoint
    assert study.how_to_go_on(run_dir) == ["--overwrite"]
    (run_dir / "last.pt").write_bytes(b"")
    assert study.how_to_go_on(run_dir) == ["--resume"]
