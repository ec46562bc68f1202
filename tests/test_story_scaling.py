"""story_scaling.py: the power-law fit, the forecast and the bootstrap on run folders whose numbers follow an exact law."""
import json
import math

import pytest

import story_scaling


def test_fit_and_stories_needed_are_exact_on_a_power_law():
    a, b = story_scaling.fit_power_law([100, 1000, 10000], [3.0 * n ** -0.25 for n in (100, 1000, 10000)])
    assert a == pytest.approx(3.0) and b == pytest.approx(-0.25)
    assert story_scaling.stories_needed(3.0, -0.25, 3.0 * 1e6 ** -0.25) == pytest.approx(1e6)
    assert story_scaling.stories_needed(3.0, 0.0, 1.0) == math.inf  # flat: never
    assert story_scaling.stories_needed(3.0, 0.1, 1.0) == math.inf  # the wrong way: never


def write_run(folder, n, loss_at, seen_loss=None, problems=8):
    """A run folder as train.py and evaluate.py leave it: every val problem at loss loss_at(n), 10 target tokens each."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"mode": "cot", "train_stories": n, "seed": 1}))
    sets = {"val": loss_at(n)} | ({"seen": seen_loss} if seen_loss else {})
    for name, loss in sets.items():
        (folder / f"eval-{name}").mkdir()
        rows = [{"id": f"p{i}", "target_nats": 10 * loss, "target_tokens": 10,
                 "step_match": {"matched": 1, "n_output": 2, "n_reference": 2}} for i in range(problems)]
        (folder / f"eval-{name}" / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (folder / f"eval-{name}" / "eval.json").write_text(json.dumps({"results": [{"target_loss": loss, "exact_match": 0.02}]}))


def test_forecast_reads_run_folders_and_finds_where_val_meets_seen(tmp_path):
    law = lambda n: 2.0 * n ** -0.2
    for n in (900, 1800, 3600):
        write_run(tmp_path / f"cot-n{n}", n, law, seen_loss=law(7.2e6) if n == 3600 else None)
    runs = story_scaling.read_runs(tmp_path, "cot")
    f = story_scaling.forecast(runs, "target_loss", reps=20)
    assert f["fit"]["b"] == pytest.approx(-0.2) and f["fit"]["a"] == pytest.approx(2.0)
    assert f["stories_needed"] == pytest.approx(7.2e6, rel=1e-6)
    assert f["interval95"] == pytest.approx([7.2e6, 7.2e6], rel=1e-6)  # identical problems: every resample agrees
    assert [p["stories"] for p in f["points"]] == [900, 1800, 3600]
    story_scaling.main([str(tmp_path), "--reps", "10", "--out", str(tmp_path / "fit")])
    assert json.loads((tmp_path / "fit" / "scaling.json").read_text())["target_loss"]["stories_needed"] == pytest.approx(7.2e6, rel=1e-6)
    assert (tmp_path / "fit" / "target_loss.svg").read_text().startswith("<svg")
