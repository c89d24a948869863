"""AnomalyCT review fixes: the inverted-radiograph refusal, the mm-sized skull closing (a 5 mm slice axis
closes one slice, not 35 mm), UID-named study folders keeping distinct case names, the patient-level
train/calibration split of ``slicercad anomaly train`` and the selectable triage score."""

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from scipy import ndimage

from slicercad.anomaly import cli
from slicercad.anomaly import cxr
from slicercad.anomaly import preprocess as pp
from slicercad.dicom.volume import load_volume
from slicercad.errors import InputError
from slicercad.synth import anomaly_cxr


def test_inverted_radiograph_refused_and_the_right_polarity_accepted():
    img, _ = load_volume([get_testdata_file("RG1_UNCI.dcm", download=False)])   # MONOCHROME1, inverted on load
    cxr.cxr_sample(img)
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(img)
    raw = sitk.Cast(img, sitk.sitkFloat32) * -1.0 + (stats.GetMinimum() + stats.GetMaximum())   # as stored
    with pytest.raises(InputError, match="looks inverted"):
        cxr.cxr_sample(raw)
    ph = anomaly_cxr.normal_cxr(2)
    cxr.cxr_sample(ph.image)
    with pytest.raises(InputError, match="looks inverted"):
        cxr.cxr_sample(sitk.Cast(ph.image, sitk.sitkFloat32) * -1.0)


def test_closing_element_is_sized_in_mm_per_axis():
    iso = pp.closing_element((2.5, 2.5))
    assert iso.shape == (3, 3) and iso.sum() == 5                   # the 4-connected cross (isotropic: unchanged)
    thick = pp.closing_element((5.0, 0.45))                         # 5 mm slices x 0.45 mm pixels
    assert thick.shape == (3, 15)                                   # +-1 slice (5 mm), +-7 pixels (3.2 mm)
    assert pp.closing_element((10.0, 0.5)).shape == (1, 13)         # a 10 mm axis is not closed across at all


def test_thick_slices_do_not_close_a_gap_far_wider_than_3_mm():
    """Two bone plates 20 mm apart along a 5 mm slice axis (four slices between) stay apart: the old closing
    (7 iterations of the finest in-plane pixel, 0.45 mm) bridged 35 mm along z."""
    bone = np.zeros((12, 40), bool)
    bone[3], bone[8] = True, True
    closed = ndimage.binary_closing(bone, pp.closing_element((5.0, 0.45)),
                                    border_value=0)
    assert not closed[5:7].any()


def test_case_names_keep_uid_folders_whole_and_strip_image_suffixes(tmp_path):
    for name in ("1.2.840.113619.2.1", "1.2.840.113619.2.2"):
        (tmp_path / name).mkdir()
    for name in ("a.nii.gz", "b.v2.nrrd", "a.nii"):
        (tmp_path / name).write_bytes(b"")
    paths = cli._cases(tmp_path)
    names = dict(zip([p.name for p in paths], cli.case_names(paths)))
    assert names["1.2.840.113619.2.1"] == "1.2.840.113619.2.1" and names["1.2.840.113619.2.2"] == "1.2.840.113619.2.2"
    assert names["b.v2.nrrd"] == "b.v2"
    assert sorted([names["a.nii"], names["a.nii.gz"]]) == ["a", "a-2"]
    assert len(set(names.values())) == len(names)


def test_patient_split_keeps_each_patient_on_one_side():
    patients = ["p1", "p1", "p2", "p3", "p3", "p3", "p4", "p5"]
    for seed in range(5):
        train, val = cli.patient_split(patients, 2, seed)
        assert sorted(train + val) == list(range(len(patients)))
        assert not {patients[i] for i in train} & {patients[i] for i in val}
        assert len(val) >= 2 and len(train) >= 2


def test_rank_by_is_checked(tmp_path):
    with pytest.raises(InputError, match="rank_by"):
        cli.score_folder(tmp_path, tmp_path / "out", rank_by="nope")
    assert cli.DEFAULT_RANK in cli.RANK_BY


