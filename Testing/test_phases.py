"""Phase assignment from vendor descriptions, tags and timing (shuffled, midnight, missing phases)."""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slicercad.dicom.tags import SeriesTags
from slicercad.errors import PhaseError
from slicercad.phases import CT_PHASES, LIVER_MRI_PHASES, assign_phases, best_by_phase

ADC_TYPE = ("DERIVED", "PRIMARY", "DIFFUSION", "ADC")
# vendor -> [(truth, description, seconds after the pre-contrast scan, b-value, image type)]
VENDOR_MRI = {
    "siemens": [("T1_pre", "t1_vibe_fs_tra_bh_pre", 0), ("arterial", "t1_vibe_fs_tra_bh_art", 68),
                ("portal", "t1_vibe_fs_tra_bh_pv", 110), ("transitional", "t1_vibe_fs_tra_bh_3min", 225),
                ("T2", "t2_haste_fs_tra_mbh", 500), ("DWI", "ep2d_diff_b50_800_tra", 700, 50.0),
                ("DWI", "ep2d_diff_b50_800_tra", 700, 800.0), ("ADC", "ep2d_diff_b50_800_tra_ADC", 700, None, ADC_TYPE),
                ("hepatobiliary", "t1_vibe_fs_tra_bh_20min", 1240)],
    "ge": [("T1_pre", "Ax LAVA-Flex pre", 0), ("arterial", "WATER: Ax LAVA-Flex Art", 75),
           ("portal", "WATER: Ax LAVA-Flex Portal Venous", 118), ("transitional", "Ax LAVA-Flex Delay 3 min", 230),
           ("T2", "Ax SSFSE T2 FS", 480), ("DWI", "Ax DWI b800", 650),
           ("ADC", "Apparent Diffusion Coefficient (mm2/s)", 650), ("hepatobiliary", "Ax LAVA-Flex HBP 20 min", 1300)],
    "philips": [("T1_pre", "T1 THRIVE pre", 0), ("arterial", "eTHRIVE_dyn_AP", 60),
                ("portal", "eTHRIVE_dyn_PVP", 100), ("transitional", "eTHRIVE equilibrium", 210),
                ("T2", "T2W_SPAIR_MV", 520), ("DWI", "DWI_b0_800", 640, 800.0),
                ("ADC", "dADC_DWI_b0_800", 640, None, ("DERIVED", "PRIMARY", "ADC", "ADC")),
                ("hepatobiliary", "eTHRIVE HBP", 1250)],
    "canon": [("T1_pre", "Quick3D_fs Pre", 0), ("arterial", "Quick3D_fs Dyn early", 70),
              ("portal", "Quick3D_fs Dyn portal", 112), ("transitional", "Quick3D_fs Dyn 3min", 220),
              ("T2", "FASE T2 fs", 460), ("DWI", "DWI b1000", 600, 1000.0), ("ADC", "ADC", 600),
              ("hepatobiliary", "Quick3D_fs EOB 20min", 1260)],
    "japanese": [("T1_pre", "EOB 造影前", 0), ("arterial", "EOB 動脈相", 65), ("portal", "EOB 門脈相", 105),
                 ("transitional", "EOB 移行相", 215), ("T2", "T2強調 FS", 470), ("DWI", "拡散強調 b800", 610, 800.0),
                 ("ADC", "ADC map", 610), ("hepatobiliary", "EOB 肝細胞相", 1230)],
}


def _mr(description, t, agent="Gd-EOB-DTPA", b=None, image_type=(), modality="MR", **kw):
    return SeriesTags(modality=modality, series_description=description, acquisition_time=t,
                      contrast_bolus_agent=agent, b_value=b, image_type=tuple(image_type), **kw)


def _study(rows, start, shuffle_seed=None, modality="MR", agent_on_pre=False):
    vols, truth = [], {}
    for n, row in enumerate(rows):
        phase, desc, dt = row[:3]
        b = row[3] if len(row) > 3 else None
        image_type = row[4] if len(row) > 4 else ()
        agent = "" if dt == 0 and not agent_on_pre else "contrast"
        vid = f"v{n}"
        vols.append((vid, _mr(desc, (start + dt) % 86400, agent, b, image_type, modality, series_number=n + 1)))
        truth[vid] = phase
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(vols)
    return vols, truth


