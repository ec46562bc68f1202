"""
A teacher's reply into the trace format, and the decision to keep it: normalize_reply turns an
LLM's text (markdown, LaTeX, GSM8K's <<a*b=c>> notes, "The answer is N") into traces.py's
format, validate_trace then applies traces.trace_verdict. Serves teacher.py.
"""
import re

from data import extract_answer, normalize_number
from traces import ANNOTATION, reference_to_trace, trace_verdict

ANSWER_PHRASE = re.compile(r"\banswer\s*(?:is|was|would be|will be|:|=)\s*:?\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?|-?\.\d+)",
                           re.IGNORECASE)


def tidy_note(m):
    """
    One <<expr=result>> calculator note (and the number written after it) made ready for
    reference_to_trace, for notes that models sampled with a calculator wrote: a result printed
    as a float's full repr is rounded to 6 decimals (17.142857142857142 claims 15 exact decimals,
    and the checker holds a claim to the decimals it shows), and another number written after
    the note is kept apart from its result (else '<<9300/125=74.4>>74' becomes '= 74.474').
    Example: tidy_note(re.match(r"<<(.*)=(.*)>>(\\d+)?", "<<120/7=17.142857142857142>>17")) == "<<120/7=17.142857>> 17"
    """
    expr, result, shown = m.group(1), m.group(2), m.group(3)
    same = shown is not None and normalize_number(shown) == normalize_number(result)
    if re.fullmatch(r"\s*-?\d+\.\d{10,}\s*", result):
        result = f"{float(result):.6f}".rstrip("0").rstrip(".")
    return f"<<{expr}={result}>>" + (result if same else f" {shown}" if shown else "")


def write_out_notes(text):
    """
    GSM8K's <<48/2=24>> calculator notes, as models trained on GSM8K write them, written out as
    the equations they hold (reference_to_trace's rule); text without one is returned as it is.
    Example: write_out_notes("48/2 = <<48/2=24>>24 left") == "48 / 2 = 24 left"
    """
    if not ANNOTATION.search(text):
        return text
    t = re.sub(r"<<([^<>=]*)=([^<>=]*)>>(-?\$?\d[\d,]*(?:\.\d+)?)?", tidy_note, text)
    return reference_to_trace(t + "\n#### 0").rsplit("\n", 1)[0]  # '#### 0': a last line for it to cut, dropped


def normalize_reply(text):
    """
    A reply in the trace format: GSM8K's <<a*b=c>> annotations written as equations, markdown and
    LaTeX dropped, x × ÷ − written * / -, one step per line without stray whitespace, and a closing
    "The answer is N" (or \\boxed{N}) turned into '#### N' when it is the only answer the reply
    states. Whatever follows the '#### N' line is dropped.
    Example: normalize_reply("**1.** 3 × 4 = 12\\n\\nThe answer is 12.") == "3 * 4 = 12\\n#### 12"
    """
    t = write_out_notes(text.replace("\r\n", "\n"))
    # \frac{a}{b} -> (a / b), whole, so '27 \div \frac{3}{4}' stays 27 / (3 / 4); inner fractions first
    frac = r"\\frac\{([^{}]*)\}\{([^{}]*)\}"
    while re.search(frac, t):
        t = re.sub(frac, lambda m: "(" + " / ".join(x.strip() if re.fullmatch(r"[\d.,]+|\(.*\)", x.strip()) else f"({x.strip()})"
                                                     for x in m.groups()) + ")", t)
    t = re.sub(r"\\(?:text|mathrm)\{([^{}]*)\}", r"\1", t)
    for a, b in [("\\times", "*"), ("\\cdot", "*"), ("\\div", "/"), ("\\$", "$"), ("\\%", "%"), ("$$", ""),
                 ("\\(", ""), ("\\)", ""), ("\\[", ""), ("\\]", ""), ("×", "*"), ("÷", "/"), ("⋅", "*"),
                 ("−", "-"), ("\u00a0", " "), ("**", ""), ("__", ""), ("`", "")]:
        t = t.replace(a, b)
    # the checker only sees * as multiplication: "3 x 4 = 12" would escape it, false or not
    t = re.sub(r"(?<=[\d)])\s*[xX]\s*(?=[\d($])", " * ", t)
    boxed = [normalize_number(b) for b in re.findall(r"\\boxed\{([^{}]*)\}", t)]  # how math-tuned models answer
    t = re.sub(r"\\boxed\{([^{}]*)\}", r"\1", t)
    # "... 72 clips. #### 72" -> its own line; a '####' before words is a markdown heading, not an answer
    t = re.sub(r"[ \t]*####[ \t]*(?=-?\$?\s*\.?\d)", "\n#### ", t)
    lines = []
    for line in t.split("\n"):
        line = re.sub(r"^\s*(?:####(?!\s*-?\$?\s*\.?\d)|#{1,3}(?!#)|#{5,6}|>|[-*+](?=\s)|\d+[.)](?=\s))", "",
                      line)  # headings, quotes, lists
        line = re.sub(r"\s+", " ", line).strip()
        if line:
            lines.append(line)
    final = next((i for i, line in enumerate(lines) if line.startswith("####")), None)
    if final is not None:
        answer = extract_answer(lines[final])
        return "\n".join(lines[:final] + [f"#### {answer}" if answer is not None else lines[final]])
    # no '####': take a closing "The answer is N" (or \boxed{N}) only if every stated answer agrees
    stated = {normalize_number(m.group(1)) for m in ANSWER_PHRASE.finditer("\n".join(lines))} | set(boxed)
    m = ANSWER_PHRASE.search(lines[-1]) if lines else None
    if (m or boxed) and len(stated) == 1 and None not in stated:
        answer = stated.pop()
        rest = lines[-1][:m.start()] + lines[-1][m.end():] if m else lines[-1]
        if not re.search(r"\d", rest) or normalize_number(lines[-1]) == answer:  # the line said nothing else
            lines = lines[:-1]
        return "\n".join(lines + [f"#### {answer}"])
    return "\n".join(lines)


def validate_trace(text, finish_reason, gold, min_equations=1):
    """
    Normalize a reply and decide whether to keep it: (trace, None) if accepted, else
    (trace, reason) with reason one of truncated, unparsed, wrong_answer, false_equation, no_equation.
    Example: validate_trace("2 + 2 = 5\\n#### 5", "stop", "5") == ("2 + 2 = 5\\n#### 5", "false_equation")
    """
    trace = normalize_reply(text)
    if finish_reason == "length":  # a cut-off reply may still end in a number: never trust it
        return trace, "truncated"
    return trace, trace_verdict(trace, gold, min_equations)  # the checks train.py --traces applies too
