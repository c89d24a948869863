"""Units and input guard of the liver models: ADC units, eADC, DICOM acquisition tags, training distribution,
missing phases (issue 9 item 3). SYNTHETIC data throughout."""
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch

from slicercad.engine.registry import BUNDLED_DIR, load_model
from slicercad.errors import InputError, PhaseError
from slicercad.liver import task  # noqa: F401  (registers the liver tasks)
from slicercad.liver.acquisition import acquisition_from_tags, b_value_from_tags
from slicercad.liver.dataset import phantom_acquisition, phantom_lesion_input
from slicercad.liver.guard import adc_affine, adc_scale
from slicercad.liver.inference import classify_lesions
from slicercad.liver.roi import Lesion
from slicercad.synth.liver_lesions_phantom import generate_lesions
from slicercad.synth.study import phantom_lesions, phantom_phases

torch.set_num_threads(1)
CARD = BUNDLED_DIR / "liver_lesion_demo.json"


@pytest.fixture(scope="module")
def demo():
    return load_model(CARD, task="liver_lesion")


def _adc_values(rng, scale):
    return np.r_[rng.uniform(0.9, 1.5, 5000), rng.uniform(2.0, 3.2, 500), np.zeros(2000)] * scale


def test_adc_units_recognised_from_values_and_converted_with_a_note():
    rng = np.random.default_rng(0)
    assert adc_scale(_adc_values(rng, 1.0), {"adc_tags_read": True}) == (1.0, None)
    factor, note = adc_scale(_adc_values(rng, 1.0))                     # no tags: eADC cannot be excluded
    assert factor == 1.0 and "eADC" in note and "cannot be excluded" in note
    factor, note = adc_scale(np.round(_adc_values(rng, 1000.0)))
    assert factor == pytest.approx(1e-3) and "1e-6" in note and "converted" in note
    factor, note = adc_scale(_adc_values(rng, 1e-3))
    assert factor == pytest.approx(1e3) and "mm^2/s" in note
    with pytest.raises(InputError, match="eADC"):
        adc_scale(np.exp(-0.8 * _adc_values(rng, 1.0)))                  # exponential ADC, values <= 1
    with pytest.raises(InputError, match="eADC"):
        adc_scale(_adc_values(rng, 1.0), {"adc_kind": "eADC"})
    with pytest.raises(InputError, match="not recognisable"):
        adc_scale(_adc_values(rng, 40.0))
    with pytest.raises(InputError, match="do not fit"):                   # declared 1e-6 but values in 1e-3
        adc_scale(_adc_values(rng, 1.0), {"adc_units": "um2/s", "adc_unit_factor": 1e-3})


def test_integer_scaled_eadc_is_refused_by_parenchyma_plausibility():
    rng = np.random.default_rng(1)
    eadc = np.round(1000 * np.exp(-0.8 * _adc_values(rng, 1.0)))         # eADC x 1000: liver ~380, passes as 1e-6
    eadc[_adc_values(rng, 1.0) == 0] = 0
    with pytest.raises(InputError, match=r"median of positive voxels 37.*plausible parenchyma range \[0.6, 2.5\]"):
        adc_scale(eadc)
    with pytest.raises(InputError, match="plausible parenchyma"):         # declared units do not rescue it
        adc_scale(_adc_values(rng, 1.0) * 0.45, {"adc_units": "10-3.mm2/s", "adc_unit_factor": 1.0})
    factor, note = adc_scale(np.round(_adc_values(rng, 1000.0)))        # real 1e-6 ADC still converts
    assert factor == pytest.approx(1e-3) and "cannot be excluded" in note


def test_rwvm_slope_and_intercept_are_both_applied():
    rng = np.random.default_rng(2)
    true = _adc_values(rng, 1.0)                                         # 1e-3 mm^2/s
    raw = (true * 1000.0 - 100.0) / 2.0                                  # stored = (value - intercept) / slope
    acq = {"adc_units": "um2/s", "adc_unit_factor": 1e-3, "adc_rwvm_slope": 2.0, "adc_rwvm_intercept": 100.0}
    factor, offset, note = adc_affine(raw, acq)
    assert np.allclose(raw * factor + offset, true) and "intercept 100" in note
    assert factor == pytest.approx(2e-3) and offset == pytest.approx(0.1)
    with pytest.raises(InputError, match="intercept"):
        adc_scale(raw, acq)


