"""
Teachers that need no API; it serves teacher.py (--recorded, --source reference), evaluate.py
and study.py. Recorded teachers are outputs others published for GSM8K test, in three shapes
(RECORDED_SHAPES), scored exactly as `teacher.py --eval` scores a live teacher. The GSM8K
reference solutions are written as traces in the same JSONL as a teacher's. load_teacher_eval
reads either kind of --eval file back for evaluate.py's comparison.

Example:
    shape, models, dups = read_recorded("../shared/data/teachers/gsm8k-test-gpt-4.json")
    run_recorded("../shared/data/teachers/gsm8k-test-gpt-4.json", None, load_gsm8k("test"))["exact_match"]
    rows, summary = load_teacher_eval("traces/gpt-4-eval-test.jsonl")
"""
import json
import re
import sys
from pathlib import Path

from data import extract_answer, load_gsm8k, resolve_data_dir
from download import file_record
from files import write_atomic
from replies import normalize_reply
from traces import check_trace, reference_to_trace
from teacher_ledger import eval_scores, read_rows, refuse_foreign


RECORDED_SHAPES = ("a JSON list of {question, model_prediction} (GSM8K-style '#### N', list position = test line), "
                   "JSONL of {id, input, cot: {generation: [text]}} ('\\boxed{N}', id = test line) or "
                   "JSONL of {question, ground_truth, MODEL: {solution, is_correct}} ('A: N', line = test line)")
EVAL_ROW_FIELDS = ("id", "output", "correct", "prompt_tokens", "completion_tokens", "latency_s", "finish_reason")


