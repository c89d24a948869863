"""SYNTHETIC multi-phase phantom: enhancement kinetics, oblique grids, DICOM round trip through the
scanner, and phase assignment by timing when every dynamic phase shares one description."""
import functools
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from slicercad.dicom.scan import scan_folder
from slicercad.errors import InputError
from slicercad.geometry import ijk_to_lps_matrix, physical_to_ijk
from slicercad.phases import assign_phases
from slicercad.synth import anatomy
from slicercad.synth.study import phantom_lesions, phantom_phases, write_phantom_study


@functools.lru_cache(maxsize=16)
def _labels(size, spacing, origin, direction, kind, seed):
    """Tissue label of every voxel centre, from the analytic anatomy (numpy k, j, i order, flattened)."""
    image = sitk.Image(list(size), sitk.sitkUInt8)
    image.SetSpacing(spacing), image.SetOrigin(origin), image.SetDirection(direction)
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    points = (np.c_[i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)] @ ijk_to_lps_matrix(image).T)[:, :3]
    return anatomy.label_map(points, kind, seed)


def _tissue_mean(image, kind, seed, tissue):
    """Mean of ``image`` over the voxels whose centre lies in ``tissue``."""
    labels = _labels(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection(), kind, seed)
    mask = labels == anatomy.TISSUES[tissue][0]
    assert mask.sum() >= 3, f"{tissue} not in the field of view"
    return float(sitk.GetArrayFromImage(image).ravel()[mask].mean())


def _value_at(image, point_lps):
    """Mean of the 3x3 in-plane neighbourhood of the voxel nearest to an LPS point."""
    i, j, k = np.round(physical_to_ijk(image, point_lps, "LPS")).astype(int)
    return float(sitk.GetArrayFromImage(image)[k, j - 1: j + 2, i - 1: i + 2].mean())


@pytest.fixture(scope="module")
def liver_mri():
    return phantom_phases("liver_mri", seed=2)


def test_liver_mri_kinetics_and_labels(liver_mri):
    expected = {"T1_pre", "arterial", "portal", "transitional", "hepatobiliary", "T2", "DWI", "DWI_b0", "ADC"}
    assert set(liver_mri) == expected
    for image, tags in liver_mri.values():
        assert tags["SeriesDescription"].endswith("SYNTHETIC") and "SYNTHETIC" in tags["ImageComments"]
    assert liver_mri["T1_pre"][0].GetSize() == (96, 96, 24)
    assert liver_mri["DWI"][0].GetSize() != liver_mri["T1_pre"][0].GetSize()
    img = {k: v[0] for k, v in liver_mri.items()}
    mean = {(p, t): _tissue_mean(img[p], "liver_mri", 2, t)
            for p in expected for t in ("liver", "aorta", "cyst", "hemangioma", "spleen")}
    assert mean["arterial", "aorta"] > 2.0 * mean["T1_pre", "aorta"]
    assert mean["arterial", "aorta"] > mean["portal", "aorta"] > mean["hepatobiliary", "aorta"]
    assert mean["hepatobiliary", "liver"] > 1.5 * mean["T1_pre", "liver"]            # EOB hepatocyte uptake
    assert mean["hepatobiliary", "liver"] > mean["transitional", "liver"] > mean["T1_pre", "liver"]
    assert mean["hepatobiliary", "hemangioma"] < mean["hepatobiliary", "liver"]
    assert mean["hepatobiliary", "cyst"] < 0.5 * mean["hepatobiliary", "liver"]
    assert mean["T2", "cyst"] > 3 * mean["T2", "liver"]
    assert mean["ADC", "cyst"] > 2000 and 800 < mean["ADC", "liver"] < 1600          # 1e-6 mm^2/s
    assert mean["DWI", "spleen"] > mean["DWI", "liver"] * 0.8
    assert liver_mri["DWI"][1]["DiffusionBValue"] == 800.0 and liver_mri["DWI_b0"][1]["DiffusionBValue"] == 0.0
    outside = sitk.GetArrayFromImage(img["T1_pre"])[:, :3, :3]
    assert outside.mean() < 40.0                                                      # Rician noise floor only
    times = [liver_mri[p][1]["AcquisitionTime"] for p in ("T1_pre", "arterial", "portal", "transitional",
                                                          "hepatobiliary")]
    delays = np.diff(times) % 86400
    assert np.all(delays > 0) and 900 < sum(delays) < 1500


