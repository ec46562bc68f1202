"""
Side-by-side traces for the published CPU study, whose predictions were not kept: the student
outputs that the study's own report printed as examples (results/study-cpu/report/report.md,
written when the predictions existed), each beside a recorded teacher's trace of the same
problem, with the student's first false or wrong step marked by evaluate.mark_first_slip.

    python results/study-cpu/report-teachers/side_by_side.py runs/teachers/gpt-4.jsonl

Writes side-by-side.md beside this file. A new study keeps its predictions, and then
`evaluate.py --compare --teacher ...` writes this section into report.md itself.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
import data  # noqa: E402
import files  # noqa: E402
from report import block, load_teacher, mark_first_slip  # noqa: E402

STUDENTS = ("cot", "mixed/cot", "shuffled")  # the students that write equations, without the calculator


def printed_examples(report, label):
    """(id, question, gold, output) of every example the report printed for one student against the baseline."""
    section = report.split(f"## Examples: {label} against answer\n")[1].split("\n## ")[0]
    pattern = rf"\*\*(test-\d+)\*\* — (.*?)\n\nGold answer: \*\*(.*?)\*\*.*?\n{re.escape(label)}:\n```\n(.*?)\n```"
    return re.findall(pattern, section, re.S)


def main(teacher_file):
    report = (ROOT / "results/study-cpu/report/report.md").read_text(encoding="utf-8")
    rows, summary = load_teacher(teacher_file)
    teacher, name = {r["id"]: r for r in rows}, summary["model"]
    lines = ["# Side by side: the CPU study's students beside a recorded teacher", "",
             f"Teacher: {name} (`{summary['recorded']}`, scored by `teacher.py --recorded`). Students: the outputs "
             f"that `results/study-cpu/report/report.md` printed as its examples (the predictions were not kept), "
             f"the same problems for each. Marked: the student's first equation that is false, or whose result is "
             f"none of the teacher's values. Written by `python {Path(__file__).relative_to(ROOT)} {teacher_file}`.", ""]
    for label in STUDENTS:
        lines += [f"## {label}", ""]
        for pid, question, gold, output in printed_examples(report, label):
            t = teacher[pid]
            right = lambda text: "right" if data.extract_answer(text) == gold else "wrong"
            lines += [f"**{pid}** — {question}", "", f"Gold answer: **{gold}**", "",
                      f"{name} ({right(t['output'])}):", block(t["output"]), "",
                      f"{label} ({right(output)}):", block(mark_first_slip(output, t["output"])), ""]
    files.write_atomic(Path(__file__).with_name("side-by-side.md"), "\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