def read_recorded(path):
    """
    The outputs in a recorded teacher file, in whichever of the three published shapes it has
    (see RECORDED_SHAPES): (shape, {model: {test line: (question or None, reply or None, the
    publishers' own verdict or None)}}, duplicated ids). A repeated id keeps its first output. Replies come
    back in the form normalize_reply reads; any other shape is an error naming the file.
    Example: shape, models, dups = read_recorded("../shared/data/teachers/gsm8k-test-gpt-4.json"); list(models)
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--recorded {path} is a folder: give one recorded teacher file in it")
    if not path.is_file():
        raise FileNotFoundError(f"recorded teacher file {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}), so not a recorded teacher file") from None
    head, rows = text.lstrip()[:1], []
    # one JSON document (a list), else one JSON value per line
    for i, line in enumerate([text] if head == "[" else text.split("\n"), 1):
        try:
            rows += json.loads(line) if head == "[" else [json.loads(line)] if line.strip() else []
        except ValueError:
            where = path if head == "[" else f"{path}:{i}"
            raise ValueError(f"{where}: not valid JSON, so not a recorded teacher file; expected {RECORDED_SHAPES}") from None
    first = rows[0] if rows and isinstance(rows[0], dict) else {}
    name = re.sub(r"^gsm8k-test-", "", path.stem)  # the shared files are named gsm8k-test-<model>
    gpt3 = [k for k, v in first.items() if isinstance(v, dict) and "solution" in v]
    if head == "[" and "model_prediction" in first:
        shape, models = "gsm8k", [name]
    elif isinstance(first.get("cot"), dict) and "generation" in first["cot"] and "id" in first:
        shape, models = "boxed", [name]
    elif "ground_truth" in first and gpt3:
        shape, models = "gpt3", [f"{name}/{k}" for k in gpt3]
    else:
        raise ValueError(f"{path}: not a recorded teacher file of a known shape; expected {RECORDED_SHAPES}")
    out, dups = {m: {} for m in models}, 0
    for i, row in enumerate(rows):
        try:
            line, got = recorded_row(shape, row, i, name, gpt3)
        except (KeyError, TypeError, ValueError, IndexError):
            where = f"{path}: list entry {i}" if head == "[" else f"{path}:{i + 1}"
            raise ValueError(f"{where}: not a {shape}-shaped row like the first one; expected {RECORDED_SHAPES}") from None
        for m, value in got.items():
            if line in out[m]:
                dups += 1
                continue
            out[m][line] = value
    return shape, out, dups


def recorded_row(shape, row, i, name, gpt3):
    """
    (test line, {model: (question or None, reply or None, published verdict or None)}) of the i-th row
    of a recorded file of shape; a row of another shape or with values of the wrong type raises
    (KeyError, TypeError, ...), which read_recorded names by its line.
    Example: recorded_row("gsm8k", {"question": "q?", "model_prediction": "#### 1"}, 0, "gpt-4", [])[0] == 0
    """
    if shape == "gsm8k":
        line, got = i, {name: (row["question"], row["model_prediction"], row.get("result"))}
    elif shape == "boxed":
        gen, line = row["cot"]["generation"], row["id"]
        if not isinstance(gen, (list, type(None))) or type(line) is not int:
            raise TypeError("generation is not a list of texts, or id is not a whole number")
        got = {name: (row.get("input"), gen[0] if gen else None, row["cot"].get("score"))}
    else:  # one output per model; the GPT-3 models close with 'A: N' where GSM8K writes '#### N'
        line = i
        got = {f"{name}/{k}": (row["question"], re.sub(r"(^|\n)A:[ \t]*(?=[^\n]*\s*$)", r"\1#### ", row[k]["solution"]),
                               row[k].get("is_correct")) for k in gpt3}
    if any(not isinstance(text, (str, type(None))) for q, reply, _ in got.values() for text in (q, reply)):
        raise TypeError("a question or reply that is not text")
    return line, got


def gpt3_params(model):
    """
    Parameters of a model of the GPT-3 file when the name says it and one model alone answers:
    '6b_finetuning' is a 6B model; '_verification' rows are best of 100 samples by another model.
    Example: gpt3_params("gpt3-finetuned/175b_finetuning") == 175e9
    """
    m = re.search(r"/(\d+)b_finetuning$", model)
    return float(m.group(1)) * 1e9 if m else None


def run_recorded(path, model, problems, out=None, test_file=None):
    """
    Score one model of a recorded teacher file as `--eval` scores a live teacher: every reply
    normalized by normalize_reply and its answer extracted by the project's rule, written
    (atomically) as the same eval JSONL and summary, which also holds the publishers' own score.
    Test problems without an output are left out and named by their line in test.jsonl.
    The default out is traces/<model>-eval-test.jsonl; test_file, the record of the test file, goes into the summary.
    Example: run_recorded("../shared/data/teachers/gsm8k-test-gpt-4.json", None, load_gsm8k("test"))["n"] == 1319
    """
    shape, models, dups = read_recorded(path)
    if model is None:
        model = next(iter(models))
        if len(models) > 1:
            print(f"{path} holds {len(models)} models: {', '.join(models)}; scoring {model} (pick one with --model)",
                  file=sys.stderr)
    if model not in models:
        raise ValueError(f"{path} holds {', '.join(models)}, not {model!r}: pass one of them to --model")
    outputs, slug = models[model], re.sub(r"[^\w.-]+", "-", model)
    out = out or f"traces/{slug}-eval-test.jsonl"
    refuse_foreign(out)  # it is replaced whole: it must be teacher output, or new
    beyond = sorted(i for i in outputs if not 0 <= i < len(problems))
    if beyond:
        raise ValueError(f"{path}: output for test line {beyond[0]}, but test has lines 0-{len(problems) - 1}")
    rows, missing = [], []
    for i, p in enumerate(problems):
        if i not in outputs:
            missing.append(i)
            continue
        question, reply, published = outputs[i]
        if question is not None and question.split() != p.question.split():  # whitespace may differ, words not
            raise ValueError(f"{path}: the output for test line {i} answers another question ({question[:60]!r}); "
                             f"the file must follow GSM8K test's order")
        output = normalize_reply(reply) if reply else ""  # a reply the publisher lost counts as wrong
        pred = extract_answer(output)
        rows.append({"id": p.id, "question": p.question, "gold": p.answer, "output": output, "pred": pred,
                     "model": model, "correct": pred == p.answer, "prompt_tokens": None, "completion_tokens": None,
                     "latency_s": None, "finish_reason": None if reply else "empty", "published_correct": published})
    write_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    summary = {"mode": "recorded", "status": "done", "error": None, "model": model, "recorded": str(path),
               "shape": shape, "models_in_file": list(models), "split": "test", "out": str(out),
               "problems": len(problems), **eval_scores(rows), "missing": len(missing), "missing_lines": missing,
               "empty_outputs": sum(not r["output"] for r in rows), "duplicate_ids_skipped": dups,
               # the publishers' own scoring of the same replies (result, score, is_correct), where every row has it
               "published_exact_match": None if any(r["published_correct"] is None for r in rows) else
               round(sum(bool(r["published_correct"]) for r in rows) / max(1, len(rows)), 4),
               "params": gpt3_params(model),
               "test_file": test_file}  # what it was scored against (download.file_record: name, rows, sha256, official)
    write_atomic(f"{out}.summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def score_recorded(args):
    """
    `teacher.py --recorded FILE`: score one model of the file on every GSM8K test problem, matched
    to the file's outputs by its line; print the summary, warn of problems without an output, return 0.
    Example: score_recorded(get_parser().parse_args(["--recorded", "gsm8k-test-gpt-4.json"]))
    """
    test = load_gsm8k("test", args.data_dir)
    summary = run_recorded(args.recorded, args.model, test, args.out, file_record(resolve_data_dir(args.data_dir) / "test.jsonl"))
    print(json.dumps({k: v for k, v in summary.items() if k != "missing_lines"}))
    if summary["missing"]:
        lines = ", ".join(map(str, summary["missing_lines"][:20])) + (", ..." if summary["missing"] > 20 else "")
        print(f"warning: {args.recorded} has no output for {summary['missing']} test problems, at lines {lines} "
              f"of test.jsonl (0-based); they are left out of n", file=sys.stderr)
    return 0


def load_teacher_eval(path):
    """
    The teacher's score for evaluate.py: (rows, summary) of an --eval file and the summary
    beside it (rebuilt from the rows if the run was killed before it could write one).
    Example: rows, summary = load_teacher_eval("traces/gpt-4o-eval-test.jsonl"); summary["exact_match"]
    """
    rows = read_rows(path)
    bad = next((i for i, r in enumerate(rows, 1) if not (isinstance(r, dict) and set(EVAL_ROW_FIELDS) <= r.keys())), None)
    if bad is not None:  # traces (teacher.py without --eval) or a seen-stories set hold no scored replies
        raise ValueError(f"{path}: row {bad} is not a scored reply ({', '.join(EVAL_ROW_FIELDS)}): give the file "
                         f"`teacher.py --eval` or `teacher.py --recorded` wrote, not traces or a problem set")
    summary_path = Path(f"{path}.summary.json")
    if summary_path.exists():
        try:
            return rows, json.loads(summary_path.read_text(encoding="utf-8"))
        except ValueError:
            print(f"warning: {summary_path} is not valid JSON (cut short?); the scores are counted from {path}", file=sys.stderr)
    return rows, {"model": rows[0].get("model") if rows else None, **eval_scores(rows)}


def generate_reference(problems, out_path):
    """
    The GSM8K reference solutions in the trace format, written offline (atomically) in the
    same JSONL as teacher traces, so every later step can run without an API.
    Example: generate_reference(load_gsm8k("train"), "traces/reference-train.jsonl")
    """
    traces = [reference_to_trace(p.solution) for p in problems]
    write_atomic(out_path, "".join(json.dumps({
        "id": p.id, "question": p.question, "trace": t, "answer": p.answer, "source": "reference", "model": None,
        "sample": 0, "prompt_tokens": 0, "completion_tokens": 0, "latency_s": 0.0}, ensure_ascii=False) + "\n"
        for p, t in zip(problems, traces)))
    # kept as written by GSM8K's authors, false equations included: the summary says how many
    summary = {"mode": "reference", "out": str(out_path), "problems": len(problems), "problems_done": len(problems),
               "traces_in_file": len(problems),
               "traces_with_false_equation": sum(not check_trace(t)["all_hold"] for t in traces)}
    write_atomic(f"{out_path}.summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
