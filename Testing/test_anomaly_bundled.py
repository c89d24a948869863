"""The bundled SYNTHETIC AnomalyCT models (``make anomaly-model``): < 3 MB, SYNTHETIC cards with sha256, the
card's per-case scores reproduced through the product path, and on the head CT model an inserted haemorrhage
scores higher than the same head without it, with the map peaking inside the bleed."""
import json

import numpy as np
import pytest
from scipy import ndimage

from slicercad.anomaly import preprocess as pp
from slicercad.anomaly.detector import bundled_card, load_detector
from slicercad.engine.registry import sha256_file
from slicercad.synth import anomaly_cxr, anomaly_head

KINDS = ("head_ct", "cxr")


@pytest.mark.parametrize("kind", KINDS)
def test_bundled_card_and_size(kind):
    path = bundled_card(kind)
    card = json.loads(path.read_text())
    weights = path.parent / card["weights"]
    assert weights.stat().st_size < 3_000_000                   # head: 2 x 50,688-voxel map stats + positional prior
    assert card["training_data"]["synthetic"] is True and card["metrics"]["synthetic"] is True
    assert sha256_file(weights) == card["sha256"]


@pytest.mark.parametrize("kind", KINDS)
def test_card_scores_equal_the_product_path(kind):
    det = load_detector(None, kind)
    make, insert = ((anomaly_head.normal_head, anomaly_head.insert_anomaly) if kind == "head_ct" else
                    (anomaly_cxr.normal_cxr, anomaly_cxr.insert_anomaly))
    for check in det.card["metrics"]["check_cases"][:2]:
        ph = make(check["seed"])
        img = insert(ph, *check["anomaly"], seed=check["seed"])[0] if check["anomaly"] else ph.image
        r = det.score_image(img, ph.patient_id)
        assert r.score == pytest.approx(check["score"], abs=1e-4)
        assert r.map_score == pytest.approx(check["map_score"], abs=1e-4)


def test_inserted_haemorrhage_scores_higher_and_map_peaks_inside():
    det = load_detector(None, "head_ct")
    ph = anomaly_head.normal_head(424242)
    img, m = anomaly_head.insert_anomaly(ph, "ich", 22.0, 40.0, seed=7)
    base, bleed = det.score_image(ph.image), det.score_image(img)
    assert bleed.score > base.score
    lesion = pp.resample_to_grid(m, bleed.sample.grid, True)
    peak = np.unravel_index(np.argmax(bleed.map), bleed.map.shape)
    assert ndimage.binary_dilation(lesion, iterations=1)[peak]
