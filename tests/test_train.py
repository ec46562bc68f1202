"""train.py end to end on real GSM8K with the smoke preset: every mode, resume, DDP, bad inputs."""
import contextlib
import io
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

import data
import download
from tokenizer import train_tokenizer
from traces import Calculator, check_trace, equations_only, reference_to_trace
import train
import variant_problems
from examples import FILLER_TOKENS, calculator_positions, make_examples
from checkpoint import load_checkpoint

from conftest import overfit

ROOT = Path(__file__).resolve().parent.parent


def start_train(args, gsm8k_dir, tok_dir, *, torchrun=0, threads=None):
    """train.py (or torchrun of it) started with the smoke preset and the shared tokenizer; output goes to files,
    so several can run side by side without filling a pipe."""
    threads = "1" if torchrun else (threads or os.environ.get("OMP_NUM_THREADS", "2"))
    env = {**os.environ, "GSM8K_DIR": str(gsm8k_dir), "OMP_NUM_THREADS": threads}
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"] if torchrun
           else [sys.executable]) + [str(ROOT / "train.py"), "--preset", "smoke", "--tokenizer-dir", str(tok_dir)] + args
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, text=True)
    proc.files = out, err
    return proc


def finish_train(proc, *, check=True):
    """Waits for a start_train process; its exit code and output as a CompletedProcess."""
    proc.wait(timeout=600)
    out, err = (f.seek(0) or f.read() for f in proc.files)
    r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check and r.returncode != 0:
        raise AssertionError(f"train.py failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def run_train(args, gsm8k_dir, tok_dir, *, check=True, torchrun=0):
    return finish_train(start_train(args, gsm8k_dir, tok_dir, torchrun=torchrun), check=check)


def run_trains(arg_lists, gsm8k_dir, tok_dir):
    """Independent runs side by side, one thread each (the test run's second core is otherwise idle);
    their CompletedProcesses, for the caller to check."""
    procs = [start_train(args, gsm8k_dir, tok_dir, threads="1") for args in arg_lists]
    return [finish_train(proc, check=False) for proc in procs]


@pytest.fixture(scope="module")
def tok_dir(tokenizer_dir):
    return tokenizer_dir  # the test run's one tokenizer (conftest), shared by every run below


def train_losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.fixture(scope="module")
def mode_runs(gsm8k_dir, tok_dir, tmp_path_factory):
    """One smoke run of every mode, all trained side by side: {mode: (its run folder, its CompletedProcess)}."""
    outs = {mode: tmp_path_factory.mktemp("modes") / mode for mode in train.MODES}
    results = run_trains([["--mode", mode, "--out", str(out)] for mode, out in outs.items()], gsm8k_dir, tok_dir)
    return {mode: (outs[mode], r) for mode, r in zip(outs, results)}


@pytest.mark.parametrize("mode", train.MODES)
def test_every_mode_end_to_end(mode, mode_runs):
    out, r = mode_runs[mode]
    assert r.returncode == 0, f"train.py failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    for name in ("config.json", "log.jsonl", "best.pt", "last.pt", "metrics.json"):
        assert (out / name).exists(), name
    losses = train_losses(out)
    assert len(losses) >= 4 and losses[-1] < losses[0] - 0.5, losses
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert metrics["mode"] == mode == config["mode"] and metrics["n_test"] == 32
    assert metrics["trace_source"] == config["trace_source"] == "GSM8K reference solutions"
    assert 0 <= metrics["test_em_ci95"][0] <= metrics["test_em"] <= metrics["test_em_ci95"][1] <= 1
    assert metrics["params"] > metrics["params_no_embeddings"] > 0 and metrics["tokens_seen"] > 0
    if mode == "mixed":
        assert "test_em_answer" in metrics
    assert " test: exact match" in r.stdout and "eta" in r.stdout
    scores = metrics["scores"]  # last.pt scored at the end on seen stories, val and test, each with its predictions
    assert set(scores) == {"seen", "val", "test"} and scores["test"]["exact_match"] == metrics["test_em"]
    for name, sc in scores.items():
        rows = [json.loads(line) for line in (out / sc["eval"] / "predictions.jsonl").read_text().splitlines()]
        assert sc["n"] == 32 and sc["correct"] == sum(r["correct"] for r in rows if r["task"] in (None, "cot"))


def test_make_examples_modes(gsm8k_dir, tokenizer):
    problems = data.load_gsm8k("train", gsm8k_dir)[:3]
    traces = {p.id: [reference_to_trace(p.solution)] for p in problems}
    n = FILLER_TOKENS["steps"]
    by_mode = {m: make_examples(problems, traces, m, tokenizer, 0, n) for m in train.MODES}
    trace_ids = tokenizer.encode(traces[problems[0].id][0])
    assert tokenizer.decode(by_mode["answer"][0][1].tgt) == f"#### {problems[0].answer}"
    assert by_mode["cot"][0][1].tgt == trace_ids
    filler = by_mode["filler"][0][1].tgt
    assert tokenizer.decode(filler[n:]) == f"#### {problems[0].answer}"  # one fixed count, no reasoning
    assert len(set(filler[:n])) == 1 and tokenizer.decode(filler[:1]).strip() == "."
    short = make_examples(problems, traces, "filler", tokenizer, 0, filler_tokens=7)[0][1].tgt
    assert short == filler[:7] + filler[n:]
    shuffled = tokenizer.decode(by_mode["shuffled"][0][1].tgt).split("\n")
    original = traces[problems[0].id][0].split("\n")
    assert sorted(shuffled) == sorted(original) and shuffled[-1] == original[-1]
    tasks = [t for t, _ in by_mode["mixed"]]
    assert tasks.count("cot") == tasks.count("answer") == 3
    assert {t for t, _ in by_mode["filler"]} == {"filler"} and {t for t, _ in by_mode["shuffled"]} == {"shuffled"}  # not "cot"
    cot, answer = by_mode["mixed"][0][1], by_mode["mixed"][1][1]
    assert cot.src == answer.src == tokenizer.encode(problems[0].question)  # the task is said on the output side
    assert cot.tgt == tokenizer.encode("[cot]") + trace_ids
    assert answer.tgt == tokenizer.encode("[answer]") + by_mode["answer"][0][1].tgt


def test_ctrl_c_saves_and_its_resume_command_gives_the_same_weights(gsm8k_dir, tok_dir, tmp_path):
    """SIGINT to a real run: it finishes its step, saves last.pt, prints the command that resumes it (an answer run's
    --mode included) and exits 130 without a traceback; that command ends with the weights, losses and best.pt
    of an uninterrupted run."""
    import signal
    args = ["--mode", "answer", "--limit", "32", "--steps", "40", "--log-interval", "1", "--eval-problems", "2", "--test-limit", "2"]
    # one thread for all three runs: a matmul split over 2 threads sums in another order, and the weights differ in the last bit
    env = {**os.environ, "GSM8K_DIR": str(gsm8k_dir), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "train.py", "--preset", "smoke", "--tokenizer-dir", str(tok_dir), *args, "--out"]
    straight = start_train(args + ["--out", str(tmp_path / "straight")], gsm8k_dir, tok_dir, threads="1")  # side by side
    cmd += [str(tmp_path / "broken")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("step 2/"):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "Traceback" not in err, err
    step = load_checkpoint(tmp_path / "broken" / "last.pt")[1]["step"]
    assert 2 <= step < 40 and not (tmp_path / "broken" / "metrics.json").exists()
    hint = err.strip().splitlines()[-1].strip()
    assert hint.startswith("python train.py ") and hint.endswith(" --resume") and "--mode answer" in hint and "--preset smoke" in hint
    assert f"interrupted after step {step}" in err
    with open(tmp_path / "broken" / "log.jsonl", "a") as f:  # as if a crash came after more steps were logged
        f.write(json.dumps({"step": step + 1, "loss": 99.0}) + "\n")
    r = subprocess.run([sys.executable, *shlex.split(hint)[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    finish_train(straight)
    assert r.stdout.count("EncoderDecoder:") == 1 + 3  # the parameter line once, resumed or not; then once per final score
    for name in ("last.pt", "best.pt"):
        a, ca = load_checkpoint(tmp_path / "straight" / name)
        b, cb = load_checkpoint(tmp_path / "broken" / name)
        assert ca["step"] == cb["step"] and ca.get("val_em") == cb.get("val_em")
        for (key, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(pa, pb), (name, key)
    assert train_losses(tmp_path / "broken") == train_losses(tmp_path / "straight")  # nothing lost or logged twice
    # a finished run that is resumed only finishes; other settings are refused (on a copy, side by side)
    copy = shutil.copytree(tmp_path / "broken", tmp_path / "broken-copy")
    r, refused = run_trains([args + ["--out", str(tmp_path / "broken"), "--resume"],
                             args + ["--out", str(copy), "--resume", "--lr", "0.1"]], gsm8k_dir, tok_dir)
    assert r.returncode == 0 and "step 1/" not in r.stdout and load_checkpoint(tmp_path / "broken" / "last.pt")[1]["step"] == 40
    assert refused.returncode == 1 and "was trained with --lr 0.003, not 0.1" in refused.stderr


def test_run_folder_is_locked_and_never_mixed(gsm8k_dir, tok_dir, tmp_path):
    import fcntl
    out = tmp_path / "run"
    args = ["--mode", "answer", "--out", str(out), "--test-limit", "2", "--steps", "6"]
    out.mkdir()
    with open(out / ".lock", "a") as held:  # as another train.py holds it, while it runs
        fcntl.flock(held, fcntl.LOCK_EX)
        r = run_train(args, gsm8k_dir, tok_dir, check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "is in use by another train.py" in r.stderr
    assert [p.name for p in out.iterdir()] == [".lock"]
    run_train(args, gsm8k_dir, tok_dir)
    before = {name: (out / name).read_bytes() for name in ("log.jsonl", "last.pt", "metrics.json")}
    # a rerun without --resume into the finished folder: refused, nothing touched
    r = run_train(args, gsm8k_dir, tok_dir, check=False)
    assert r.returncode == 1 and "is not empty" in r.stderr and "--resume" in r.stderr and "--overwrite" in r.stderr
    assert before == {name: (out / name).read_bytes() for name in before}
    with contextlib.redirect_stderr(io.StringIO()) as err, pytest.raises(SystemExit) as stop:  # a usage error: in-process
        train.resolve_config(args + ["--resume", "--overwrite"])
    assert stop.value.code == 2 and "choose one" in err.getvalue()
    # --overwrite: the old run's files and evaluations go, other files stay, the new log is the new run's only
    (out / "eval-test").mkdir()
    (out / "eval-test" / "eval.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    run_train(args + ["--overwrite", "--lr", "0.002"], gsm8k_dir, tok_dir)
    steps = [row["step"] for row in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in row]
    assert steps == sorted(set(steps)) and not (out / "eval-test").exists() and (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "config.json").read_text())["lr"] == 0.002
    # a run killed before its first checkpoint cannot be resumed: say how to start it again
    for name in ("last.pt", "best.pt", "metrics.json"):
        (out / name).unlink()
    r = run_train(args + ["--resume"], gsm8k_dir, tok_dir, check=False)
    assert r.returncode == 1 and "last.pt not found" in r.stderr and "--overwrite" in r.stderr


def test_resume_refuses_other_data_or_tokenizer(gsm8k_dir, tok_dir, tmp_path):
    out = tmp_path / "run"
    args = ["--mode", "answer", "--out", str(out), "--test-limit", "2", "--steps", "6"]
    r = run_train(args + ["--stop-after-steps", "2"], gsm8k_dir, tok_dir)
    assert f"stopped after step 2 as asked; continue with:\n  python train.py --preset smoke --tokenizer-dir {tok_dir} {' '.join(args)} --resume" in r.stdout
    files = json.loads((out / "config.json").read_text())["data_files"]
    assert files["train"] == download.file_record(gsm8k_dir / "train.jsonl") and files["train"]["official"] and files["test"]["rows"] == 1319
    # another GSM8K folder: one question differs (it also trains its own tokenizer)
    other = tmp_path / "gsm8k-edited"
    other.mkdir()
    (other / "train.jsonl").write_text((gsm8k_dir / "train.jsonl").read_text().replace("Natalia", "Nathalie", 1))
    (other / "test.jsonl").write_text((gsm8k_dir / "test.jsonl").read_text())
    # the same data, but another tokenizer found under the cached one's name
    name = Path(json.loads((out / "config.json").read_text())["tokenizer"]).name
    train_tokenizer([p.question for p in data.load_gsm8k("test", gsm8k_dir)[:300]], tmp_path / "tok2" / name, 500)
    # the two refusals and the resume below side by side, each on its own copy of the stopped run (--out may change)
    copies = [shutil.copytree(out, tmp_path / f"copy{i}") for i in (1, 2)]
    # a run from before --compile was removed (its checkpoint records the setting) still resumes
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert "compile" not in ckpt["train_config"]
    torch.save({**ckpt, "train_config": {**ckpt["train_config"], "compile": True}}, out / "last.pt")
    r, r2, resumed = run_trains([[*args[:3], str(copies[0]), *args[4:], "--resume", "--data-dir", str(other)],
                                 [*args[:3], str(copies[1]), *args[4:], "--resume", "--tokenizer-dir", str(tmp_path / "tok2")],
                                 args + ["--resume"]], gsm8k_dir, tok_dir)
    err = r.stderr.strip().splitlines()  # the warning that the file is not the official one, then the error
    assert r.returncode == 1 and len(err) == 2 and "NOT the official GSM8K train.jsonl" in err[0] and err[1].startswith("error: --resume:")
    assert "was trained on train.jsonl (7473 rows, sha256 17f347dc5147...), not train.jsonl (7473 rows, sha256 " in r.stderr  # records name no folder
    assert r2.returncode == 1 and "was trained with another tokenizer" in r2.stderr and "Traceback" not in r2.stderr
    # the same inputs resume, and the scores say what they were measured on
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data_files"] == files and metrics["tokenizer_sha256"] == json.loads((out / "config.json").read_text())["tokenizer_sha256"]


def test_ddp_two_gloo_processes(gsm8k_dir, tok_dir, tmp_path):
    out = tmp_path / "ddp"
    r = run_train(["--mode", "cot", "--out", str(out), "--test-limit", "4", "--limit", "128"], gsm8k_dir, tok_dir, torchrun=2)
    assert "world 2" in r.stdout and "weights identical on 2 ranks" in r.stdout
    assert r.stdout.count("step 5/") == 1  # only rank 0 prints
    losses = train_losses(out)
    assert losses[-1] < losses[0] - 0.5
    assert json.loads((out / "config.json").read_text())["world_size"] == 2


def test_bad_inputs(gsm8k_dir, tok_dir, tmp_path):
    for argv, says in ((["--mode", "nonsense"], "shuffled"), (["--preset", "huge"], "smoke")):  # usage errors: in-process, no run
        with contextlib.redirect_stderr(io.StringIO()) as err, pytest.raises(SystemExit) as stop:
            train.resolve_config(argv)
        assert stop.value.code == 2 and "invalid choice" in err.getvalue() and says in err.getvalue()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "train-00000", "trace": "1 + 1 = 2\n#### 2"}) + "\n{oops\n")
    missing, corrupt, never, unseen = run_trains([["--traces", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "x")],
                                                  ["--traces", str(bad), "--out", str(tmp_path / "y")],
                                                  ["--resume", "--out", str(tmp_path / "never")],
                                                  ["--variants", "4", "--seen-stories", str(tmp_path / "sen.jsonl"),
                                                   "--out", str(tmp_path / "z")]], gsm8k_dir, tok_dir)
    assert unseen.returncode == 1 and "--seen-stories" in unseen.stderr and "sen.jsonl: not found" in unseen.stderr
    assert "Traceback" not in unseen.stderr and not (tmp_path / "z" / "last.pt").exists()
    assert missing.returncode == 1 and "none.jsonl not found" in missing.stderr and "Traceback" not in missing.stderr
    assert corrupt.returncode == 1 and "bad.jsonl:2" in corrupt.stderr
    assert never.returncode == 1 and "last.pt not found" in never.stderr


def test_traces_are_checked_like_the_teachers(gsm8k_dir, tok_dir, tmp_path):
    """Traces that the teacher would have rejected are left out, counted by reason; partial files warn and train."""
    problems = data.load_gsm8k("train", gsm8k_dir)[:64]
    # problem 28: no equation; problem 8: 'S + 30 + 46 + 38 + 11 + 18 = 143', algebra the checker cannot read
    rows = [{"id": p.id, "trace": reference_to_trace(p.solution)} for p in problems[:40]]
    rows += [{"id": p.id, "trace": "6 * 7 = 42\n#### 99999"} for p in problems[40:45]]
    rows += [{"id": p.id, "trace": f"1 + 1 = 3\n#### {p.answer}"} for p in problems[45:48]]
    rows += [{"id": p.id, "trace": f"so the answer is {p.answer}"} for p in problems[48:50]]
    f = tmp_path / "traces.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # and a file where most traces are false: it stops the run before any training, in one line
    false = tmp_path / "false" / "traces.jsonl"
    false.parent.mkdir()
    false.write_text("".join(json.dumps({"id": p.id, "trace": "2 + 2 = 5\n5 * 3 = 16\n#### 99999"}) + "\n" for p in problems))
    out = tmp_path / "partial"
    r, stopped = run_trains([["--traces", str(f), "--out", str(out), "--test-limit", "2"],
                             ["--traces", str(false), "--out", str(tmp_path / "false" / "run")]], gsm8k_dir, tok_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (f"left out 12 of 50 traces that fail the teacher's checks "
            f"(wrong_answer 5, false_equation 4, unparsed 2, no_equation 1)") in r.stdout
    assert "no trace for 26 of 64 train problems" in r.stdout
    assert "cot examples: 38" in r.stdout
    assert json.loads((out / "metrics.json").read_text())["trace_source"].startswith("teacher traces from")
    assert stopped.returncode == 1 and stopped.stderr.count("\n") == 1 and "Traceback" not in stopped.stderr
    assert "traces.jsonl: 64 of 64 traces of the 64 train problems fail the teacher's checks (wrong_answer 64)" in stopped.stderr
    assert not (tmp_path / "false" / "run" / "last.pt").exists()


def test_traces_with_crlf_or_gsm8k_notes_are_rewritten_and_counted(gsm8k_dir):
    """--trace-format steps learns a trace character by character: CRLF ends and <<a=b>> notes are written out first."""
    from sound_traces import keep_sound_traces
    problems = data.load_gsm8k("train", gsm8k_dir)[:3]
    traces = {problems[0].id: [reference_to_trace(problems[0].solution).replace("\n", "\r\n")],
              problems[1].id: [problems[1].solution],  # GSM8K's own notation: '<<a*b=c>>' notes
              problems[2].id: [reference_to_trace(problems[2].solution)]}
    said = []
    kept = keep_sound_traces(traces, problems, "t.jsonl", said.append)
    assert kept == {p.id: [reference_to_trace(p.solution)] for p in problems}
    assert said == ["t.jsonl: rewrote 2 traces into the trace format as the teacher writes it (CRLF line ends 1, <<a=b>> notes 1)"]


def test_tiny_model_overfits_real_gsm8k(gsm8k_dir, tokenizer):
    """A tiny student memorises four real problems: loss near zero, greedy decoding gives the traces back exactly."""
    from model import EncoderDecoder, ModelConfig, generate_many
    torch.manual_seed(0)
    problems = data.load_gsm8k("train", gsm8k_dir)[:4]
    traces = {p.id: [reference_to_trace(p.solution)] for p in problems}
    examples = [e for _, e in make_examples(problems, traces, "cot", tokenizer, 0, 40)]
    src, tgt_in, targets = data.collate(examples)
    model = EncoderDecoder(ModelConfig(vocab_size=tokenizer.vocab_size, d_model=96, n_heads=4, n_enc_layers=1,
                                       n_dec_layers=2, d_ff=192, dropout=0.0))
    assert overfit(model, src, tgt_in, targets, 300, stop_below=0.01) < 0.05
    outs = generate_many(model, [e.src for e in examples], max_new_tokens=targets.size(1) + 5)
    assert [tokenizer.decode(o) for o in outs] == [traces[p.id][0] for p in problems]


def test_variants_recorded_and_resumable(gsm8k_dir, tok_dir, tmp_path):
    """--variants K: the train problems with their verified variants, recorded in config and metrics; a resume refuses
    another K. --steps N trains exactly N steps, whatever the epochs."""
    args = ["--mode", "cot", "--variants", "4", "--limit", "16", "--steps", "7", "--eval-interval", "100", "--test-limit", "2",
            "--mask-results", "--out", str(tmp_path / "v")]
    r = run_train(args + ["--stop-after-steps", "3"], gsm8k_dir, tok_dir)
    assert "variants: " in r.stdout and "from 16 (up to 4 each" in r.stdout
    config = json.loads((tmp_path / "v" / "config.json").read_text())
    assert config["seen_stories_held_out"] == 500  # the committed seen-stories set, kept out of what trains
    assert config["variants"] == 4 and config["train_problems"] == 16 and 16 < config["train_examples"]["cot"] <= 64
    copy = shutil.copytree(tmp_path / "v", tmp_path / "v-copy")  # the refusals on copies, beside the resume
    cut_config = shutil.copytree(tmp_path / "v", tmp_path / "v-cut")
    config_text = (cut_config / "config.json").read_text()
    (cut_config / "config.json").write_text(config_text[: len(config_text) // 2])
    with open(tmp_path / "v" / "log.jsonl", "a") as f:  # a last line cut short by a full disk: dropped, the run goes on
        f.write('{"step": 3, "epoch": 0.1, "lo')
    r, resumed, bad_config = run_trains([args[:-1] + [str(copy), "--resume", "--variants", "2"], args + ["--resume"],
                                         args[:-1] + [str(cut_config), "--resume"]], gsm8k_dir, tok_dir)
    assert bad_config.returncode == 1 and "Traceback" not in bad_config.stderr and bad_config.stderr.count("\n") == 1
    assert "v-cut/config.json is not valid JSON" in bad_config.stderr and (cut_config / "config.json").read_text() == config_text[: len(config_text) // 2]
    assert "log.jsonl: dropped 1 line(s) that are not whole rows" in resumed.stderr
    assert r.returncode == 1 and "was trained with --variants 4, not 2" in r.stderr
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((tmp_path / "v" / "metrics.json").read_text())
    assert metrics["variants"] == 4 and metrics["train_examples"] == config["train_examples"] and metrics["calculator"]
    assert metrics["steps"] == config["total_steps"] == 7


def test_seen_stories_that_cannot_be_read_stop_the_run_and_a_missing_default_warns(tmp_path, monkeypatch, capsys):
    """A --seen-stories given that cannot be read is an error naming it (its questions would be trained on);
    the default file missing is a loud warning."""
    from types import SimpleNamespace
    (tmp_path / "folder").mkdir()
    (tmp_path / "bad.jsonl").write_text(json.dumps({"question": "q"}) + "\n{oops\n")
    (tmp_path / "latin.jsonl").write_bytes(b'{"question": "caf\xe9"}\n')
    (tmp_path / "noq.jsonl").write_text(json.dumps({"question": "q"}) + "\n" + json.dumps({"story": 3}) + "\n")
    for name, says in (("missing.jsonl", "missing.jsonl: not found"), ("folder", "folder: a folder"),
                       ("bad.jsonl", "bad.jsonl:2: not valid JSON"), ("latin.jsonl", "latin.jsonl: not UTF-8"),
                       ("noq.jsonl", "noq.jsonl:2: a row without")):
        for k in (1, 4):  # read whatever --variants: a mistyped path is caught the first time
            cfg = SimpleNamespace(variants=k, seed=0, seen_stories=str(tmp_path / name))
            with pytest.raises(SystemExit) as stop:
                variant_problems.add_variants(cfg, [], {}, print)
            assert says in str(stop.value.code) and str(stop.value.code).startswith("error: "), name
    monkeypatch.setattr(data, "ROOT", tmp_path)  # a checkout without the committed set
    monkeypatch.chdir(tmp_path)
    assert variant_problems.seen_story_questions(variant_problems.SEEN_STORIES) == frozenset()
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "NO seen-stories question is held out" in err


def test_with_variants_only_adds_checked_variants_of_the_given_problems(gsm8k_dir):
    problems = data.load_gsm8k("train", gsm8k_dir)[:30]
    traces = {p.id: [equations_only(reference_to_trace(p.solution))] for p in problems}
    out, out_traces = variant_problems.with_variants(problems, traces, 8, 1337, set())
    assert out[:1] == problems[:1] and {p.id for p in problems} <= {p.id for p in out} and len(out) > 60
    for p in out:
        story = p.id.split("~")[0]
        assert story in traces  # val and test never enter: only what was given is re-instantiated
        c = check_trace(out_traces[p.id][0])
        assert "~" not in p.id or (c["all_hold"] and c["answer"] == p.answer)
    again, _ = variant_problems.with_variants(problems, traces, 8, 1337, set())
    assert [p.question for p in again] == [p.question for p in out]  # reproducible from the seed
    held_out = {out[1].question}
    assert out[1].question not in {p.question for p in variant_problems.with_variants(problems, traces, 8, 1337, held_out)[0]}


def test_calculator_positions_are_the_results_the_calculator_writes(tokenizer):
    trace = "3 * 4 = 12\nSo 12 + 5 = 17 apples\nx = 4\n#### 17"
    ids = tokenizer.encode(trace)
    pos = calculator_positions(tokenizer, trace, ids)
    assert tokenizer.decode([ids[i] for i in pos]).split() == ["12", "17"]  # not 'x = 4': no arithmetic, no calculator
    # exactly what the calculator forces after each '='
    calc = Calculator(tokenizer)
    eq = [i for i in range(len(ids)) if tokenizer.decode(ids[:i + 1]).rstrip().endswith("=") and tokenizer.piece(ids[i]).endswith("=")]
    forced = [calc(ids[:i + 1]) for i in eq]
    assert [i for i, f in zip(eq, forced) if f] and sum(len(f) for f in forced) == len(pos)
    ex = data.Example("x", [5], ids, pos)
    _, _, targets = data.collate([ex])
    assert [i for i in range(len(ids)) if targets[0, i] == 0] == pos  # the loss skips exactly those


# ----------------------------------------------------------------------------- the loop's parts, exactly

def test_lr_at_warmup_cosine_floor_and_time_budget():
    cfg = train.TrainConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    approx = lambda x: pytest.approx(x, rel=1e-12, abs=1e-18)
    assert [train.lr_at(s, 210, cfg) for s in (0, 4, 9)] == [approx(1e-4), approx(5e-4), approx(1e-3)]  # linear warmup
    assert train.lr_at(10, 210, cfg) == approx(1e-3)            # the cosine starts at the peak
    assert train.lr_at(110, 210, cfg) == approx(0.55e-3)        # half way: the mean of peak and floor
    assert train.lr_at(60, 210, cfg) == approx(1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))))
    assert train.lr_at(210, 210, cfg) == approx(1e-4) == train.lr_at(500, 210, cfg)  # the floor: lr * min_lr_ratio
    assert train.lr_at(0, 30, cfg) == approx(1e-3 / 3)          # warmup capped at 10% of a short run
    budget = train.TrainConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1, time_budget_min=10)
    assert train.lr_at(10, 1000, budget, train_time=300) == approx(0.55e-3)  # half the minutes spent: half way
    assert train.lr_at(910, 1000, budget, train_time=300) == approx(train.lr_at(910, 1000, cfg))  # steps further along
    assert train.lr_at(10, 1000, budget, train_time=900) == approx(1e-4)  # the budget spent: the floor


def test_weight_decay_only_on_weight_matrices():
    from model import EncoderDecoder, ModelConfig
    model = EncoderDecoder(ModelConfig(vocab_size=50, d_model=32, n_heads=2, n_enc_layers=1, n_dec_layers=1, d_ff=64))
    opt = train.make_optimizer(model, train.TrainConfig(weight_decay=0.1), torch.device("cpu"))
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = ({names[id(p)] for p in g["params"]} for g in opt.param_groups)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    linear = ("qkv.weight", "q.weight", "kv.weight", "proj.weight", "up.weight", "down.weight")
    assert decay == {n for n in names.values() if n.endswith(linear)} and len(decay) == 4 + 7  # per encoder and decoder block
    assert no_decay == set(names.values()) - decay
    assert "tok_emb.weight" in no_decay and all(n.startswith("tok_emb") or ".ln" in n or "norm" in n for n in no_decay)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))  # each once, the tied head too


def test_epoch_batches_split_every_batch_once_across_ranks():
    examples = {"cot": [data.Example(str(i), [5] * (3 + i % 7), [6] * (2 + i % 11)) for i in range(90)],
                "answer": [data.Example(str(i), [5] * (3 + i % 5), [6] * 4) for i in range(40)]}
    cfg = train.TrainConfig(batch_tokens=64, seed=3)
    everything = train.epoch_batches(examples, cfg, 0, 0, 1)
    assert sorted((t, i) for t, b in everything for i in b) == sorted((t, i) for t in examples for i in range(len(examples[t])))
    world = 3
    ranks = [train.epoch_batches(examples, cfg, 0, r, world) for r in range(world)]
    per_rank = len(everything) // world
    assert len(everything) % world and [len(r) for r in ranks] == [per_rank] * world  # equal counts, the rest skipped
    assert sum(ranks, []) == everything[:world * per_rank]  # every batch once, on one rank only
    assert ranks == [train.epoch_batches(examples, cfg, 0, r, world) for r in range(world)]  # the same on every machine
    assert train.epoch_batches(examples, cfg, 1, 0, world) != ranks[0]  # each epoch shuffled anew
    assert train.epoch_batches(examples, train.TrainConfig(batch_tokens=64, seed=4), 0, 0, world) != ranks[0]


def test_loss_weight_counts_every_target_token_alike():
    targets = torch.tensor([[7, 8, 9, 3, 0, 0], [7, 3, 0, 0, 0, 0]])  # 6 target tokens, pad_id 0
    cfg = train.TrainConfig(mode="cot", answer_weight=0.25)
    assert train.loss_weight("cot", targets, cfg, 0, 12.0) == 0.5
    assert train.loss_weight("answer", targets, train.TrainConfig(mode="answer", answer_weight=0.25), 0, 3.0) == 2.0
    mixed = train.TrainConfig(mode="mixed", answer_weight=0.25)
    assert train.loss_weight("cot", targets, mixed, 0, 12.0) == 0.5
    assert train.loss_weight("answer", targets, mixed, 0, 12.0) == 0.125  # answer_weight on the answer task only
    examples = {"cot": [data.Example("a", [5], [6] * 9), data.Example("b", [5], [6] * 4)], "answer": [data.Example("c", [5], [6])]}
    assert train.mean_batch_tokens(examples, 4) == (10 + 5 + 2) / 4  # eos counted: it is a target
