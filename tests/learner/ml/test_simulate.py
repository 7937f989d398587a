"""Simulation end to end on a small generated dataset with the tiny random BERT."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from learner.ml import simulate
from learner.ml.simulate import eval_points, main, split_rows

WORDS = {
    "sport": ["goal", "match", "team", "league", "coach", "score", "player", "cup"],
    "money": ["bank", "stock", "market", "profit", "shares", "trade", "price", "loan"],
    "food": ["bread", "cheese", "apple", "soup", "dinner", "butter", "salad", "rice"],
}


def write_dataset(path: Path, n: int = 120, *, multi_label: bool = False) -> Path:
    rng = random.Random(3)
    names = sorted(WORDS)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            label = names[i % 3]
            words = [rng.choice(WORDS[label]) for _ in range(rng.randint(3, 12))]
            value: Any = label
            if multi_label:
                extra = names[(i // 3) % 3]
                value = sorted({label, extra}) if i % 2 else [label]
                words += [rng.choice(WORDS[extra])] * (i % 2)
            fh.write(json.dumps({"text": " ".join(words), "label": value,
                                 "group": f"g{i % 17}", "split": "test" if i % 5 == 0 else "train"})
                     + "\n")
    return path


def read_curve(out: Path) -> list[dict[str, str]]:
    with open(out / "learning_curve.csv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_fast_simulation_writes_consistent_outputs(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_dataset(tmp_path / "toy.jsonl")
    out = tmp_path / "run"
    assert main([
        "--data", str(data), "--out", str(out), "--model", str(tiny_model_dir),
        "--max-length", "32", "--strategies", "margin,random,badge,cal,bald",
        "--seeds", "0,1", "--seed-size", "10", "--batch-size", "10", "--budget", "40",
        "--quiet",
    ]) == 0
    for name in ("learning_curve.csv", "summary.json", "summary.csv",
                 "learning_curve.png", "learning_curve.svg"):
        assert (out / name).stat().st_size > 0, name
    rows = read_curve(out)
    # 5 strategies x 2 seeds x evaluation points 10, 20, 30, 40.
    assert len(rows) == 5 * 2 * 4
    assert {r["n_labels"] for r in rows} == {"10", "20", "30", "40"}
    assert all(0.0 <= float(r["macro_f1"]) <= 1.0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["full_data"]["macro_f1"] > 0
    assert summary["target_macro_f1"] == pytest.approx(0.95 * summary["full_data"]["macro_f1"])
    by_name = {s["strategy"]: s for s in summary["strategies"]}
    assert set(by_name) == {"margin", "random", "badge", "cal", "bald"}
    # The summary is computed from the curve: the final F1 is the mean of the last points.
    last = [float(r["macro_f1"]) for r in rows if r["strategy"] == "margin"
            and r["n_labels"] == "40"]
    assert by_name["margin"]["final_macro_f1_mean"] == pytest.approx(np.mean(last), abs=1e-5)
    printed = capsys.readouterr().out
    assert "labels to 95%" in printed and "margin" in printed
    # The embedding cache lives in the output folder, never the working directory.
    assert list((out / ".cache").glob("embeddings-*.npy"))


def test_simulation_is_repeatable(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_dataset(tmp_path / "toy.jsonl")
    args = ["--data", str(data), "--model", str(tiny_model_dir), "--max-length", "32",
            "--seeds", "0", "--budgets", "10,20,30", "--quiet"]
    main([*args, "--out", str(tmp_path / "a")])
    main([*args, "--out", str(tmp_path / "b")])
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in read_curve(tmp_path / "a")]
    again = [{k: v for k, v in r.items() if k != "seconds"} for r in read_curve(tmp_path / "b")]
    assert strip == again


def test_multi_label_simulation_runs(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_dataset(tmp_path / "multi.jsonl", multi_label=True)
    out = tmp_path / "run"
    main(["--data", str(data), "--out", str(out), "--model", str(tiny_model_dir),
          "--max-length", "32", "--seeds", "0", "--budgets", "10,20,30", "--quiet",
          "--strategies", "margin,entropy,random"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["task_type"] == "multi_label"
    assert len(read_curve(out)) == 3 * 3


def test_full_mode_fine_tunes_each_round(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_dataset(tmp_path / "toy.jsonl", n=60)
    out = tmp_path / "run"
    main(["--data", str(data), "--out", str(out), "--model", str(tiny_model_dir),
          "--max-length", "32", "--seeds", "0", "--budgets", "10,20", "--mode", "full",
          "--epochs", "1", "--strategies", "margin,random", "--full-data", "--quiet"])
    rows = read_curve(out)
    assert [(r["strategy"], r["n_labels"]) for r in rows] == [
        ("margin", "10"), ("margin", "20"), ("random", "10"), ("random", "20")]
    assert json.loads((out / "summary.json").read_text())["full_data"]["macro_f1"] >= 0


def test_split_field_uses_the_standard_split() -> None:
    rows = [{"split": "train"}, {"split": "test"}, {"split": "train"}]
    train, test = split_rows(rows, split_field="split")
    assert train.tolist() == [0, 2] and test.tolist() == [1]


def test_group_field_keeps_each_group_on_one_side() -> None:
    rows = [{"movie": f"m{i % 10}"} for i in range(100)]
    train, test = split_rows(rows, group_field="movie", holdout_fraction=0.3)
    train_groups = {rows[i]["movie"] for i in train}
    test_groups = {rows[i]["movie"] for i in test}
    assert not train_groups & test_groups
    assert 20 <= len(test) <= 40


def test_random_holdout_fraction() -> None:
    train, test = split_rows([{}] * 50, holdout_fraction=0.2)
    assert len(test) == 10 and len(train) == 40
    assert not set(train) & set(test)


def test_eval_points_budgets_and_steps() -> None:
    assert eval_points(seed_size=25, batch_size=25, budget=100, budgets=None,
                       pool_size=1000) == [25, 50, 75, 100]
    assert eval_points(seed_size=25, batch_size=None, budget=None, budgets=[400, 25, 100],
                       pool_size=300) == [25, 100, 300]


def test_unknown_strategy_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        simulate.build_parser().parse_args(["--data", "x.jsonl", "--strategies", "nope"])


def test_manage_py_command_reuses_the_same_options(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("django")
    from learner.management.commands.simulate import Command

    parser = Command().create_parser("manage.py", "simulate")
    ours = {a.dest for a in simulate.build_parser()._actions} - {"help"}
    assert ours <= {a.dest for a in parser._actions}
    seen: dict[str, Any] = {}
    monkeypatch.setattr(simulate, "run", lambda args: seen.update(vars(args)))
    options = vars(parser.parse_args(["--data", "x.jsonl", "--seeds", "4"]))
    Command().handle(**options)
    assert seen["data"] == "x.jsonl" and seen["seeds"] == [4]
    assert "verbosity" not in seen


def test_loop_mode_replays_the_products_loop_and_evaluates_each_rounds_model(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cold start, fast refreshes and rounds through the worker's own functions: every
    selection goes through learner.ml.queue.select_batch, every round is a TextClassifier
    fit with the ladder, and the curve's points are those rounds' models."""
    from learner.ml import queue
    from learner.ml.simulate import loop
    from learner.ml.train import TextClassifier

    calls = {"select": 0, "fit": 0}
    real_select, real_fit = queue.select_batch, TextClassifier.fit

    def counted_select(*args: Any, **kwargs: Any) -> Any:
        calls["select"] += 1
        return real_select(*args, **kwargs)

    def counted_fit(self: TextClassifier, *args: Any, **kwargs: Any) -> TextClassifier:
        calls["fit"] += 1
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(loop, "select_batch", counted_select)
    monkeypatch.setattr(queue, "select_batch", counted_select)
    monkeypatch.setattr(TextClassifier, "fit", counted_fit)
    data = write_dataset(tmp_path / "toy.jsonl")
    out = tmp_path / "loop"
    result = simulate.run(simulate.build_parser().parse_args([
        "--data", str(data), "--out", str(out), "--model", str(tiny_model_dir),
        "--max-length", "32", "--mode", "loop", "--strategies", "least_confidence,random",
        "--seeds", "0", "--rounds-at", "20,40", "--refresh-every", "5", "--quiet",
        "--train-config", json.dumps({"ladder_min_labels": 10, "max_steps": 10}),
    ]))
    rows = read_curve(out)
    assert [(r["strategy"], r["n_labels"]) for r in rows] == [
        ("least_confidence", "20"), ("least_confidence", "40"), ("random", "20"),
        ("random", "40")]
    assert all(r["rung"] in {"head", "full"} and float(r["ece"]) >= 0 for r in rows)
    # One fit for the full-data reference, one per round of each strategy.
    assert calls["fit"] == 1 + 2 + 2
    # The cold start, a refresh every 5 labels between rounds, and one after round 1 for
    # the uncertainty strategy; the random baseline selects nothing.
    assert calls["select"] == 1 + 3 + 1 + 3
    assert result.full_score is not None and result.full_score["macro_f1"] > 0
    assert result.settings["random_share"] == 0.1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["train_config"]["mode"] == "auto"


def test_loop_mode_can_stop_a_run_once_it_reaches_the_target(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    data = write_dataset(tmp_path / "toy.jsonl")
    result = simulate.run(simulate.build_parser().parse_args([
        "--data", str(data), "--out", str(tmp_path / "run"), "--model", str(tiny_model_dir),
        "--max-length", "32", "--mode", "loop", "--strategies", "random", "--seeds", "0",
        "--rounds-at", "20,40,60", "--quiet", "--stop-at-target", "--full-data-score", "0.01",
    ]))
    assert [p.n_labels for p in result.curves] == [20]  # any model beats 95% of 0.01
