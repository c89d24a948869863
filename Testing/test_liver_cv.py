"""``Scripts/liver_cv.py`` (``make liver-cv``): patient-disjoint folds on the training phantom, every
candidate x fold in the table, the stated selection rule."""
import importlib.util
import json
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("liver_cv", ROOT / "Scripts" / "liver_cv.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def cv(tmp_path_factory):
    mod = _script()
    out = tmp_path_factory.mktemp("liver_cv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mod.main(["--n-train", "16", "--folds", "2", "--epochs-scale", "0.01", "--candidates",
                  "recipe,no_breath_hold_aug", "--out", str(out)])
    return mod, out, json.loads((out / "results.json").read_text()), (out / "results.md").read_text()


def test_folds_are_patient_disjoint_on_the_training_phantom(cv):
    _, _, res, _ = cv
    assert res["complete"] and res["synthetic"] and res["settings"]["split"] == "train"
    held = []
    for fold in res["folds"]:
        assert fold["held_out_patients"] and not set(fold["train_patients"]) & set(fold["held_out_patients"])
        held += fold["held_out_patients"]
    assert len(held) == len(set(held)) == res["settings"]["n_patients"]   # every patient held out exactly once
    assert all("-train-" in p for p in held)                                 # never the test split


def test_table_has_every_candidate_and_fold(cv):
    _, _, res, md = cv
    assert {(t["candidate"], t["fold"]) for t in res["trainings"]} == {
        (c, f) for c in ("recipe", "no_breath_hold_aug") for f in (1, 2)}
    for name, row in res["rows"].items():
        assert len(row["fold_balanced_accuracy"]) == 2 and row["complete"]
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {name}"))
        assert line.count("|") == 4 + 2 + 2 and "–" not in line                  # 4 knob cols, 2 folds, mean ± sd
    assert res["rows"]["recipe"]["recipe"]["epochs"] == 1                    # --epochs-scale, at least 1 epoch
    assert "2-fold patient-level CV" in md and "16 lesions" in md             # settings in the header


def test_chosen_follows_the_rule(cv):
    mod, _, res, md = cv
    rows = res["rows"]
    best = max(round(r["mean"], 3) for r in rows.values())
    tied = [n for n in res["candidates"] if round(rows[n]["mean"], 3) == best]
    assert res["chosen"] in tied
    assert res["chosen"] == min(tied, key=lambda n: mod.complexity(rows[n]["recipe"]))
    assert f"| {res['chosen']} **(chosen)**" in md
    # the rule itself: highest mean wins; a tie goes to the simpler candidate
    recipes = {n: mod.candidate_recipe(n) for n in mod.CANDIDATES}
    fake = {n: {"mean": 0.5, "recipe": r} for n, r in recipes.items()}
    assert mod.choose(fake, list(fake)) == "plain_15"
    fake["recipe"]["mean"] = 0.6
    assert mod.choose(fake, list(fake)) == "recipe"
    fake["epochs_15"]["mean"] = 0.6001                                       # equal at 3 decimals -> simpler
    assert mod.choose(fake, list(fake)) == "epochs_15"