@pytest.mark.parametrize("vendor", sorted(VENDOR_MRI))
def test_vendor_descriptions(vendor):
    vols, truth = _study(VENDOR_MRI[vendor], start=9 * 3600 + 123, shuffle_seed=1)
    result = assign_phases(vols)
    assert [a.volume_id for a in result] == [v for v, _ in vols]
    for a in result:
        assert a.phase == truth[a.volume_id], (vendor, a)
        assert a.confidence >= 0.85, a
    dwi = [a for a in result if a.phase == "DWI"]
    assert all(a.b_value is not None for a in dwi)
    assert best_by_phase(result)["DWI"].b_value == max(a.b_value for a in dwi)


SAME = [("T1_pre", "t1_vibe_fs_tra_dyn", 0), ("arterial", "t1_vibe_fs_tra_dyn", 55),
        ("portal", "t1_vibe_fs_tra_dyn", 98), ("transitional", "t1_vibe_fs_tra_dyn", 215),
        ("hepatobiliary", "t1_vibe_fs_tra_dyn", 1230), ("T2", "t2_haste_fs_tra", 600)]


@pytest.mark.parametrize("start", [10 * 3600.0, 86400.0 - 70.0, 86400.0 - 600.0])
@pytest.mark.parametrize("agent_on_pre", [False, True])
def test_identical_descriptions_by_timing(start, agent_on_pre):
    """Dynamic phases share one description; shuffled; some runs cross midnight."""
    vols, truth = _study(SAME, start, shuffle_seed=int(start) % 7, agent_on_pre=agent_on_pre)
    result = {a.volume_id: a for a in assign_phases(vols, protocol="liver_mri")}
    for vid, phase in truth.items():
        assert result[vid].phase == phase, result[vid]
    timed = [result[v] for v in truth if truth[v] != "T2"]
    assert all(0.45 <= a.confidence <= 0.8 for a in timed)
    assert all("timing" in a.reason for a in timed)


def test_missing_phases():
    no_transitional = [r for r in SAME if r[0] != "transitional"]
    vols, truth = _study(no_transitional, 50000.0, shuffle_seed=3)
    assert {a.volume_id: a.phase for a in assign_phases(vols)} == truth
    no_arterial = [r for r in VENDOR_MRI["siemens"] if r[0] != "arterial"]
    vols, truth = _study(no_arterial, 50000.0, shuffle_seed=4)
    assert {a.volume_id: a.phase for a in assign_phases(vols)} == truth
    only_hbp = [("T1_pre", "t1_vibe_dyn", 0), ("hepatobiliary", "t1_vibe_dyn", 1250)]
    vols, truth = _study(only_hbp, 50000.0)
    assert {a.volume_id: a.phase for a in assign_phases(vols)} == truth


def test_keyword_against_timing_lowers_confidence():
    multi_arterial = [("T1_pre", "t1 pre", 0), ("arterial", "t1 art", 58), ("arterial", "t1 art", 70),
                      ("portal", "t1 pv", 112)]
    vols, truth = _study(multi_arterial, 30000.0)
    assert {a.volume_id: a.phase for a in assign_phases(vols)} == truth
    rows = [("T1_pre", "t1 pre", 0), ("arterial", "t1 portal", 60), ("portal", "t1 pv late", 100)]
    vols, _ = _study(rows, 30000.0)
    result = assign_phases(vols)
    assert result[1].phase == "portal" and result[1].confidence < 0.85
    assert "timing alone suggests arterial" in result[1].reason


def test_no_times_guess_and_keywords():
    vols = [(f"v{n}", SeriesTags(modality="MR", series_description=d, series_number=n))
            for n, d in enumerate(["t1 dyn", "t1 dyn", "t1 dyn", "t1 HBP"])]
    result = assign_phases(vols)
    assert [a.phase for a in result] == ["T1_pre", "arterial", "portal", "hepatobiliary"]
    assert [a.confidence for a in result] == [0.25, 0.25, 0.25, 0.85]


