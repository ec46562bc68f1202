"""Shared fixtures (the real GSM8K copy, a real tokenizer trained on it), the overfit loop two tests use,
and a line at the end of the run saying what was skipped and why."""
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


NO_GSM8K = "GSM8K not found: set GSM8K_DIR to a folder holding train.jsonl and test.jsonl, or run `python data.py download`"


def gsm8k_path():
    """The real GSM8K folder, or None. Under CI a missing copy is a failure, never a skip."""
    for candidate in (os.environ.get("GSM8K_DIR"), ROOT.parent / "shared" / "data" / "gsm8k", ROOT / "data" / "gsm8k"):
        if candidate and (Path(candidate) / "train.jsonl").exists() and (Path(candidate) / "test.jsonl").exists():
            return Path(candidate)
    return None


def gsm8k_dir_or_skip_module():
    """
    For a test module that needs GSM8K as it is imported (the teacher's modules): the real folder,
    resolved; without one the module is skipped (one line in the summary), and under CI that fails.
    Example: DATA_DIR = gsm8k_dir_or_skip_module()  # at the top of tests/test_teacher.py
    """
    path = gsm8k_path()
    if path is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError("GSM8K is missing: CI must set GSM8K_DIR to the shared copy")
        pytest.skip(NO_GSM8K, allow_module_level=True)
    return path.resolve()


@pytest.fixture(scope="session")
def gsm8k_dir():
    path = gsm8k_path()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("GSM8K is missing: CI must set GSM8K_DIR to the shared copy")
        pytest.skip(NO_GSM8K)
    return path


@pytest.fixture(scope="session")
def tokenizer_dir(gsm8k_dir, tmp_path_factory):
    """A --tokenizer-dir holding the real tokenizer (default vocabulary), trained once per test run
    on the real train split (seconds): every train.py a test starts can share it."""
    from tokenizer import DEFAULT_VOCAB, get_tokenizer
    path = tmp_path_factory.mktemp("tok")
    get_tokenizer(DEFAULT_VOCAB, gsm8k_dir, path)
    return path


@pytest.fixture(scope="session")
def tokenizer(gsm8k_dir, tokenizer_dir):
    """The real tokenizer (default vocabulary), from tokenizer_dir."""
    from tokenizer import DEFAULT_VOCAB, get_tokenizer
    return get_tokenizer(DEFAULT_VOCAB, gsm8k_dir, tokenizer_dir)


def overfit(model, src, tgt_in, targets, steps, lr=3e-3, stop_below=0.0):
    """Full-batch AdamW on one batch until steps run out or the loss is under stop_below; returns the last loss."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        _, loss = model(src, tgt_in, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < stop_below:
            break
    return loss.item()


def pytest_terminal_summary(terminalreporter):
    """
    One line per reason a test was skipped, with the count, so "27 skipped" says what is missing.
    A module skipped whole (test_teacher.py without GSM8K) is one skip in pytest's count whatever
    its number of tests, so it is named.
    Example: 27 skipped: GSM8K not found: set GSM8K_DIR ... (tests/test_teacher.py skipped whole, counted as one)
    """
    by_reason = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        by_reason.setdefault(reason.removeprefix("Skipped: "), []).append(report)
    for reason, reports in by_reason.items():
        whole = [r.nodeid for r in reports if "::" not in r.nodeid]
        terminalreporter.write_line(f"{len(reports)} skipped: {reason}"
                                    + (f" ({', '.join(whole)} skipped whole, counted as one)" if whole else ""))
