"""study.py end to end on real GSM8K with the smoke preset: two students side by side, resume, a failing step."""
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


def test_study_two_jobs_then_resume(gsm8k_dir, tok_dir, tmp_path):
    out = tmp_path / "study"
    args = ["--out", str(out), "--modes", "answer,cot", "--jobs", "2",
            "--train-args", f"--tokenizer-dir {tok_dir} --epochs 1 --test-limit 8", "--eval-args", "--limit 8 --latency-samples 0"]
    r = run_study(args, gsm8k_dir)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((out / "study.json").read_text())
    cmds = [s["cmd"] for s in summary["steps"]]
    # per student: train, evaluate, evaluate --calculator; then one compare
    assert len(cmds) == 7 and sum("train.py" in c for c in cmds) == 2 and "--compare" in cmds[-1]
    assert summary["jobs"] == 2 and all(s["threads"] == max(1, os.cpu_count() // 2) for s in summary["steps"][:-1])
    for mode in ("answer", "cot"):
        log = (out / f"{mode}.log").read_text()  # side by side, each student's output goes to its own file
        assert "test exact match" in log and "exact match" in log.split("test exact match")[-1]
        assert (out / mode / "eval-test-limit8" / "eval.json").exists() and (out / mode / "eval-test-calc-limit8" / "eval.json").exists()
    report = (out / "report" / "report.md").read_text()
    assert "answer" in report and "cot" in report
    # Rerun: everything is there, so only the report is written again.
    r = run_study(args, gsm8k_dir)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("trained already") == 2
    assert len(json.loads((out / "study.json").read_text())["steps"]) == 8


def test_study_failed_step_names_command_and_log(gsm8k_dir, tmp_path):
    r = run_study(["--out", str(tmp_path / "s"), "--modes", "answer,cot", "--jobs", "2", "--train-args=--no-such-flag"], gsm8k_dir)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("error: step failed") and "--no-such-flag" in err and ".log" in err and "rerun study.py" in err
    assert not (tmp_path / "s" / "report").exists()


def test_study_rejects_unknown_mode(tmp_path):
    r = subprocess.run([sys.executable, "study.py", "--modes", "answer,bogus", "--out", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown mode 'bogus'" in r.stderr
