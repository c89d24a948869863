"""Vendor-named and vendor-tagged diffusion/phase series, eADC refusal, the contrast agent, and
``slicercad scan --phases`` on real folder layouts (symbolic links, loops, empty and non-DICOM folders)."""
import json
import os
import shutil
from pathlib import Path

import pydicom
import pytest

from slicercad.cli import main
from slicercad.dicom import scan as scan_module
from slicercad.dicom.scan import scan_folder
from slicercad.dicom.tags import SeriesTags
from slicercad.liver.phases import hepatobiliary_agent_warning, is_gadoxetate
from slicercad.phases import assign_phases
from slicercad.synth.study import write_phantom_study

# vendor -> phantom series folder suffix -> (SeriesDescription, ImageType); DWI b-values move into the
# vendor's private tag where ``PRIVATE_B`` names one
VENDORS = {
    "siemens": {
        "T1_pre": ("t1_fl3d_tra_dyn_pre", "ORIGINAL\\PRIMARY\\M\\ND"),
        "arterial": ("t1_fl3d_tra_dyn_art", "ORIGINAL\\PRIMARY\\M\\ND"),
        "portal": ("t1_fl3d_tra_dyn_pv", "ORIGINAL\\PRIMARY\\M\\ND"),
        "transitional": ("t1_fl3d_tra_dyn_3min", "ORIGINAL\\PRIMARY\\M\\ND"),
        "hepatobiliary": ("t1_fl3d_tra_20min_HBP", "ORIGINAL\\PRIMARY\\M\\ND"),
        "T2": ("t2_haste_tra_mbh", "ORIGINAL\\PRIMARY\\M\\ND"),
        "DWI": ("ep2d_diff_b50_800_tra_TRACEW", "DERIVED\\PRIMARY\\DIFFUSION\\TRACEW\\ND"),
        "ADC": ("ep2d_diff_b50_800_tra_ADC", "DERIVED\\PRIMARY\\DIFFUSION\\ADC\\ND"),
    },
    "ge": {
        "T1_pre": ("Ax LAVA-Flex pre", "ORIGINAL\\PRIMARY\\OTHER"),
        "arterial": ("WATER: Ax LAVA-Flex Art", "DERIVED\\PRIMARY\\OTHER"),
        "portal": ("WATER: Ax LAVA-Flex Portal Venous", "DERIVED\\PRIMARY\\OTHER"),
        "transitional": ("Ax LAVA-Flex Delay 3 min", "ORIGINAL\\PRIMARY\\OTHER"),
        "hepatobiliary": ("Ax LAVA-Flex HBP 20 min", "ORIGINAL\\PRIMARY\\OTHER"),
        "T2": ("Ax SSFSE T2 FS", "ORIGINAL\\PRIMARY\\OTHER"),
        "DWI": ("Ax DWI", "ORIGINAL\\PRIMARY\\OTHER"),
        "ADC": ("Apparent Diffusion Coefficient (mm²/s)", "DERIVED\\PRIMARY\\OTHER"),
    },
    "philips": {
        "T1_pre": ("T1 THRIVE pre", "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE"),
        "arterial": ("eTHRIVE_dyn_AP", "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE"),
        "portal": ("eTHRIVE_dyn_PVP", "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE"),
        "transitional": ("eTHRIVE equilibrium", "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE"),
        "hepatobiliary": ("eTHRIVE HBP", "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE"),
        "T2": ("T2W_SPAIR_MV", "ORIGINAL\\PRIMARY\\M_SE\\M\\SE"),
        "DWI": ("isoDWI_SSh", "ORIGINAL\\PRIMARY\\M_SE\\M\\SE"),
        "ADC": ("dADC_DWI_SSh", "DERIVED\\PRIMARY\\M_SE\\M\\SE"),
    },
    # descriptions that say nothing: only ImageType and the standard diffusion attributes tell
    "tags_only": {
        "DWI": ("Series 6", "ORIGINAL\\PRIMARY\\M\\ND"),
        "ADC": ("Series 7", "DERIVED\\PRIMARY\\DIFFUSION\\ADC"),
    },
}
MANUFACTURER = {"siemens": "SIEMENS", "ge": "GE MEDICAL SYSTEMS", "philips": "Philips Medical Systems"}
PRIVATE_B = {"siemens": (0x0019, "SIEMENS MR HEADER", 0x0C, "IS"), "ge": (0x0043, "GEMS_PARM_01", 0x39, "IS"),
             "philips": (0x2001, "Philips Imaging DD 001", 0x03, "FL")}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phantom") / "study"
    return folder, write_phantom_study(folder, "liver_mri")["truth"]


def _rewrite(folder: Path, edit) -> None:
    """Apply ``edit(ds, phase)`` to every file of the phantom study (series folders are NN_<phase>)."""
    for series in sorted(p for p in folder.iterdir() if p.is_dir()):
        phase = series.name.split("_", 1)[1]
        for path in series.iterdir():
            ds = pydicom.dcmread(path)
            edit(ds, phase)
            ds.save_as(path)


