"""Brain-metastasis-like lesions (SYNTHETIC) placed into the REAL Colin27 T1 brain (Debian mricron-data):
in the brain, on the real anatomy, deterministic; and the experiment's real-anatomy row, which skips with
the reason where the template is missing and fails under CI=true, where .ci/run installs it."""
import os

import numpy as np
import pytest
import SimpleITK as sitk

from slicercad.synth import weak_real_brain as real
from slicercad.weak import experiment


@pytest.fixture(scope="module")
def colin27():
    reason = real.colin27_missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI installs it (.ci/run)")
        pytest.skip(reason)
    return real.load_colin27()


def _corr(a, b) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_lesions_lie_in_the_real_brain_on_its_anatomy(colin27):
    head, depth = colin27
    assert head.GetSpacing() == (real.GRID_MM,) * 3
    lesions = real.generate_real_brain_lesions(4, 7, diameter_range=(8.0, 16.0))
    assert [les.lesion_id for les in real.generate_real_brain_lesions(4, 7, (8.0, 16.0))] == \
        [les.lesion_id for les in lesions]
    for les in lesions:
        assert les.lesion_type == real.REAL_TYPE and les.polarity == "bright"
        ijk = depth.TransformPhysicalPointToIndex(les.center_lps.tolist())
        assert depth[ijk] >= les.diameter_mm / 2                      # deep inside the brain
        img, mask = sitk.GetArrayFromImage(les.image), sitk.GetArrayFromImage(les.mask) > 0
        ring = sitk.GetArrayFromImage(sitk.BinaryDilate(les.mask, [8] * 3)) > 0
        assert np.median(img[mask]) > np.median(img[ring & ~mask]) + 0.2     # brighter than its surroundings
        # away from the lesion the block is the template there, not somewhere else (the control)
        far = ~(sitk.GetArrayFromImage(sitk.BinaryDilate(les.mask, [12] * 3)) > 0)
        here = sitk.GetArrayFromImage(sitk.Resample(head, les.image, sitk.Transform(), sitk.sitkLinear, 0.0))
        moved = sitk.Image(les.image)
        moved.SetOrigin((np.array(les.image.GetOrigin()) + [0.0, 0.0, 25.0]).tolist())
        elsewhere = sitk.GetArrayFromImage(sitk.Resample(head, moved, sitk.Transform(), sitk.sitkLinear, 0.0))
        assert _corr(img[far], here[far]) > 0.8 > _corr(img[far], elsewhere[far])


def test_real_anatomy_row_skips_with_the_reason_locally_and_fails_under_ci(monkeypatch):
    monkeypatch.setattr(real, "colin27_missing", lambda: "Colin27 T1 template not installed (test)")
    monkeypatch.delenv("CI", raising=False)
    assert experiment.real_anatomy(2, {}) == {"type": real.REAL_TYPE,
                                              "skipped": "Colin27 T1 template not installed (test)"}
    monkeypatch.setenv("CI", "true")
    with pytest.raises(FileNotFoundError, match="not installed"):
        experiment.real_anatomy(2, {})
