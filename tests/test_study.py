"""study.py end to end on real GSM8K with the smoke preset: cot and answer side by side, Ctrl-C and
resume, a rerun that trains nothing, an evaluation made again, the report's paired counts against the
predictions files, a run trained with other settings, a student that fails while another trains.
The report's arithmetic on hand-made runs: tests/test_study_paired.py."""
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import data

ROOT = Path(__file__).resolve().parent.parent


def run_study(args, gsm8k_dir):
    env = {**os.environ, "GSM8K_DIR": str(gsm8k_dir)}
    return subprocess.run([sys.executable, "study.py", "--preset", "smoke"] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def study_args(out, tok_dir, epochs=1, train_args=""):
    return ["--out", str(out), "--seeds", "1337", "--jobs", "2",
            "--train-args", f"--tokenizer-dir {tok_dir} --epochs {epochs} --test-limit 8 {train_args}".strip(),
            "--eval-args", "--batch-size 16"]


RUNS = ("answer-s1337", "cot-s1337")  # the smoke study's run folders: mode and seed


def ctrl_c_after_first_checkpoint(args, gsm8k_dir, out, console, sig=signal.SIGINT, group=True):
    """Start the study, and once a student has logged a training step and saved its last.pt, press
    Ctrl-C as a terminal does: SIGINT to the study's process group (or sig to the study alone, as kill
    or a scheduler sends it, with group=False). Returns the exit code."""
    env = {**os.environ, "GSM8K_DIR": str(gsm8k_dir)}
    with open(console, "w") as f:
        proc = subprocess.Popen([sys.executable, "study.py", "--preset", "smoke"] + args, cwd=ROOT, env=env,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + 300  # only a bound on a broken run: the wait ends on the file
            while proc.poll() is None and time.time() < deadline and not any((out / m / "last.pt").exists() for m in RUNS):
                time.sleep(0.05)
            assert proc.poll() is None, Path(console).read_text()[-3000:]
            os.killpg(proc.pid, sig) if group else os.kill(proc.pid, sig)
            return proc.wait(120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)


def paired_counts(a_folder, b_folder):
    """McNemar's four counts of two predictions.jsonl files, matched by problem id: the oracle the report must agree with."""
    a, b = ({r["id"]: r["correct"] for r in data.read_jsonl(f / "predictions.jsonl")} for f in (a_folder, b_folder))
    pairs = [(a[i], b[i]) for i in a if i in b]
    return {"n": len(pairs), "both_right": pairs.count((True, True)), "only_a": pairs.count((True, False)),
            "only_b": pairs.count((False, True)), "both_wrong": pairs.count((False, False))}


def test_study_two_jobs_ctrl_c_then_resume(gsm8k_dir, tokenizer_dir, tmp_path):
    out = tmp_path / "study"
    # 12 and 18 steps, logged every 5, a last.pt at each: the Ctrl-C comes after step 5, mid-training
    args = study_args(out, tokenizer_dir, epochs=3, train_args="--eval-interval 5")
    rc = ctrl_c_after_first_checkpoint(args, gsm8k_dir, out, tmp_path / "console.txt")
    console = (tmp_path / "console.txt").read_text()  # the study's own output: the students' goes to their logs
    assert rc == 130 and "Traceback" not in console, console[-3000:]
    kept = {m: (out / m / "last.pt").exists() for m in RUNS}
    assert any(kept.values()) and not list(out.glob("*/metrics.json")) and not (out / "report.md").exists()
    logs = [(out / f"{m}.log").read_text() for m in kept if kept[m]]
    assert any("\nstep 5/" in log for log in logs)  # the student whose checkpoint at step 5 set off the Ctrl-C
    # the other, if it was training, saved where the Ctrl-C found it (train.py's own interrupt), maybe before step 5
    assert all("\nstep 5/" in log or "interrupted after step" in log for log in logs)
    resume = console.strip().splitlines()[-1].strip()
    assert shlex.split(resume) == ["python", "study.py", "--preset", "smoke", *args]  # the same command line
    interrupted = json.loads((out / "study.json").read_text())["steps"]
    assert [s["cmd"].split()[1] for s in interrupted] == ["train.py", "train.py"]  # both were training, nothing after

    r = run_study(shlex.split(resume)[4:], gsm8k_dir)  # the printed command, as printed
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    study = json.loads((out / "study.json").read_text())
    cmds = [s["cmd"] for s in study["steps"]]
    # the two students go on (from last.pt where they had one) and score themselves: no evaluate.py step
    assert len(cmds) == 4 and all(c.startswith("python train.py --mode ") for c in cmds)
    for name, had in kept.items():
        mode = name.split("-")[0]
        again = next(c for c in cmds[2:] if f"--mode {mode} --seed 1337 --out " in c)
        # without a last.pt: --overwrite where the student left files, nothing where the Ctrl-C came before it wrote any
        assert again.endswith(" --resume") == had
        log = (out / f"{name}.log").read_text()
        assert ("resumed " in log) == had and "test: exact match" in log  # each student's training output in its own file
        for folder in ("eval-seen-stories-limit8", "eval-val-limit8", "eval-test-limit8"):
            assert (out / name / folder / "predictions.jsonl").exists()
    assert {s["threads"] for s in study["steps"]} == {max(1, os.cpu_count() // 2)}
    # the report's paired counts are those of the two predictions files, matched by id, on every set
    for s, folder in (("seen", "eval-seen-stories-limit8"), ("val", "eval-val-limit8"), ("test", "eval-test-limit8")):
        test = next(t for t in study["paired"] if t["set"] == s)
        assert (test["a"], test["b"], test["seed"]) == ("cot", "answer", 1337)
        assert {k: test[k] for k in ("n", "both_right", "only_a", "only_b", "both_wrong")} == \
            paired_counts(out / "cot-s1337" / folder, out / "answer-s1337" / folder)
        assert test["n"] == 8
    report = (out / "report.md").read_text()
    assert "cot beats answer on test with p < 0.05 in " in report and "| cot-s1337 | cot | 1337 | " in report
    assert "cot beats answer on test with p < 0.05 in " in r.stdout and str(tmp_path) not in report + json.dumps(study)

    # Again: everything is there, so nothing is trained or scored, and the report is the same.
    r = run_study(args, gsm8k_dir)
    assert r.returncode == 0 and r.stdout.count("trained already") == 2, r.stdout[-3000:] + r.stderr[-3000:]
    assert len(json.loads((out / "study.json").read_text())["steps"]) == 4 and (out / "report.md").read_text() == report
    # An evaluation lost: only it is made again, by a printed evaluate.py, to the same numbers.
    shutil.rmtree(out / "cot-s1337" / "eval-val-limit8")
    r = run_study(args, gsm8k_dir)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    cmds = [s["cmd"] for s in json.loads((out / "study.json").read_text())["steps"]]
    assert cmds[4:] == ["python evaluate.py cot-s1337 --split val --limit 8 --no-calculator --latency-samples 0 --batch-size 16"]
    assert f"+ python evaluate.py {out / 'cot-s1337'} --split val --limit 8 " in r.stdout
    assert (out / "report.md").read_text() == report

    # With recorded teachers: the students are left alone, the teacher is scored and evaluate.py --compare writes its report.
    teachers = tmp_path / "teachers"
    teachers.mkdir()
    test = data.load_gsm8k("test", gsm8k_dir)[:8]
    (teachers / "gsm8k-test-tiny.json").write_text(json.dumps(
        [{"question": p.question, "model_prediction": p.solution, "result": True} for p in test]))
    r = run_study(args + ["--teachers", str(teachers)], gsm8k_dir)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    cmds = [s["cmd"] for s in json.loads((out / "study.json").read_text())["steps"]]
    assert len(cmds) == 7 and "--recorded" in cmds[5] and "--compare" in cmds[6] and cmds[6].endswith("--teacher tiny.jsonl")
    compared = (out / "compare" / "report.md").read_text()
    assert "| teacher tiny (recorded, n=8) | 1.000 (0.676-1.000) |" in compared and "## Side by side" in compared
    # Other settings: the old runs are refused, not mixed into a new study.
    r = run_study(study_args(out, tokenizer_dir, epochs=2, train_args="--eval-interval 5"), gsm8k_dir)
    assert r.returncode == 1 and "was trained with --epochs 3.0, not 2.0" in r.stderr and "another --out" in r.stderr


def running_commands_naming(path):
    """The command lines of the processes alive now that name path (a study's students, say)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended meanwhile
            continue
        if str(path) in text:
            found.append(text)
    return found


def test_study_sigterm_to_the_study_alone_stops_its_students_and_says_how_to_resume(gsm8k_dir, tokenizer_dir, tmp_path):
    """kill -TERM of the study process alone: its students get a Ctrl-C, save and stop; none is left running
    on its own (it would hold the run folder's lock), and the study prints the command that resumes (exit 143)."""
    out = tmp_path / "study"
    args = study_args(out, tokenizer_dir, epochs=3, train_args="--eval-interval 5")
    rc = ctrl_c_after_first_checkpoint(args, gsm8k_dir, out, tmp_path / "console.txt", signal.SIGTERM, group=False)
    console = (tmp_path / "console.txt").read_text()
    assert rc == 143 and "Traceback" not in console and "SIGTERM: waiting for the running steps to stop" in console, console[-3000:]
    assert shlex.split(console.strip().splitlines()[-1]) == ["python", "study.py", "--preset", "smoke", *args]
    assert running_commands_naming(out) == []
    logs = [(out / f"{m}.log").read_text() for m in RUNS if (out / f"{m}.log").exists()]
    assert any("interrupted after step" in log for log in logs) and not list(out.glob("*/metrics.json"))


def test_study_student_failing_while_another_trains(gsm8k_dir, tokenizer_dir, tmp_path):
    out = tmp_path / "s"
    (out / "cot-s1337").mkdir(parents=True)
    (out / "cot-s1337" / "last.pt").write_bytes(b"not a checkpoint")  # cot's resume fails at once
    r = run_study(study_args(out, tokenizer_dir), gsm8k_dir)
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: step failed") and "--mode cot" in err[0] and "cot-s1337.log" in err[0]
    assert "cannot read checkpoint" in (out / "cot-s1337.log").read_text()
    assert (out / "answer-s1337" / "metrics.json").exists()  # the student already training finished and is kept
    assert not (out / "report.md").exists() and not json.loads((out / "study.json").read_text()).get("paired")  # no report after a failure


def test_teacher_steps_score_every_model_of_every_file_once(tmp_path):
    from study import teacher_steps
    rows = [{"question": "q?", "ground_truth": "A: 1", "6b_finetuning": {"solution": "A: 1"}, "175b_finetuning": {"solution": "A: 1"}}]
    (tmp_path / "gsm8k-test-gpt3.jsonl").write_text(json.dumps(rows[0]) + "\n")
    (tmp_path / "gsm8k-test-gpt-4.json").write_text(json.dumps([{"question": "q?", "model_prediction": "#### 1"}]))
    (tmp_path / "README.md").write_text("not a teacher")
    out = tmp_path / "study" / "teachers"
    steps, files = teacher_steps("python", tmp_path, out)
    assert files == [out / "gpt-4.jsonl", out / "gpt3-6b_finetuning.jsonl", out / "gpt3-175b_finetuning.jsonl"]
    assert steps[1] == ["python", "teacher.py", "--recorded", str(tmp_path / "gsm8k-test-gpt3.jsonl"),
                        "--model", "gpt3/6b_finetuning", "--out", str(files[1])]
    out.mkdir(parents=True)
    Path(f"{files[0]}.summary.json").write_text("{}")  # scored already: not again
    assert teacher_steps("python", tmp_path, out)[0][0] is None


def test_study_rejects_bad_modes_and_seeds(tmp_path):
    for flags, message in ((["--modes", "answer,bogus"], "unknown mode 'bogus'"), (["--modes", "cot,cot"], "each mode once"),
                           (["--seeds", "1337,x"], "not a comma list of integers"), (["--seeds", "2,2"], "each seed once"),
                           (["--runs", "runs/x"], "--runs names the runs of --report-only")):
        r = subprocess.run([sys.executable, "study.py", *flags, "--out", str(tmp_path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and message in r.stderr, (flags, r.stderr)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


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
