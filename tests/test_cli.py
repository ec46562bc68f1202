"""Every entry point answers --help (argparse formats help strings, so a stray '%' breaks it)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("script,flag", [("train.py", "--time-budget-min"), ("data.py", "--data-dir"), ("tokenizer.py", "--vocab-size"),
                                          ("reinstantiate.py", "--seed"), ("study.py", "--train-args"),
                                          ("bench.py", "--quick"), ("evaluate.py", "--calculator"), ("teacher.py", "--max-retries")])
def test_help(script, flag):
    r = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert flag in r.stdout and "usage:" in r.stdout


# Bad numbers: every numeric flag is checked as the flags are read, with a one-line usage error
# (exit 2) naming the flag, never accepted (--limit -5 trained on all but 5 problems) nor left to
# crash later (--grad-accum 0, --epochs nan, --eval-batch 0 after training).
BAD_NUMBERS = {
    "train.py": [["--epochs", "0"], ["--epochs", "-3"], ["--epochs", "nan"], ["--lr", "nan"], ["--lr", "inf"], ["--batch-tokens", "0"],
                 ["--batch-tokens", "-100"], ["--limit", "-5"], ["--limit", "-7466"], ["--max-new-tokens", "-5"], ["--grad-accum", "0"],
                 ["--eval-batch", "0"], ["--dropout", "1"], ["--min-lr-ratio", "2"], ["--eval-interval", "0"], ["--epochs", "abc"]],
    "evaluate.py": [["RUN", "--limit", "-7"], ["RUN", "--batch-size", "0"], ["RUN", "--max-new-tokens", "-5"],
                    ["RUN", "--latency-samples", "-1"], ["RUN", "--examples", "-1"]],
    # run as commands, small enough that the code before these checks finished quickly instead
    "bench.py": [["--quick", "--reps", "0"], ["--quick", "--steps", "-1"], ["--quick", "--threads", "-2"]],
    "study.py": [["--jobs", "0"], ["--eval-args", "--batch-size 0"], ["--train-args", "--epochs nan"], ["--eval-args", "--limit -3"]],
}


@pytest.mark.parametrize("script,args", [(s, a) for s, cases in BAD_NUMBERS.items() for a in cases])
def test_bad_numbers_are_usage_errors(script, args, tmp_path, capsys):
    import evaluate
    import study
    import train
    if script != "bench.py":  # their parsers, in this process (a second each, not a process start): parsing does nothing else
        extra = ["--preset", "smoke", "--modes", "answer", "--out", str(tmp_path / "study")] if script == "study.py" else []
        with pytest.raises(SystemExit) as exit:
            {"train.py": train.resolve_config, "evaluate.py": evaluate.parse_args, "study.py": study.parse_args}[script](extra + args)
        code, err = exit.value.code, capsys.readouterr().err
    else:
        r = subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        code, err = r.returncode, r.stderr
    flag = [word for word in " ".join(args).split() if word.startswith("--")][-1]
    last = err.strip().splitlines()[-1]  # after the usage lines, one line saying what is wrong
    assert code == 2 and ": error: " in last and flag in last and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []  # nothing was started


def test_every_numeric_train_setting_is_checked():
    import dataclasses
    import config_cli
    import train
    numeric = [f.name for f in dataclasses.fields(train.TrainConfig) if type(f.default) in (int, float)]
    assert set(numeric) == set(config_cli.FLAG_TYPES), "give a new numeric setting its bounds in config_cli.FLAG_TYPES"


def test_train_flags_that_depend_on_each_other_or_on_files(tmp_path, capsys):
    import train
    for args, message in ((["--d-model", "6", "--n-heads", "2"], "multiple of 2 x --n-heads"),
                          (["--out", __file__], "is a file, not a run folder")):
        with pytest.raises(SystemExit) as exit:
            train.resolve_config(args)
        assert exit.value.code == 2 and message in capsys.readouterr().err
    assert train.resolve_config(["--epochs", "0.5", "--limit", "0", "--seed", "-1"])[0].epochs == 0.5  # good values pass


def test_the_test_run_says_what_was_skipped_and_why(tmp_path):
    """conftest's summary hook, on a tiny suite of its own: a skipped test and a module skipped whole."""
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_some.py").write_text("import pytest\nfrom conftest import NO_GSM8K\n\n"
                                           "def test_a():\n    pytest.skip(NO_GSM8K)\n\n"
                                           "def test_b():\n    pass\n")
    (tmp_path / "test_all.py").write_text("import pytest\nfrom conftest import NO_GSM8K\n"
                                          "pytest.skip(NO_GSM8K, allow_module_level=True)\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:]
    assert ("2 skipped: GSM8K not found: set GSM8K_DIR to a folder holding train.jsonl and test.jsonl, or run "
            "`python data.py download` (test_all.py skipped whole, counted as one)") in r.stdout.splitlines()
    assert "1 passed, 2 skipped" in r.stdout
