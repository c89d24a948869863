"""CardiacTICorrectorLib on real MRML (slicer-core): a DICOM scout becomes a sequence over TI with a
browser; Estimate writes the record, the per-frame table and a plot with curves and nulls."""
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CardiacTICorrector"))

from slicercad.ti.phantom import make_scout, write_scout_dicom  # noqa: E402


@pytest.fixture
def scout_folder(tmp_path):
    ph = make_scout(8, snr=50, n_frames=16, shape=(96, 96))
    write_scout_dicom(ph, tmp_path, ti_in="InversionTime", seed=4)
    return tmp_path, ph


def test_scout_loads_as_a_sequence_over_ti(scene, scout_folder):
    from CardiacTICorrectorLib.scout import load_scout, scout_from_sequence

    folder, ph = scout_folder
    ((seq, browser, scout),) = load_scout(scene, folder)
    assert seq.GetNumberOfDataNodes() == 16 and seq.GetIndexName() == "TI" and seq.GetIndexUnit() == "ms"
    values = [float(seq.GetNthIndexValue(i)) for i in range(16)]
    assert np.allclose(values, ph.ti_ms, atol=0.01)
    assert browser.GetMasterSequenceNode() is seq
    back = scout_from_sequence(seq)
    assert np.allclose(back.frames, scout.frames) and back.meta["field_strength_t"] == 1.5


def test_estimate_writes_table_and_plot(scene, scout_folder):
    from CardiacTICorrectorLib.scout import estimate, load_scout

    folder, ph = scout_folder
    ((seq, _, _),) = load_scout(scene, folder)
    result = estimate(scene, seq)
    rec = result["record"]
    assert rec["method"] == "physics" and abs(rec["null_ti_ms"] - ph.myo_null_ms) <= 10
    assert rec["recommended_ti_ms"] > 0
    table = result["frames_table"].GetTable()
    assert table.GetNumberOfRows() == 16 and table.GetColumnByName("myocardium signal") is not None
    chart = result["chart"]
    names = [chart.GetNthPlotSeriesNode(i).GetName() for i in range(chart.GetNumberOfPlotSeriesNodes())]
    assert "myocardium fit" in names and "blood fit" in names and any("null" in n for n in names)


def test_a_closed_scene_forgets_the_scout(scene, scout_folder):
    """What the panel's Estimate checks (``scout_in_scene``): a scout from a closed scene, or a deleted one,
    is no longer usable, so the button is disabled and Estimate asks for a scout instead."""
    from CardiacTICorrectorLib.scout import load_scout, scout_in_scene

    folder, _ = scout_folder
    ((seq, _, _),) = load_scout(scene, folder)
    assert scout_in_scene(scene, seq) and not scout_in_scene(scene, None)
    scene.Clear(0)  # File > Close Scene
    assert not scout_in_scene(scene, seq)
    ((seq, _, _),) = load_scout(scene, folder)
    scene.RemoveNode(seq)
    assert not scout_in_scene(scene, seq)


def test_duplicate_tis_keep_every_frame_and_match_the_cli(scene, tmp_path):
    """A repeated TI must not replace a sequence item (SetDataNodeAtValue does): 12 frames -> 12 items,
    exact TIs back, and the panel's Estimate equals the CLI's record."""
    import pydicom

    from CardiacTICorrectorLib.scout import estimate, load_scout
    from slicercad.errors import InputError
    from slicercad.ti.correct import correct_scout
    from slicercad.ti.scout import load_dicom_scouts
    from SlicerCADLib.sequences import frames_to_sequence

    ph = make_scout(8, snr=50, n_frames=12, shape=(96, 96))
    files = write_scout_dicom(ph, tmp_path, ti_in="InversionTime", seed=4)
    for f in files:
        ds = pydicom.dcmread(f)
        if float(ds.InversionTime) == float(ph.ti_ms[5]):
            ds.InversionTime = float(ph.ti_ms[4])     # frames 4 and 5 now share a TI
            ds.save_as(f)
    ((seq, _, scout),) = load_scout(scene, tmp_path)
    assert seq.GetNumberOfDataNodes() == 12 and any("duplicate TI" in w for w in scout.warnings)
    panel = estimate(scene, seq)["record"]
    (cli,) = [correct_scout(s) for s in load_dicom_scouts(tmp_path)]
    assert panel["ti_ms"] == cli["ti_ms"] and panel["null_ti_ms"] == cli["null_ti_ms"]
    with pytest.raises(InputError, match="more than once"):
        frames_to_sequence(ph.frames[:3], [100.0, 100.0, 200.0], scene=scene)
