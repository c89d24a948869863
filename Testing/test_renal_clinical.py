"""KiTS23 clinical baseline (real data): selection counts vs an independent count, sex values, statsmodels vs
scikit-learn, Youden rule, CV folds, permuted-label control, bad input."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from slicercad.errors import InputError
from slicercad.renal import constants
from slicercad.renal.kits23 import (BUNDLED_SUBSET, EXCLUDED_SUBTYPES, SEX_VALUES, bundled_statistics,
                                    derive_statistics, load_kits23, select_small_solid)
from slicercad.renal.logistic import cv_splits, fit_table, newton_fit, sklearn_fit, youden_cutoff

MIRROR = Path("/work/.mirror/neheller+kits23/repo")


def _mirror_json(tmp_path):
    if not (MIRROR / "HEAD").exists() and not (MIRROR / ".git").exists():
        pytest.skip("no local KiTS23 checkout")
    out = tmp_path / "kits23.json"
    try:
        out.write_bytes(subprocess.run(["git", "-C", str(MIRROR), "show", "HEAD:dataset/kits23.json"],
                                       capture_output=True, check=True).stdout)
    except (subprocess.CalledProcessError, FileNotFoundError):
        pytest.skip("KiTS23 checkout unreadable")
    return out


def _independent_count(cases):
    """The seed's population counted without the loader: solid masses <= 4 cm with histology."""
    keep = [c for c in cases
            if isinstance(c.get("radiographic_size"), (int, float)) and c["radiographic_size"] <= 4.0
            and c.get("malignant") in (True, False) and c.get("tumor_histologic_subtype")
            and c["tumor_histologic_subtype"] not in {"cyst", "multilocular_cystic_rcc", "transitional_cell_carcinoma"}]
    return len(keep), sum(1 for c in keep if c["malignant"] is False)


def test_bundled_subset_counts_match_an_independent_count():
    cases = load_kits23(BUNDLED_SUBSET)
    assert len(cases) == 489
    sel = select_small_solid(cases)
    counts = sel.counts()
    n, n_benign = _independent_count(json.loads(BUNDLED_SUBSET.read_text())["cases"])
    assert (counts["n_masses"], counts["n_benign"]) == (n, n_benign) == (236, 28)
    assert counts["n_malignant"] == 208
    assert sum(counts["excluded"].values()) + counts["n_masses"] == 489
    assert counts["excluded"]["cystic_or_urothelial"] == 10 and counts["excluded"]["no_histology"] == 6


def test_bundled_subset_equals_the_kits23_json(tmp_path):
    full = json.loads(_mirror_json(tmp_path).read_text())
    sub = json.loads(BUNDLED_SUBSET.read_text())
    keys = ("case_id", "age_at_nephrectomy", "gender", "radiographic_size", "malignant", "tumor_histologic_subtype")
    assert sub["cases"] == [{k: c.get(k) for k in keys} for c in full]
    assert "MIT License" in sub["licence"] and "Nicholas Heller" in sub["licence"]
    assert _independent_count(full) == (236, 28)


def test_bundled_statistics_are_derived_from_the_subset():
    stats = bundled_statistics()
    fresh = derive_statistics(select_small_solid(load_kits23(BUNDLED_SUBSET)))
    assert stats["classes"] == json.loads(json.dumps(fresh["classes"]))
    assert stats["counts"]["n_benign"] == 28 and "MIT License" in stats["licence_text"]


def test_every_sex_value_is_handled():
    cases = load_kits23(BUNDLED_SUBSET)
    assert {c["gender"] for c in cases} <= set(SEX_VALUES)
    birth = select_small_solid(cases, "assigned-at-birth")
    assert birth.recoded_sex == [("case_00299", "transgender_male_to_female", "male")]
    assert next(m for m in birth.masses if m.case_id == "case_00299").male == 1
    excl = select_small_solid(cases, "exclude")
    assert excl.counts()["excluded"]["sex_excluded"] == 1 and excl.counts()["n_masses"] == 235
    with pytest.raises(InputError, match="case_x.*'nonbinary'"):
        select_small_solid([{"case_id": "case_x", "gender": "nonbinary"}])
    with pytest.raises(InputError, match="--sex-policy"):
        select_small_solid(cases, "guess")