def _vendor_study(phantom, tmp_path, vendor) -> Path:
    folder = tmp_path / vendor
    shutil.copytree(phantom[0], folder)

    def edit(ds, phase):
        if phase in VENDORS[vendor]:
            ds.SeriesDescription, image_type = VENDORS[vendor][phase]
            ds.ProtocolName = ds.SeriesDescription
            ds.ImageType = image_type.split("\\")
        ds.Manufacturer = MANUFACTURER.get(vendor, ds.Manufacturer)
        if phase == "DWI" and vendor in PRIVATE_B:
            group, creator, element, vr = PRIVATE_B[vendor]
            b = float(ds.DiffusionBValue)
            del ds.DiffusionBValue
            value = b if vr == "FL" else (f"{1_000_000_000 + int(b)}\\8\\0\\0" if vendor == "ge" else str(int(b)))
            ds.private_block(group, creator, create=True).add_new(element, vr, value)
        elif phase == "DWI":
            ds.DiffusionDirectionality = "ISOTROPIC"

    _rewrite(folder, edit)
    return folder


def _scan_phases(folder: Path, out: Path, *extra) -> dict:
    """``slicercad scan FOLDER --phases --json OUT``; the written listing."""
    assert main(["scan", str(folder), "--phases", "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def _phases_by_series(listing: dict) -> dict:
    (study,) = listing["studies"]
    rows = study["phases"]["volumes"]
    assert all(r["reason"] and r["series_instance_uid"] and r["modality"] == "MR" for r in rows)
    by_series = {}
    for r in rows:
        by_series.setdefault(r["series_instance_uid"], set()).add(r["phase"])
    return by_series


def test_scan_phases_on_the_phantom(phantom, tmp_path, capsys):
    listing = _scan_phases(phantom[0], tmp_path / "scan.json")
    assert _phases_by_series(listing) == {uid: {phase} for uid, phase in phantom[1].items()}
    rows = listing["studies"][0]["phases"]["volumes"]
    assert sorted(r["b_value"] for r in rows if r["phase"] == "DWI") == [0.0, 800.0]
    assert all(r["confidence"] >= 0.85 for r in rows)
    assert listing["studies"][0]["phases"]["warnings"] == []       # gadoxetate: no agent warning
    printed = capsys.readouterr().out
    assert all(uid in printed for uid in phantom[1]) and "hepatobiliary" in printed


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_vendor_variants_scan_to_the_same_phases(phantom, tmp_path, vendor):
    listing = _scan_phases(_vendor_study(phantom, tmp_path, vendor), tmp_path / "scan.json")
    assert _phases_by_series(listing) == {uid: {phase} for uid, phase in phantom[1].items()}
    rows = listing["studies"][0]["phases"]["volumes"]
    dwi = [r for r in rows if r["phase"] == "DWI"]
    assert sorted(r["b_value"] for r in dwi) == [0.0, 800.0]        # standard or private b-value tag
    adc = next(r for r in rows if r["phase"] == "ADC")
    assert adc["confidence"] == (0.95 if "ADC" in VENDORS[vendor]["ADC"][1] else 0.85), adc


@pytest.mark.parametrize("description, image_type", [
    ("ep2d_diff_b50_800_tra_EXP", "DERIVED\\PRIMARY\\DIFFUSION\\EXP\\ND"),
    ("dEADC_DWI_SSh", "DERIVED\\PRIMARY\\M_SE\\M\\SE"),
    ("Exponential Apparent Diffusion Coefficient", "DERIVED\\PRIMARY\\OTHER"),
    ("eADC", ""),
    ("Series 7", "DERIVED\\PRIMARY\\DIFFUSION\\EADC"),
])
def test_exponential_adc_is_refused(description, image_type):
    tags = SeriesTags(modality="MR", series_description=description, image_type=tuple(image_type.split("\\")))
    (a,) = assign_phases([("v", tags)], "liver_mri")
    assert a.phase is None and "exponential ADC" in a.reason, a


def test_exponential_adc_series_scans_unassigned(phantom, tmp_path):
    folder = tmp_path / "eadc"
    shutil.copytree(phantom[0], folder)

    def edit(ds, phase):
        if phase == "ADC":
            ds.SeriesDescription, ds.ImageType = "ep2d_diff_b50_800_tra_EXP", ["DERIVED", "PRIMARY", "DIFFUSION",
                                                                                "EXP", "ND"]

    _rewrite(folder, edit)
    rows = _scan_phases(folder, tmp_path / "scan.json")["studies"][0]["phases"]["volumes"]
    (eadc,) = [r for r in rows if r["series_description"] == "ep2d_diff_b50_800_tra_EXP"]
    assert eadc["phase"] is None and "exponential ADC" in eadc["reason"]
    assert "ADC" not in {r["phase"] for r in rows}


@pytest.mark.parametrize("description, phase", [
    ("TRACEW", "DWI"), ("Trace", "DWI"), ("isoDWI", "DWI"), ("DWI b800", "DWI"), ("Ax DWI", "DWI"),
    ("dADC", "ADC"), ("Apparent Diffusion Coefficient (mm²/s)", "ADC"), ("ep2d_diff_b50_800_tra_ADC", "ADC"),
])
def test_vendor_diffusion_descriptions(description, phase):
    (a,) = assign_phases([("v", SeriesTags(modality="MR", series_description=description))], "liver_mri")
    assert (a.phase, a.confidence) == (phase, 0.85), a


def test_standard_diffusion_attributes_where_descriptions_fail():
    vols = [("dwi", SeriesTags(modality="MR", series_description="Series 6", diffusion_directionality="ISOTROPIC")),
            ("fa", SeriesTags(modality="MR", series_description="Series 8", image_type=("DERIVED", "PRIMARY", "FA")))]
    dwi, fa = assign_phases(vols, "liver_mri")
    assert (dwi.phase, dwi.confidence) == ("DWI", 0.95) and "DiffusionDirectionality" in dwi.reason
    assert fa.phase is None and "FA" in fa.reason


@pytest.mark.parametrize("agent, gadoxetate", [
    ("Gd-EOB-DTPA", True), ("PRIMOVIST", True), ("Eovist 0.25 mmol/mL", True), ("gadoxetic acid", True),
    ("Gadoxetate Disodium", True), ("EOB・プリモビスト", True), ("Gadovist", False), ("Dotarem", False),
    ("MultiHance (gadobenate)", False), ("", False)])
def test_gadoxetate_names(agent, gadoxetate):
    assert is_gadoxetate(agent) is gadoxetate
    assert (hepatobiliary_agent_warning(["", agent]) is None) is gadoxetate


@pytest.mark.parametrize("agent, expected", [("Gadovist 1.0", "'Gadovist 1.0' is not gadoxetate"),
                                             (None, "contrast agent unknown")])
def test_non_gadoxetate_agent_warns(phantom, tmp_path, agent, expected, capsys):
    folder = tmp_path / "agent"
    shutil.copytree(phantom[0], folder)

    def edit(ds, phase):
        if "ContrastBolusAgent" in ds:
            if agent is None:
                del ds.ContrastBolusAgent
            else:
                ds.ContrastBolusAgent = agent

    _rewrite(folder, edit)
    (warning,) = _scan_phases(folder, tmp_path / "scan.json", "--protocol", "liver_mri")["studies"][0]["phases"][
        "warnings"]
    assert expected in warning and "hepatobiliary" in warning
    assert expected in capsys.readouterr().out


def _listing(folder):
    result = scan_folder(folder)
    return result, [(v.tags.series_instance_uid, v.volume_id, len(v.files)) for v in result.volumes()]


def test_symlinked_study_scans_like_the_real_one(phantom, tmp_path):
    real, expected = _listing(phantom[0])
    export = tmp_path / "pacs_export"
    export.mkdir()
    (export / "patient1").symlink_to(phantom[0], target_is_directory=True)
    (export / "patient1_again").symlink_to(phantom[0], target_is_directory=True)   # one study, two links
    (export / "loop").symlink_to(tmp_path, target_is_directory=True)                # a loop back up
    linked, got = _listing(export)
    assert got == expected and linked.n_files == real.n_files
    assert _phases_by_series(_scan_phases(export, tmp_path / "scan.json")) == \
        {uid: {phase} for uid, phase in phantom[1].items()}


def test_symlinked_files_and_broken_links(phantom, tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    series = next(p for p in sorted(phantom[0].iterdir()) if p.name.endswith("ADC"))
    for path in series.iterdir():
        (folder / path.name).symlink_to(path)
    (folder / "gone.dcm").symlink_to(tmp_path / "missing.dcm")
    (folder / "again.dcm").symlink_to(next(series.iterdir()))                     # one file, two links
    result = scan_folder(folder)
    assert len(result.volumes()) == 1 and len(result.volumes()[0].files) == len(list(series.iterdir()))
    assert [r for _, r in result.skipped].count("same file reached again through a symbolic link") == 1
    assert [r for p, r in result.skipped if p.name == "gone.dcm"] == [f"broken symbolic link (to "
                                                                      f"{tmp_path / 'missing.dcm'})"]


def test_empty_scans_say_why(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert scan_folder(empty).empty_reason() == "no files in the folder"
    other = tmp_path / "other"
    other.mkdir()
    for name in ("notes.txt", "scan.png"):
        (other / name).write_bytes(b"not a DICOM file" * 20)
    reason = scan_folder(other).empty_reason()
    assert reason.startswith("no DICOM among 2 files") and "notes.txt" in reason and "scan.png" in reason
    assert main(["scan", str(other), "--phases", "--json", str(tmp_path / "out.json")]) == 0
    assert "nothing to load: no DICOM among 2 files" in capsys.readouterr().out
    assert json.loads((tmp_path / "out.json").read_text())["empty_reason"] == reason

    def unreadable(path):
        raise PermissionError(13, os.strerror(13))

    monkeypatch.setattr(scan_module, "read_header", unreadable)
    reason = scan_folder(other).empty_reason()
    assert reason.startswith("all 2 files unreadable") and "Permission denied" in reason and "notes.txt" in reason