def test_unassigned_volumes_have_reasons():
    vols = [("loc", _mr("localizer", 100.0)), ("ip", _mr("t1_fl2d_in_opp", 200.0)),
            ("mrcp", _mr("MRCP 3D", 300.0)), ("eadc", _mr("eADC", 400.0, image_type=("DERIVED", "EXP"))),
            ("ct", _mr("Abdomen", 500.0, modality="CT")),
            ("us", _mr("", 600.0, modality="US"))]
    result = {a.volume_id: a for a in assign_phases(vols, protocol="liver_mri")}
    assert all(a.phase is None and a.confidence == 0.0 and a.reason for a in result.values())
    assert "localizer" in result["loc"].reason and "MRCP" in result["mrcp"].reason
    assert "chemical-shift" in result["ip"].reason
    assert "CT" in result["ct"].reason and "exponential" in result["eadc"].reason


CT_LIVER = [("unenhanced", "Abdomen 5.0 B30f plain", 0), ("arterial", "Abdomen 5.0 B30f arterial", 70),
            ("portal", "Abdomen 5.0 B30f portal venous", 108), ("delayed", "Abdomen 5.0 B30f delayed", 215)]
CT_RENAL = [("unenhanced", "Nativ 3.0 Br40", 0), ("corticomedullary", "CM Phase 3.0 Br40", 75),
            ("nephrographic", "NG phase 3.0 Br40", 140), ("excretory", "Urogram 3.0 Br40", 540)]


@pytest.mark.parametrize("rows", [CT_LIVER, CT_RENAL], ids=["liver", "renal"])
@pytest.mark.parametrize("same", [False, True])
def test_ct_protocols(rows, same):
    if same:
        hint = "Renal mass" if rows is CT_RENAL else "Abdomen"
        rows = [(p, f"{hint} 5.0 B30f", dt) for p, _, dt in rows]
    vols, truth = _study(rows + [(None, "Topogram 0.6 T20s", -30)], 86400 - 100, shuffle_seed=5, modality="CT")
    result = assign_phases(vols)
    assert {a.volume_id: a.phase for a in result} == truth
    assert all(a.phase in CT_PHASES for a in result if a.phase)


def test_overrides_win_and_unknown_phase_raises():
    vols, truth = _study(SAME, 40000.0)
    result = assign_phases(vols, overrides={"v1": "portal", "v2": None})
    assert result[1].phase == "portal" and result[1].confidence == 1.0 and result[1].overridden
    assert result[2].phase is None and result[2].overridden
    assert "automatic: arterial" in result[1].reason
    assert not result[0].overridden and result[0].phase == "T1_pre"
    with pytest.raises(PhaseError, match="v3.*unknown phase 'venous'"):
        assign_phases(vols, overrides={"v3": "venous"})
    with pytest.raises(PhaseError, match="nope"):
        assign_phases(vols, overrides={"nope": "portal"})
    with pytest.raises(PhaseError, match="protocol"):
        assign_phases(vols, protocol="brain")
    assert set(LIVER_MRI_PHASES) >= {a.phase for a in assign_phases(vols) if a.phase}


@settings(max_examples=25, deadline=None)
@given(start=st.floats(0, 86399), injection=st.floats(20, 70), arterial=st.floats(22, 40),
       portal=st.floats(62, 85), transitional=st.floats(160, 240), hbp=st.floats(1000, 1500),
       order=st.permutations(range(5)))
def test_timing_property(start, injection, arterial, portal, transitional, hbp, order):
    """Any start time (midnight included), typical delays and any input order: right by timing alone."""
    delays = [0.0] + [injection + d for d in (arterial, portal, transitional, hbp)]
    phases = ["T1_pre", "arterial", "portal", "transitional", "hepatobiliary"]
    vols = [(phases[i], _mr("AX LAVA MULTIPHASE", (start + delays[i]) % 86400, "Gd")) for i in order]
    assert [a.phase for a in assign_phases(vols)] == [v for v, _ in vols]


def test_auto_protocol_from_descriptions():
    adrenal = [("unenhanced", "Adrenal plain", 0), ("portal", "Adrenal portal", 110),
               ("delayed", "Adrenal delayed", 950)]
    vols, truth = _study(adrenal, 20000.0, modality="CT")
    assert {a.volume_id: a.phase for a in assign_phases(vols)} == truth          # not renal despite "renal"
    renal = [(p, d.replace("Adrenal", "Kidney"), t) for p, d, t in adrenal]
    vols, _ = _study(renal, 20000.0, modality="CT")
    assert [a.phase for a in assign_phases(vols)] == ["unenhanced", "nephrographic", "excretory"]
