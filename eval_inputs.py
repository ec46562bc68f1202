"""
What evaluate.py reads from a run, checked before any decoding: the run folder and its checkpoint
(resolve_run, with the command that goes on with an unfinished run), the tokenizer the run was
trained with (by sha256 and vocabulary size), and the data file against the one the run recorded
(eval_data). Serves evaluate.py (and report.py through it); a mismatch is one line that says what to do.

Example:
    run_dir, ckpt_path = resolve_run("runs/cot")
    info = eval_data(run_dir, "test", None, None)  # {"file", "trained_on", "same_as_training", "warnings"}
    problems = read_eval_file("other.jsonl")  # [(id, question, gold, reference trace or None)]
"""
import fcntl
import json
import os
import re
import shlex
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import data
import traces
from download import file_record
from files import portable_path
from tokenizer import TOKENIZER_DIR, Tokenizer


def resolve_run(path, while_training=False):
    """
    (run folder, checkpoint file) from a run folder (its last.pt: the model as training left it,
    the one the run's own final scores are of) or a checkpoint file. A folder without last.pt is an
    error that says how to go on with its run; one whose training has not finished (no metrics.json)
    is scored with a warning. A run that train.py is still training (it holds RUN/.lock) is refused:
    its checkpoint is an early one that training will replace; while_training scores it anyway, with a
    warning (None: not checked, for train.py scoring the run it holds).
    Example: resolve_run("runs/cot") == (Path("runs/cot"), Path("runs/cot/last.pt"))
    """
    path = Path(path)
    if path.is_file():
        check_not_training(path.parent, while_training)
        return path.parent, path
    if not path.is_dir():
        raise FileNotFoundError(f"run folder {path} not found: train it with `python train.py --mode <mode> --out {path}` or fix the path")
    if not (path / "last.pt").exists():
        raise FileNotFoundError(f"{path} has no last.pt: {unfinished_run_advice(path)}")
    check_not_training(path, while_training)
    if not (path / "metrics.json").exists():
        print(f"warning: {path} has not finished training (no metrics.json): scoring its last.pt as it is now")
    return path, path / "last.pt"


def still_training(run_dir):
    """
    Whether a train.py holds run_dir's lock (run_folder.lock_run_folder) now: tried without
    waiting, and let go at once.
    Example: still_training(Path("runs/cot")) is False  # no train.py running there
    """
    try:
        fd = os.open(Path(run_dir) / ".lock", os.O_RDONLY)
    except OSError:  # no lock file: no train.py ever ran there (or it is not ours to read)
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing lets go of the lock we took, if we took it


def check_not_training(run_dir, while_training):
    """Raise ValueError, in one line, when train.py is still training run_dir, unless while_training (then a warning);
    while_training None: not checked (train.py scoring the run whose lock it holds)."""
    if while_training is None or not still_training(run_dir):
        return
    if not while_training:
        raise ValueError(f"run {run_dir} is still training (a train.py holds {Path(run_dir) / '.lock'}): its checkpoints are early "
                         f"ones that training will replace; wait for it to finish, or pass --while-training to score them as they are now")
    print(f"warning: run {run_dir} is still training: scoring its checkpoint as it is now (--while-training)")


def unfinished_run_advice(path):
    """
    What to do with a run folder that has no last.pt, with the command that does it: the train.py
    command the run recorded (config.json), else one made of its mode and preset.
    Example: unfinished_run_advice(Path("runs/answer"))  # "the run stopped before its first validation; continue it with ..."
    """
    config = json.loads((path / "config.json").read_text()) if (path / "config.json").exists() else None
    if config is None:
        return f"it holds no run (no config.json); train one with `python train.py --mode <mode> --out {path}`"
    resume = config.get("resume_command") or shlex.join(["python", "train.py", "--mode", config.get("mode", "cot"), "--preset",
                                                          config.get("preset", "default"), "--out", str(path), "--resume"])
    restart = resume.removesuffix(" --resume") + " --overwrite"
    return f"the run stopped before its first checkpoint (or is starting); start it again with `{restart}`"