def test_4cm_limit_and_exclusion_rules():
    base = {"age_at_nephrectomy": 60, "gender": "female", "malignant": True, "tumor_histologic_subtype": "papillary_rcc"}
    cases = [dict(base, case_id="a", radiographic_size=4.0), dict(base, case_id="b", radiographic_size=4.01),
             dict(base, case_id="c", radiographic_size=None), dict(base, case_id="d", radiographic_size=2.0,
                                                                   malignant=None),
             dict(base, case_id="e", radiographic_size=2.0, tumor_histologic_subtype="cyst"),
             dict(base, case_id="f", radiographic_size=2.0, gender=None)]
    sel = select_small_solid(cases)
    assert [m.case_id for m in sel.masses] == ["a"]
    assert sel.excluded["over_4cm"] == ["b"] and sel.excluded["no_radiographic_size"] == ["c"]
    assert sel.excluded["no_histology"] == ["d"] and sel.excluded["cystic_or_urothelial"] == ["e"]
    assert sel.excluded["sex_excluded"] == ["f"]
    assert constants.SIZE_LIMIT_MM == 40.0 and set(EXCLUDED_SUBTYPES) == {"cyst", "multilocular_cystic_rcc",
                                                                           "transitional_cell_carcinoma"}


def test_statsmodels_agrees_with_unpenalised_sklearn_and_newton():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(60, 12, 300), rng.integers(0, 2, 300), rng.uniform(1, 4, 300)])
    y = (rng.random(300) < 1 / (1 + np.exp(-(-3 + 0.03 * X[:, 0] + 0.5 * X[:, 1] + 0.4 * X[:, 2])))).astype(int)
    names = constants.CLINICAL_FEATURES
    table = fit_table(X, y, names)
    b0, b, _ = sklearn_fit(X, y, names)
    sm = np.array([table["predictors"][k]["coef"] for k in ("intercept",) + names])
    assert np.max(np.abs(sm - np.r_[b0, b])) < 1e-5
    assert np.max(np.abs(sm - newton_fit(X, y))) < 1e-6
    row = table["predictors"]["size_cm"]
    assert row["odds_ratio"] == pytest.approx(np.exp(row["coef"]))
    assert row["odds_ratio_ci95"][0] < row["odds_ratio"] < row["odds_ratio_ci95"][1] and 0 <= row["p"] <= 1


def test_youden_rule():
    y = [0, 0, 0, 1, 1, 1]
    s = [0.1, 0.2, 0.6, 0.4, 0.7, 0.9]
    r = youden_cutoff(y, s)
    # cut-offs: 0.7 -> sens 2/3 spec 1 (J 0.667); 0.4 -> sens 1, spec 2/3 (J 0.667): tie -> the highest, 0.7
    assert r["cutoff"] == 0.7 and r["j"] == pytest.approx(2 / 3)
    assert youden_cutoff([0, 1], [0.2, 0.8])["cutoff"] == 0.8
    with pytest.raises(InputError):
        youden_cutoff([1, 1], [0.2, 0.3])


def test_cv_folds_are_stratified_grouped_and_repeated():
    assert (constants.CV_FOLDS, constants.CV_REPEATS) == (5, 10)
    y = np.array([0] * 12 + [1] * 48)
    groups = [f"p{i // 2}" for i in range(60)]          # two masses per patient
    splits = cv_splits(y, groups, 5, 3, seed=0)
    assert len(splits) == 15
    for r in range(3):
        tested = np.concatenate([te for rr, _, te in splits if rr == r])
        assert sorted(tested.tolist()) == list(range(60))
    for _, tr, te in splits:
        assert not {groups[i] for i in tr} & {groups[i] for i in te}
        assert set(y[te].tolist()) == {0, 1}
    with pytest.raises(InputError, match="5-fold"):
        cv_splits(np.array([0, 0, 1, 1, 1, 1]), list("abcdef"))


def test_clinical_baseline_cli(tmp_path):
    from slicercad.cli import main

    out = tmp_path / "kb.json"
    assert main(["renal", "clinical-baseline", "--kits23", str(BUNDLED_SUBSET), "--json", str(out),
                 "--repeats", "2", "--permutations", "8"]) == 0
    r = json.loads(out.read_text())
    assert (r["n_masses"], r["n_benign"], r["synthetic"]) == (236, 28, False)
    assert set(r["coefficients"]) == {"intercept", "age_years", "male", "size_cm"}
    assert all({"coef", "odds_ratio", "p"} <= set(v) for v in r["coefficients"].values())
    assert r["sklearn_agreement"]["max_abs_difference"] < 1e-5
    assert 0.5 < r["auc"] < 0.85 and r["auc_ci95"][0] < r["auc"] < r["auc_ci95"][1]
    assert r["permuted_label_control"]["covers_0.5"]


def test_bad_kits23_input(tmp_path):
    with pytest.raises(InputError, match="missing.json"):
        load_kits23(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1}')
    with pytest.raises(InputError, match="bad.json"):
        load_kits23(bad)
    bad.write_text('[{"case_id": "c1", "radiographic_size": "big"}]')
    with pytest.raises(InputError, match="c1.*radiographic_size"):
        select_small_solid(load_kits23(bad))