def test_ct_kinetics():
    liver = {k: v[0] for k, v in phantom_phases("liver_ct", seed=1).items()}
    m = {(p, t): _tissue_mean(liver[p], "liver_ct", 1, t) for p in liver for t in ("liver", "aorta", "hcc", "fat")}
    assert liver["portal"].GetPixelID() == sitk.sitkInt16
    assert abs(m["unenhanced", "aorta"] - 40) < 25 and m["arterial", "aorta"] > 250
    assert m["portal", "liver"] - m["unenhanced", "liver"] > 30
    assert m["arterial", "hcc"] > m["arterial", "liver"] + 20                       # arterial hyperenhancement
    assert m["portal", "hcc"] < m["portal", "liver"]                                # washout
    assert m["unenhanced", "fat"] < -60
    renal = {k: v[0] for k, v in phantom_phases("renal_ct", seed=1).items()}
    r = {(p, t): _tissue_mean(renal[p], "renal_ct", 1, t) for p in renal
         for t in ("renal_cortex", "renal_medulla", "collecting_system", "renal_mass")}
    assert r["corticomedullary", "renal_cortex"] - r["corticomedullary", "renal_medulla"] > 60
    assert abs(r["nephrographic", "renal_cortex"] - r["nephrographic", "renal_medulla"]) < 50
    assert r["excretory", "collecting_system"] > 300 > r["nephrographic", "collecting_system"]
    assert r["corticomedullary", "renal_mass"] - r["unenhanced", "renal_mass"] > 60


def test_oblique_grid_keeps_anatomy_in_place():
    straight = phantom_phases("liver_ct", seed=4)
    tilted = phantom_phases("liver_ct", seed=4, oblique_deg=20.0)
    direction = np.array(tilted["portal"][0].GetDirection()).reshape(3, 3)
    assert math.isclose(direction[2, 2], math.cos(math.radians(20)), abs_tol=1e-9)
    assert math.isclose(abs(direction[1, 2]), math.sin(math.radians(20)), abs_tol=1e-9)
    for lesion in phantom_lesions("liver_ct", 4):
        if lesion["diameter_mm"] < 14:
            continue
        for phase in ("unenhanced", "arterial", "portal"):
            a = _value_at(straight[phase][0], lesion["center_lps"])
            b = _value_at(tilted[phase][0], lesion["center_lps"])
            assert abs(a - b) < 30, (lesion["label"], phase, a, b)
    cyst = next(les for les in phantom_lesions("liver_ct", 4) if les["label"] == "cyst")
    assert abs(_value_at(tilted["portal"][0], cyst["center_lps"]) - 8) < 30


def test_lesions_are_deterministic_and_vary_with_seed():
    assert phantom_lesions("liver_mri", 5) == phantom_lesions("liver_mri", 5)
    assert phantom_lesions("liver_mri", 5) != phantom_lesions("liver_mri", 6)
    labels = {les["label"] for les in phantom_lesions("renal_ct", 0)}
    assert labels == {"renal_mass", "renal_cyst"}
    assert all(les["coordinate_system"] == "LPS" for les in phantom_lesions("liver_mri", 0))
    with pytest.raises(InputError, match="kind"):
        phantom_phases("brain_mri")


@pytest.mark.parametrize("kind,oblique,start", [("liver_mri", 12.0, 86400.0 - 45.0), ("liver_ct", 0.0, None),
                                                ("renal_ct", 7.0, 86400.0 - 100.0)])
def test_written_study_phases_by_timing(tmp_path, kind, oblique, start):
    """Same description on every dynamic phase, names shuffled, midnight crossed: timing decides."""
    info = write_phantom_study(tmp_path, kind, seed=3, same_descriptions=True, oblique_deg=oblique,
                               start_time=start, shuffle_names=True)
    assert info["synthetic"] is True and info["lesions"]
    scan = scan_folder(tmp_path)
    assert len(scan.studies) == 1 and scan.studies[0].study_instance_uid == info["study_uid"]
    volumes = scan.volumes()
    descriptions = {v.tags.series_description for v in volumes}
    assert all(d.endswith("SYNTHETIC") for d in descriptions)
    assignments = assign_phases([(v.volume_id, v.tags) for v in volumes])
    for volume, assignment in zip(volumes, assignments):
        assert assignment.phase == info["truth"][volume.tags.series_instance_uid], assignment
    assert set(info["truth"].values()) == {a.phase for a in assignments}
    if kind == "liver_mri":
        dwi = sorted(a.b_value for a in assignments if a.phase == "DWI")
        assert dwi == [0.0, 800.0] and len(volumes) == 9
        dynamic = [v for v in volumes if v.tags.series_description.startswith("t1_vibe")]
        assert len({v.tags.series_description for v in dynamic}) == 1 and len(dynamic) == 5


def test_written_geometry_matches_phantom(tmp_path):
    write_phantom_study(tmp_path, "liver_ct", seed=0, oblique_deg=15.0)
    reference = phantom_phases("liver_ct", seed=0, oblique_deg=15.0)["arterial"][0]
    volume = next(v for v in scan_folder(tmp_path).volumes() if "arterial" in v.tags.series_description)
    loaded = volume.load()
    np.testing.assert_allclose(ijk_to_lps_matrix(loaded), ijk_to_lps_matrix(reference), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded), sitk.GetArrayFromImage(reference))


def test_phantom_command_writes_truth_and_assignment(tmp_path, capsys):
    from slicercad.cli import main

    assert main(["phantom", str(tmp_path), "--kind", "renal_ct", "--seed", "2", "--same-descriptions"]) == 0
    report = json.loads((tmp_path / "phantom_truth.json").read_text())
    assert report["synthetic"] is True and len(report["assignments"]) == 4
    assert all(row["phase"] == row["truth"] for row in report["assignments"])
    assert "4/4 volumes" in capsys.readouterr().out