def load_tokenizer(ckpt, run_dir):
    """
    The tokenizer the run was trained with, checked by its sha256 and by its size against the model's vocabulary.
    Example: tok = load_tokenizer(load_checkpoint("runs/cot/best.pt")[1], "runs/cot")
    """
    info = ckpt.get("tokenizer") or {}
    path = Path(info.get("path", ""))
    if not path.is_file():  # a run copied from another machine: look in this checkout's cache
        path = TOKENIZER_DIR / path.name
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer {info.get('path')} of run {run_dir} not found: train.py re-creates it "
                                f"(same --vocab-size and data), or copy it to {path}")
    tok = Tokenizer(path)
    if info.get("sha256") and tok.sha256 != info["sha256"]:
        raise ValueError(f"tokenizer {path} is not the one run {run_dir} was trained with (sha256 differs)")
    n = (ckpt.get("config") or {}).get("vocab_size")
    if n is not None and n != tok.vocab_size:  # ids would mean other pieces: every output garbled, silently
        raise ValueError(f"tokenizer {path} has {tok.vocab_size} pieces but the model of run {run_dir} has {n}: "
                         f"they were not trained together; give the run the tokenizer it was trained with")
    return tok


def eval_data(run_dir, split, eval_file, data_dir, other_data=False):
    """
    The file an evaluation scores, by content, against what the run was trained with (its
    config.json): {"file", "trained_on", "same_as_training", "warnings"}. A GSM8K split must be
    the very file the run recorded (sha256), else a ValueError, unless other_data asks for it; an
    --eval-file is other data by request. Warnings say what the numbers are not.
    Example: eval_data(Path("runs/cot"), "test", None, None)["same_as_training"] is True
    """
    path = Path(eval_file) if eval_file else data.resolve_data_dir(data_dir) / ("test.jsonl" if split == "test" else "train.jsonl")
    used = file_record(path)
    config = Path(run_dir) / "config.json"
    was = (json.loads(config.read_text()).get("data_files") or {}).get(split if split == "test" else "train") if config.exists() else None
    same = None if eval_file or not was else was["sha256"] == used["sha256"]  # None: nothing to compare with
    if same is False and not other_data:
        raise ValueError(f"{path} ({used['rows']} rows, sha256 {used['sha256'][:12]}...) is not the {path.name} run {run_dir} was trained "
                         f"with ({was['path']}, {was['rows']} rows, sha256 {was['sha256'][:12]}...); pass --data-dir to that "
                         f"folder, or --other-data to score this file anyway")
    warnings = []
    if same is False:
        warnings.append(f"scored on {path} ({used['rows']} rows), not the {path.name} the run was trained with ({was['rows']} rows)")
    if used.get("official") is False:
        warnings.append(f"{path} is not the official GSM8K {path.name} ({used['rows']} rows): not a GSM8K score")
    return {"file": used, "trained_on": was, "same_as_training": same, "warnings": warnings}


