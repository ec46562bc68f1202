"""ablations.py: the training targets of every mode (train.py --mode)."""
import pytest

import ablations


def test_training_targets_one_per_mode():
    trace = "1 + 1 = 2\n2 * 3 = 6\n4 - 1 = 3\n#### 3"
    assert ablations.training_targets("answer", "3", None, "s", 2) == [("answer", ["#### 3"])]
    assert ablations.training_targets("cot", "3", None, "s", 2) == []  # no trace, nothing to learn from
    assert ablations.training_targets("cot", "3", [trace], "s", 2) == [("cot", [trace])]
    assert ablations.training_targets("filler", "3", [trace, trace], "s", 2) == [("cot", [".", ".", "#### 3"])] * 2
    assert ablations.training_targets("mixed", "3", [trace], "s", 2) == [("cot", ["[cot]", trace]), ("answer", ["[answer]", "#### 3"])]
    assert ablations.training_targets("mixed", "3", [], "s", 2) == [("answer", ["[answer]", "#### 3"])]
    (task, (shuffled,)), = ablations.training_targets("shuffled", "3", [trace], "s", 2)
    assert task == "cot" and shuffled.endswith("\n#### 3") and sorted(shuffled.split("\n")) == sorted(trace.split("\n"))
    assert [ablations.shuffled_target(trace, f"s-{k}") for k in range(20)] != [[trace]] * 20  # it does shuffle
    with pytest.raises(ValueError):
        ablations.training_targets("nope", "3", [trace], "s", 2)
