"""Classifying a study's lesions with a saved liver model: results, warnings, CLI, bad input."""
import csv

import pytest
import SimpleITK as sitk
import torch

from slicercad.cli import main
from slicercad.engine.registry import load_model, save_model
from slicercad.errors import PhaseError
from slicercad.liver.inference import classify_lesions, size_bin
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