def check_eval_out(out, run_dir, ckpt_path):
    """
    Raise ValueError, in one line, unless out can take this evaluation: not a file, not another
    run's folder nor a folder inside one (their config.json says so: --compare would take it for
    that run's evaluation), and not a folder holding another run's evaluation (its eval.json names
    another checkpoint), which would be replaced without a word. The same run's earlier evaluation
    there is replaced, as a rerun does.
    Example: check_eval_out(Path("runs/cot/eval-test"), Path("runs/cot"), Path("runs/cot/best.pt"))
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a folder for predictions.jsonl and eval.json")
    other = next((d for d in (out.resolve(), *out.resolve().parents) if is_run_folder(d)), None)
    if other is not None and other != Path(run_dir).resolve():
        where = "the folder of" if other == out.resolve() else "inside"
        raise ValueError(f"--out {out} is {where} run {other}, not of run {run_dir}: give a folder of its own (or none: "
                         f"{Path(run_dir) / 'eval-...'})")
    try:
        was = json.loads((out / "eval.json").read_text(encoding="utf-8")) if (out / "eval.json").is_file() else None
    except ValueError:
        was = {"run": "unknown: its eval.json is not valid JSON"}
    if was is not None and (was.get("run"), was.get("checkpoint")) != (portable_path(run_dir), portable_path(ckpt_path)):
        raise ValueError(f"--out {out} holds the evaluation of run {was.get('run')} ({was.get('checkpoint')}), not of run "
                         f"{portable_path(run_dir)} ({portable_path(ckpt_path)}): give another --out, or remove that folder first")


def is_run_folder(folder):
    """
    Whether folder holds a train.py run: a config.json that records a mode and a preset.
    Example: is_run_folder(Path("runs/cot")) is True and is_run_folder(Path("runs")) is False
    """
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and {"mode", "preset"} <= config.keys()


EVAL_FILE_ROW = ('{"question": "...", "answer": A} where A is a number (18, 0.75, "3/4", "1e3", "$1,200") '
                 'or a GSM8K-style solution ending in "#### <number>"')


def exact_number(text):
    """
    The canonical string of a number written alone in text ('$', '%' and commas grouping by threes
    dropped; '3/4', '1e3', '-5' read exactly), or None when text is anything else ('1,0,0' too) or
    a fraction no decimal writes exactly.
    Example: exact_number("3/4") == "0.75" and exact_number("1e3") == "1000" and exact_number("3 pens") is None
    """
    s = data.ungroup(text.strip().replace("$", "").rstrip("%").strip())  # "1,0,0" is no number
    if s is None or len(s) > 2 * data.MAX_NUMBER_DIGITS:
        return None
    fraction = re.fullmatch(r"(-?\d+)\s*/\s*(\d+)", s)
    if fraction is None:
        return data.normalize_number(s) if re.fullmatch(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s) else None
    x = Fraction(int(fraction[1]), int(fraction[2])) if int(fraction[2]) else None
    if x is None or 10 ** 40 % x.denominator:
        return None  # 1/3 has no exact decimal: the scorer could never match it
    with localcontext() as context:
        context.prec = len(s) + 45  # every digit: the whole part's, and at most 40 decimals
        return data.normalize_number(str(Decimal(x.numerator) / Decimal(x.denominator)))


def eval_file_answer(answer):
    """
    (gold answer, reference trace or None) of an --eval-file row's answer, read exactly, or None:
    a JSON number, a number as text, or a GSM8K-style solution whose '####' line holds a number alone.
    Example: eval_file_answer(12.5) == ("12.5", None) and eval_file_answer("3 + 4 = 7\\n#### 7")[0] == "7"
    """
    if isinstance(answer, bool) or not isinstance(answer, (int, float, str)):
        return None  # true is not 1; a list or an object is not an answer
    if not isinstance(answer, str):
        return (data.normalize_number(repr(answer)), None) if data.normalize_number(repr(answer)) else None
    if "####" not in answer:
        return (exact_number(answer), None) if exact_number(answer) else None
    gold = exact_number(answer.rsplit("####", 1)[1])
    return (gold, traces.reference_to_trace(answer)) if gold else None


def read_eval_file(path):
    """
    (id, question, gold answer, reference trace or None) of each row of an --eval-file JSONL; a row
    without a non-empty question, whose answer is not read exactly as a number (EVAL_FILE_ROW), or
    whose id another row has (the paired tests would count it once, exact match twice), is an error naming file:line.
    Example: read_eval_file("other.jsonl")[0][2] == "18"
    """
    if Path(path).is_dir():
        raise FileNotFoundError(f"eval file {path} is a folder: give a JSONL of {{\"question\", \"answer\"}} lines")
    if not Path(path).is_file():
        raise FileNotFoundError(f"eval file {path} not found: give a JSONL of {{\"question\", \"answer\"}} lines")
    out, lines = [], {}
    for k, (i, row) in enumerate(data.read_jsonl(path, numbered=True)):
        read = eval_file_answer(row.get("answer")) if isinstance(row, dict) else None
        if read is None or not isinstance(row.get("question"), str) or not row["question"].strip():
            raise ValueError(f"{path}:{i}: not a row of an eval file; each line is {EVAL_FILE_ROW}")
        pid = str(row.get("id", f"{Path(path).stem}-{k:05d}"))
        if pid in lines:
            raise ValueError(f"{path}:{i}: id {pid!r} is the id of line {lines[pid]} too; give each row an id of its own")
        lines[pid] = i
        out.append((pid, row["question"], *read))
    return out
