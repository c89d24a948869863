"""Classifying a study's lesions with a saved liver model: results, warnings, CLI, bad input."""
import csv

import pytest
import SimpleITK as sitk
import torch

from slicercad.cli import main
from slicercad.engine.registry import load_model, save_model
from slicercad.errors import InputError, PhaseError
from slicercad.liver.inference import SIZE_BINS, classify_lesions, read_lesion_csv, size_bin
from slicercad.liver.roi import Lesion
from slicercad.liver.task import build_model, model_card
from slicercad.synth.liver_lesions_phantom import generate_lesions

torch.set_num_threads(1)
CFG = {"channels": [8, 16, 16], "roi_px": 32}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    from slicercad.liver.task import LIVER_LESION
    model = build_model(LIVER_LESION.config(CFG))
    card_path = save_model(model, model_card(CFG, 1.3, "liver-test", {}), out)
    item = generate_lesions(1, seed=11)[0]
    paths = {}
    for p, img in item.images.items():
        paths[p] = out / f"{p}.nrrd"
        sitk.WriteImage(img, str(paths[p]))
    return card_path, item, paths


def test_classify_gives_calibrated_probabilities_cam_and_warnings(saved):
    card_path, item, _ = saved
    model, card = load_model(card_path, "liver_lesion")
    lesion = Lesion(item.lesion_id, tuple(item.center_lps), item.diameter_mm)
    (res,) = classify_lesions(model, card, item.images, [lesion], {"field_strength_t": 7.0})
    assert abs(sum(res["probabilities"].values()) - 1) < 1e-5 and res["cam"].shape == (32, 32)
    assert res["size_bin"] == size_bin(item.diameter_mm) and "synthetic" in res["notice"]
    assert any("field_strength_t" in w for w in res["warnings"])
    assert res["provenance"]["model_sha256"] == card["sha256"] and res["provenance"]["parameters"]["alpha"] == 0.1
    images = {p: v for p, v in item.images.items() if p != "hepatobiliary"}
    with pytest.raises(PhaseError, match="hepatobiliary") as info:
        classify_lesions(model, card, images, [lesion])
    assert info.value.source == item.lesion_id


def test_cli_classify_writes_csv_and_pictures(saved, tmp_path, capsys):
    card_path, item, paths = saved
    lesions = tmp_path / "lesions.csv"
    ras = item.center_lps * [-1, -1, 1]
    lesions.write_text("lesion_id,x,y,z,coordinate_system,diameter_mm\n"
                       f"A,{ras[0]},{ras[1]},{ras[2]},RAS,{item.diameter_mm}\n")
    out = tmp_path / "res.csv"
    args = ["liver", "classify", "--model", str(card_path), "--lesions", str(lesions), "--out", str(out),
            "--png-dir", str(tmp_path / "png")] + [f"--image={p}={path}" for p, path in paths.items()]
    assert main(args) == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 1 and rows[0]["lesion_id"] == "A" and rows[0]["predicted_class"]
    assert abs(sum(float(rows[0][f"p_{c}"]) for c in ("cyst", "hemangioma", "metastasis")) - 1) < 1e-3
    assert (tmp_path / "png" / "A.png").stat().st_size > 1000
    bad = tmp_path / "bad.csv"
    bad.write_text("lesion_id,x,y,z,coordinate_system,diameter_mm\nB,0,0,0,RAS,0\n")
    assert main(args[:5] + [str(bad)] + args[6:]) == 2
    assert "B" in capsys.readouterr().err