def test_in_mask_voxels_clipped_by_the_windows_leave_the_likelihood_mask():
    """A dense region (195 HU, below the 200 HU skull threshold) inside the skull saturates the subdural window: those
    grid voxels are point masses and must not enter the likelihood (they are kept, inpainted); the rest stays in."""
    from slicercad.synth.anomaly_head import normal_head

    img = normal_head(7).image
    hu = sitk.GetArrayFromImage(img).astype(np.float32)
    base = pp.head_ct_sample(img)
    k, j, i = (np.array(hu.shape) // 2)
    hu[k - 4:k + 4, j - 4:j + 4, i - 4:i + 4] = 195.0
    dense = sitk.GetImageFromArray(hu)
    dense.CopyInformation(img)
    s = pp.head_ct_sample(dense)
    clipped = s.kept                                           # subdural window saturated there
    assert clipped.any() and not base.kept.any()
    assert not (s.mask & clipped).any() and s.x[1][clipped].max() < 0.9      # inpainted, not left at the clip
    assert s.mask.sum() > 0.9 * base.mask.sum() and (base.mask & clipped).any()


def test_a_bone_enclosed_region_that_is_not_head_sized_is_refused():
    icm = np.zeros((60, 60, 60), bool)
    icm[5:55, 10:50, 10:50] = True                       # 50 x 40 x 40 voxels
    pp.check_head_extent(icm, (4.0, 4.0, 3.0))           # 160 x 160 x 150 mm: a head
    with pytest.raises(InputError, match="not a head CT"):
        pp.check_head_extent(icm, (4.0, 4.0, 6.0))       # 300 mm along z (a trunk)
    with pytest.raises(InputError, match="not a head CT"):
        pp.check_head_extent(icm, (1.5, 1.5, 1.5))       # 60 mm: far too small


def test_reproduce_epochs_override_reaches_the_training(monkeypatch, tmp_path):
    from slicercad.anomaly import experiment

    seen = []

    class Stop(Exception):
        pass

    def fake_fit(model, xt, xv, epochs, *args, **kw):
        seen.append(epochs)
        raise Stop

    monkeypatch.setattr(experiment.T, "fit_detector", fake_fit)
    with pytest.raises(Stop):
        cli.run(__import__("argparse").Namespace(anomaly_command="reproduce", out=str(tmp_path), seed=0, smoke=True,
                                                 kinds=["cxr"], epochs=7, n_train=4))
    assert seen == [7]


def test_clipped_intracranial_voxels_are_kept_inpainted_not_noise():
    """A dense calcification (clipped in the subdural window) leaves the score but stays in the head: inpainted
    from the brain around it, KEPT in the mask channel, and neither the flow's noise filler nor the GAN's zeroing
    touches it; the background still gets noise."""
    import torch
    from slicercad.anomaly import scoring
    from slicercad.anomaly.gan import AnomalyGAN
    from slicercad.synth import anomaly_head

    s = pp.head_ct_sample(anomaly_head.normal_head(31000, "calcification").image)
    assert pp.KEPT == 0.5 and s.kept is not None and s.kept.sum() == s.info["n_kept"] > 0
    assert not (s.kept & s.mask).any()
    brain = s.x[1][s.mask].mean()
    assert abs(s.x[1][s.kept].mean() - brain) < 0.15 < 1.0 - s.x[1][s.kept].mean()   # brain-like, not the clip
    x = torch.from_numpy(s.stacked()[None])
    assert torch.all(x[0, -1][torch.from_numpy(s.kept)] == 0.5)
    y, mask = scoring.prepare(x, torch.Generator().manual_seed(0))
    kept = torch.from_numpy(s.kept)
    q = scoring.quantise(x[:, :-1])
    assert torch.all((y[0][:, kept] - q[0][:, kept] >= 0) & (y[0][:, kept] - q[0][:, kept] < 1 / scoring.N_BINS))
    bg = scoring.background(x)[0]
    assert (y[0][:, bg] - q[0][:, bg]).abs().max() > 0.5                              # background: noise
    ch, _ = AnomalyGAN.masked(x)
    assert torch.equal(ch[0][:, kept], x[0, :-1][:, kept]) and torch.all(ch[0][:, bg] == 0)
    holes = pp.inpaint_kept(s.x * 0 + 0.25, s.mask, s.kept)
    assert np.allclose(holes[:, s.kept], 0.25, atol=1e-5)                             # the mean of its neighbours
