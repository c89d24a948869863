"""Seed 000 study pieces on the SYNTHETIC phantom: focus score, randomised control, occlusion, alpha study."""
import numpy as np
import pytest
import torch

from slicercad.liver.dataset import build_dataset
from slicercad.liver.controls import focus_scores, focus_study, randomised_copy
from slicercad.liver.fitting import train_network
from slicercad.liver.study import alpha_study, size_bin_table
from slicercad.synth.liver_lesions import CLASSES
from slicercad.synth.liver_lesions_phantom import generate_lesions

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    return (build_dataset(generate_lesions(80, seed=5), CLASSES),
            build_dataset(generate_lesions(40, seed=6, split="test"), CLASSES, seed=1))


def test_focus_score_is_normalised_by_lesion_area():
    mask = np.zeros((1, 10, 10), bool)
    mask[0, 2:4, 2:4] = True
    assert focus_scores(np.ones((1, 10, 10)), mask)[0] == pytest.approx(1.0)
    assert focus_scores(mask.astype(float), mask)[0] == pytest.approx(25.0)
    assert np.isnan(focus_scores(np.zeros((1, 10, 10)), mask)[0])


def test_trained_network_focuses_on_lesion_more_than_randomised_control(data):
    train, test = data
    model, t = train_network(train, 0.1, seed=0, epochs=30, channels=(16, 32, 64))
    assert t > 0
    rand = randomised_copy(model)
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), rand.state_dict().values()))
    result = focus_study(model, t, test)
    assert result["synthetic"] and result["n_occluded"] > 0
    assert result["focus_trained_mean"] > result["focus_random_mean"]
    assert result["occlusion_change_lesion_mean"] > result["occlusion_change_control_mean"]
    table = size_bin_table(model, t, test, n_boot=50)
    assert [b["bin"] for b in table["by_size"]][0].startswith("<10") and 0 <= table["accuracy"] <= 1


def test_alpha_study_reports_every_alpha_and_a_paired_test(data):
    train, test = data
    study = alpha_study(train, test, alphas=(None, 0.1), seeds=(0, 1), epochs=1, channels=(8, 16), n_boot=100)
    assert set(study["rows"]) == {"none", "0.1"} and study["synthetic"]
    row = study["rows"]["none"]
    assert len(row["accuracy"]) == 2 and "p_holm" in row["vs_0.1"]["balanced_accuracy"]
    assert np.isfinite(row["focus_mean"]) and np.isfinite(row["focus_null_mean"])     # every arm has its own null
    assert {"focus_over_null", "occlusion_over_null"} <= set(row["vs_0.1"]) and "focus" not in row["vs_0.1"]
    assert row["focus_over_null_mean"] == pytest.approx(row["focus_mean"] - row["focus_null_mean"], abs=1e-6)
    for r in study["rows"].values():                               # the control's size at the network input
        assert r["input_change_control_mean"] > 0 and r["input_change_lesion_mean"] > 0
    assert "per measure" in study["correction"] and "all arms x measures" in study["correction"]


def test_control_is_attenuated_at_the_input_of_an_attention_model_not_without_attention():
    """The pasted control lies where G is small: an attention arm sees it weighted by (G + alpha)."""
    import torch
    from slicercad.liver.controls import _elsewhere, _input_change, _paste
    from slicercad.liver.model import LiverLesionNet, model_input
    from slicercad.liver.attention import attention_from_diameter
    rr, cc = np.mgrid[0:32, 0:32]
    lesion = (rr - 15.5) ** 2 + (cc - 15.5) ** 2 <= 16
    x = np.ones((8, 32, 32), np.float32)
    x[:, lesion] = 3.0
    G = attention_from_diameter((32, 32), 8.0, 1.0)
    x0 = model_input(x, G)
    shift = _elsewhere(lesion, np.random.default_rng(0))
    x1 = torch.cat([_paste(x0[0, :8], lesion, shift), x0[0, 8:]])[None]
    plain, attn = LiverLesionNet(8, 3, (8, 8), None), LiverLesionNet(8, 3, (8, 8), 0.1)
    raw = float(_input_change(plain, x0, x1)[0])
    seen = float(_input_change(attn, x0, x1)[0])
    assert raw > 0 and seen < 0.5 * raw