def test_lesion_csv_reads_per_phase_offsets_and_they_move_the_served_roi(saved, tmp_path):
    card_path, item, _ = saved
    model, card = load_model(card_path, "liver_lesion")
    c = item.center_lps * [-1, -1, 1]                                    # RAS
    path = tmp_path / "lesions.csv"
    path.write_text("lesion_id,x,y,z,coordinate_system,diameter_mm,offset_DWI_x,offset_DWI_y,offset_DWI_z,"
                    "offset_T2_x,offset_T2_y,offset_T2_z\n"
                    f"A,{c[0]},{c[1]},{c[2]},RAS,{item.diameter_mm},4,-2,1,,,\n"
                    f"B,{c[0]},{c[1]},{c[2]},RAS,{item.diameter_mm},,,,,,\n")
    a, b = read_lesion_csv(path)
    assert a.offsets_mm == {"DWI": (4.0, -2.0, 1.0)} and b.offsets_mm == {}
    assert list(a.offset_lps("DWI")) == [-4.0, 2.0, 1.0]                  # RAS vector -> LPS
    ra, rb = classify_lesions(model, card, item.images, [a, b], with_cam=False)
    dwi = ra["rois"].phases.index("DWI")
    assert not (ra["rois"].array[dwi] == rb["rois"].array[dwi]).all()   # the offset moved the DWI ROI
    hbp = ra["rois"].phases.index("hepatobiliary")
    assert (ra["rois"].array[hbp] == rb["rois"].array[hbp]).all()
    assert ra["offsets_mm"] == {"DWI": [4.0, -2.0, 1.0]} and rb["offsets_mm"] == {}
    for header, row, match in (("offset_DWI_x,offset_DWI_y", "1,2", "needs all"),
                               ("offset_XX_x,offset_XX_y,offset_XX_z", "1,2,3", "unknown phase"),
                               ("offset_DWI_x,offset_DWI_y,offset_DWI_z", "1,a,3", "not a number")):
        bad = tmp_path / "bad.csv"
        bad.write_text(f"lesion_id,x,y,z,coordinate_system,diameter_mm,{header}\nA,0,0,0,LPS,10,{row}\n")
        with pytest.raises(InputError, match=match):
            read_lesion_csv(bad)


def test_served_roi_follows_the_cards_field_of_view(saved):
    card_path, item, _ = saved
    model, card = load_model(card_path, "liver_lesion")
    assert card["input_spec"]["roi"]["fov_factor"] == 3.0 and card["input_spec"]["roi"]["min_fov_mm"] == 48.0
    lesion = Lesion(item.lesion_id, tuple(item.center_lps), item.diameter_mm)
    (base,) = classify_lesions(model, card, item.images, [lesion], with_cam=False)
    assert base["fov_mm"] == max(3.0 * item.diameter_mm, 48.0)
    wide = dict(card, input_spec=dict(card["input_spec"], roi=dict(card["input_spec"]["roi"], min_fov_mm=80.0,
                                                                  fov_factor=4.0)))
    (other,) = classify_lesions(model, wide, item.images, [lesion], with_cam=False)
    assert other["fov_mm"] == max(4.0 * item.diameter_mm, 80.0) != base["fov_mm"]
    assert other["rois"].spacing_mm == other["fov_mm"] / 32
    fixed = dict(card, input_spec=dict(card["input_spec"], roi=dict(card["input_spec"]["roi"], fov_mm=30.0)))
    (f,) = classify_lesions(model, fixed, item.images, [lesion], with_cam=False)
    assert f["fov_mm"] == 30.0
    from slicercad.liver.task import LIVER_LESION, input_spec
    spec = input_spec(LIVER_LESION.config({**CFG, "fov_factor": 2.5, "min_fov_mm": 40.0}))
    assert spec["roi"]["fov_factor"] == 2.5 and spec["roi"]["min_fov_mm"] == 40.0


def test_size_bins_come_from_the_engines_edges():
    from slicercad.engine.ci_settings import SIZE_BIN_EDGES_MM
    assert [hi for _, hi, _ in SIZE_BINS][:-1] == list(SIZE_BIN_EDGES_MM)
    assert [lo for lo, _, _ in SIZE_BINS][1:] == list(SIZE_BIN_EDGES_MM)