def test_acquisition_read_from_standard_and_vendor_tags():
    assert b_value_from_tags({"DiffusionBValue": 800.0})[0] == 800.0
    assert b_value_from_tags({"(0043,1039)": "1000000800\\8\\0\\0"})[0] == 800.0            # GE, 10^9 flag
    assert b_value_from_tags({"0019,100C": "1000"})[0] == 1000.0                           # Siemens
    assert b_value_from_tags({0x20011003: 600.0})[0] == 600.0                              # Philips
    assert b_value_from_tags({"SeriesDescription": "ADC"}) == (None, None)
    ds = pydicom.Dataset()
    ds.MagneticFieldStrength = 1.5
    dwi = pydicom.Dataset()
    dwi.add_new(0x00191000 | 0x0C, "IS", "1000")
    adc = {"ImageType": ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"],
           "RealWorldValueMappingSequence": [{"MeasurementUnitsCodeSequence": [{"CodeValue": "um2/s"}]}]}
    acq = acquisition_from_tags({"hepatobiliary": ds, "DWI": dwi, "ADC": adc})
    assert acq["field_strength_t"] == 1.5 and acq["b_value"] == 1000.0
    assert acq["adc_units"] == "um2/s" and acq["adc_unit_factor"] == pytest.approx(1e-3)
    assert "Siemens" in acq["sources"]["b_value"] and "adc_kind" not in acq
    assert acquisition_from_tags({"ADC": {"ImageType": "DERIVED\\PRIMARY\\EADC"}})["adc_kind"] == "eADC"
    assert acquisition_from_tags({"ADC": {"SeriesDescription": "ep2d_diff EXP"}})["adc_kind"] == "eADC"
    assert "b_value" not in acquisition_from_tags({"ADC": {"DiffusionBValue": 800}})   # ADC has no b-value


def _study(adc_units):
    phases = phantom_phases("liver_mri", seed=3, adc_units=adc_units)
    images = {p: img for p, (img, _) in phases.items() if p != "DWI_b0"}
    tags = {p: t for p, (_, t) in phases.items() if p != "DWI_b0"}
    lesions = [Lesion(f"L{i}", tuple(l["center_lps"]), l["diameter_mm"], "LPS")
               for i, l in enumerate(phantom_lesions("liver_mri", seed=3))]
    return images, tags, lesions


def test_same_study_with_adc_in_1e6_or_1e3_units_gives_the_same_classes(demo):
    model, card = demo
    classes = {}
    for units in ("1e-3", "1e-6"):
        images, tags, lesions = _study(units)
        results = classify_lesions(model, card, images, lesions, tags=tags, with_cam=False)
        classes[units] = [r["predicted_class"] for r in results]
        probs = np.array([list(r["probabilities"].values()) for r in results])
        if units == "1e-6":
            assert all(any("1e-6" in n for n in r["notes"]) for r in results)
            assert all(any(w.startswith("note: ADC read as 1e-6") for w in r["warnings"]) for r in results)
            assert np.allclose(probs, reference, atol=2e-3)
        else:
            reference = probs
            assert all(not r["notes"] for r in results)
    assert classes["1e-3"] == classes["1e-6"]
    images, tags, lesions = _study("eADC")
    with pytest.raises(InputError, match="eADC"):
        classify_lesions(model, card, images, lesions, tags=tags, with_cam=False)


def test_out_of_distribution_or_unknown_acquisition_warns_never_silently(demo):
    model, card = demo
    dist = card["input_spec"]["training_distribution"]
    assert dist["acquisition_seen"] == {"field_strength_t": [1.5, 3.0], "b_value": [800.0, 1000.0]}  # measured
    item = generate_lesions(1, seed=1)[0]                                # a training acquisition (3 T, b = 800)
    lesion = phantom_lesion_input(item, rng=np.random.default_rng(1))
    (ok,) = classify_lesions(model, card, item.images, [lesion], phantom_acquisition(item), with_cam=False)
    assert not [w for w in ok["warnings"] if "training distribution" in w or "not seen" in w or "unknown" in w]
    (unknown,) = classify_lesions(model, card, item.images, [lesion], with_cam=False)
    assert any("field_strength_t unknown" in w for w in unknown["warnings"])
    assert any("b_value unknown" in w for w in unknown["warnings"])
    (shifted,) = classify_lesions(model, card, item.images, [lesion], {"field_strength_t": 7.0, "b_value": 600},
                                  with_cam=False)
    assert any("field_strength_t=7 was not seen" in w for w in shifted["warnings"])
    assert any("b_value=600 was not seen" in w for w in shifted["warnings"])
    odd = dict(item.images)
    t2 = sitk.GetArrayFromImage(item.images["T2"])
    speckle = np.exp(np.random.default_rng(0).normal(0.0, 1.5, t2.shape))   # a T2 no training lesion resembles
    strange = sitk.GetImageFromArray((t2 * speckle).astype(np.float32))
    strange.CopyInformation(item.images["T2"])
    odd["T2"] = strange
    (ood,) = classify_lesions(model, card, odd, [lesion], phantom_acquisition(item), with_cam=False)
    assert any("outside the training distribution" in w and "T2" in w for w in ood["warnings"])


def test_study_missing_a_phase_is_refused_with_the_reason(demo):
    model, card = demo
    item = generate_lesions(1, seed=1)[0]
    images = {p: v for p, v in item.images.items() if p not in ("ADC", "hepatobiliary")}
    with pytest.raises(PhaseError, match=r"study refused.*missing phase\(s\) \['hepatobiliary', 'ADC'\]"):
        classify_lesions(model, card, images, [phantom_lesion_input(item)])
