"""replies.py: a teacher's reply into the trace format, and the reasons a reply is not kept."""
import pytest

import replies


@pytest.mark.parametrize("reply,trace", [
    ("**1.** 3 × 4 = 12\n\nThe answer is 12.", "3 * 4 = 12\n#### 12"),
    ("## Solution\n- 3 x 4 = 12 apples. #### 12 apples\nHope this helps!", "Solution\n3 * 4 = 12 apples.\n#### 12"),
    ("\\[ 48 \\div 2 = 24 \\]\nSo 48 + 24 = \\boxed{72}", "48 / 2 = 24\nSo 48 + 24 = 72\n#### 72"),
    ("Answer: $1,200.00", "#### 1200"),
    ("3 * 4 = 12, so the answer is 12", "3 * 4 = 12, so the answer is 12\n#### 12"),
    ("The answer is 5.\nNo wait, the answer is 6.", "The answer is 5.\nNo wait, the answer is 6."),  # ambiguous: left alone
    ("  12 −  5 = 7  \r\n\r\n####   $7", "12 - 5 = 7\n#### 7"),
    ("#### Step 1\nShe has 16-3 = <<16-3=13>>13 eggs.\n\\(\\boxed{13}\\)", "Step 1\nShe has 16 - 3 = 13 eggs.\n#### 13"),
    ("So 48 + 24 = $<<48+24=72>>72 in all.", "So 48 + 24 = 72 in all."),  # GSM8K's notes, without a '####'
    ("27 \\div \\frac{3}{4} = 36 and \\frac{\\frac{1}{2}}{4 - 2} = \\boxed{0.25}",       # a fraction stays whole
     "27 / (3 / 4) = 36 and ((1 / 2) / (4 - 2)) = 0.25\n#### 0.25"),
    ("It takes 8770 / 15 = <<8770/15=584.6666666666666>>584 boxes.",       # a sampled model's own number
     "It takes 8770 / 15 = 584.666667 584 boxes."),  # after the note: kept apart; a float's repr rounded
])
def test_normalize_reply(reply, trace):
    assert replies.normalize_reply(reply) == trace


def test_validate_trace_reasons():
    assert replies.validate_trace("3 x 4 = 13\nThe answer is 13", "stop", "13")[1] == "false_equation"  # 'x' is seen
    assert replies.validate_trace("3 * 4 = 12\n#### 12", "length", "12")[1] == "truncated"
    assert replies.validate_trace("3 * 4 = 12", "stop", "12")[1] == "unparsed"
    assert replies.validate_trace("It is twelve.\n#### 12", "stop", "12")[1] == "no_equation"
    assert replies.validate_trace("It is twelve.\n#### 12", "stop", "12", min_equations=0)[1] is None
