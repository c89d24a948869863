"""`slicercad liver reproduce --smoke`: the one command behind the README's liver tables runs end to end."""
import json

from slicercad.cli import main


def test_smoke_reproduce_writes_every_table(tmp_path, capsys):
    assert main(["liver", "reproduce", "--smoke", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("[liver reproduce") >= 2 * 5 + 1 and "arm no attention seed 1" in printed   # progress
    assert "epochs of the task recipe" in printed
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["synthetic"] is True
    bins = [b["bin"] for b in results["size_bins_alpha_0.1"]["by_size"]]
    assert bins == ["<10 mm", "10–20 mm", "≥20 mm"]
    assert set(results["alpha_study"]["rows"]) == {"none", "0", "0.1", "0.5", "1"}
    for row in results["alpha_study"]["rows"].values():
        assert len(row["balanced_accuracy"]) == len(results["alpha_study"]["seeds"]) >= 2
    text = (tmp_path / "results.md").read_text()
    assert "SYNTHETIC" in text
    for needle in ("| <10 mm |", "| 10–20 mm |", "| ≥20 mm |", "| all |", "| no attention |", "| α = 0.5 |",
                   "randomised weights (control)", "Logistic regression on per-phase ROI means", "Mask mode",
                   "Holm", "pasted at another position", "own null", "Holm/all"):
        assert needle in text
    study = results["alpha_study"]
    for key, row in study["rows"].items():            # every arm, no attention included, has focus and occlusion
        assert row["focus_mean"] is not None and "occlusion_change_control_mean" in row
        if key != study["reference"]:
            comp = row["vs_" + study["reference"]]
            assert {"balanced_accuracy", "focus_over_null", "occlusion_over_null"} <= set(comp)
            assert "focus" not in comp and "occlusion_excess" not in comp       # raw measures: confounded
            for m in ("balanced_accuracy", "focus_over_null", "occlusion_over_null"):
                assert comp[m]["p_holm_all"] >= comp[m]["p_holm"] >= comp[m]["p_bootstrap"]
        for k in ("focus_null_mean", "occlusion_over_null_mean", "input_change_control_mean"):
            assert row[k] is not None                   # every arm has its own null and the control's size
    assert results["size_bins_alpha_0.1"]["resampling_unit"] == "patient"
    assert results["size_bins_mask_mode"]["n"] == results["n_test"]
    overall = results["size_bins_alpha_0.1"]
    lo, hi = overall["accuracy_ci95"]
    assert lo <= overall["accuracy"] <= hi
