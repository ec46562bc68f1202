"""Every entry point answers --help (argparse formats help strings, so a stray '%' breaks it)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("script,flag", [("train.py", "--time-budget-min"), ("data.py", "--vocab-size"), ("study.py", "--train-args"),
                                          ("bench.py", "--quick"), ("evaluate.py", "--calculator"), ("teacher.py", "--max-retries")])
def test_help(script, flag):
    r = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert flag in r.stdout and "usage:" in r.stdout
