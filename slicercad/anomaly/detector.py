"""Score one image with a trained detector: case score, its percentile among the held-out normals stored with
the weights, the complexity-corrected variant, the map score (top 1 % of the map) and the standardised
per-voxel map (on the model grid, or resampled onto the input's grid for display / NRRD). The one product
path: ``task.sample_of``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import ModelError
from . import task as T
from .preprocess import Sample, map_to_image

BUNDLED = {T.HEAD: "anomaly_glow_head3d_demo.json", T.CXR: "anomaly_glow_cxr2d_demo.json"}


def bundled_card(kind: str) -> Path:
    from ..engine.registry import BUNDLED_DIR

    return BUNDLED_DIR / BUNDLED[kind]


@dataclass
class Result:
    score: float
    percentile: float
    variant: float
    variant_percentile: float
    map_score: float              # mean of the top 1 % of the map in the mask (``baselines.top_fraction_mean``)
    map_percentile: float
    map: np.ndarray               # standardised map on the model grid (0 outside the likelihood mask)
    threshold: float              # map threshold set on held-out normals
    sample: Sample
    card: dict

    @property
    def warnings(self) -> list[str]:
        """The sample's measurements outside the card's ``input_spec.valid_ranges`` (scored, but outside what the
        model was trained on: e.g. a radiograph whose lung distance is not an adult's, or uncalibrated spacing)."""
        out = []
        for key, (lo, hi) in self.card["input_spec"].get("valid_ranges", {}).items():
            value = self.sample.info.get(key)
            if isinstance(value, (int, float)) and not lo <= value <= hi:
                out.append(f"{key} {value:.4g} outside the model's range {lo:g}-{hi:g}")
        return out

    @property
    def map_max(self) -> float:
        return float(self.map.max())

    @property
    def flagged_voxels(self) -> int:
        return int((self.map > self.threshold).sum())

    def map_image(self, reference: sitk.Image | None = None) -> sitk.Image:
        """The map as an image on the model grid, or resampled onto ``reference`` (a 2D CXR grid too)."""
        return map_to_image(self.map, self.sample.grid, reference)


class Detector:
    def __init__(self, model, card: dict, device="cpu"):
        import torch

        self.model, self.card, self.device = model.to(device).eval(), card, torch.device(device)
        self.kind = card["input_spec"].get("kind")
        self.is_glow = "glow" in card["task"]

    def score_sample(self, sample: Sample) -> Result:
        import torch

        from .baselines import top_fraction_mean
        from .scoring import complexity_bpd, percentile_among

        x = torch.from_numpy(sample.stacked()[None]).to(self.device)
        with torch.no_grad():
            r = self.model.score(x)
        if self.is_glow:
            score = float(r["bpd"][0])
            variant = score - complexity_bpd(sample.stacked())
        else:
            score = variant = float(r["score"][0])
        m = self.model
        vmap = r["map"][0].cpu().numpy()
        map_score = float(top_fraction_mean(vmap[None], sample.mask[None])[0])
        return Result(score, percentile_among(score, m.ref_scores.cpu().numpy()), variant,
                      percentile_among(variant, m.ref_variant.cpu().numpy()), map_score,
                      percentile_among(map_score, m.ref_map.cpu().numpy()), vmap, float(m.map_threshold),
                      sample, self.card)

    def score_image(self, image: sitk.Image, source="image") -> Result:
        return self.score_sample(T.sample_of(image, self.kind, source))


def load_detector(card_path=None, kind: str = T.HEAD, device="cpu") -> Detector:
    """The model at ``card_path`` (default: the bundled SYNTHETIC Glow for ``kind``), checked for its input kind."""
    from ..engine.registry import load_model

    path = Path(card_path) if card_path else bundled_card(kind)
    if not card_path and not path.is_file():
        raise ModelError("the bundled anomaly model is missing: build it with `make anomaly-model`, or train one "
                         f"with `slicercad train {T.task_for(kind, 'glow')}`", path)
    model, card = load_model(path)
    if card["task"] not in T.TASKS:
        raise ModelError(f"model is for task {card['task']!r}, not an AnomalyCT detector", path)
    card_kind = card["input_spec"].get("kind")
    if card["input_spec"].get("sample_path") != T.SAMPLE_PATH.get(card_kind):
        raise ModelError(f"model was built for sample path {card['input_spec'].get('sample_path')!r}, not the "
                         f"current {T.SAMPLE_PATH.get(card_kind)!r}: its inputs and calibration differ; retrain it "
                         "(`slicercad anomaly train`)", path)
    if card["input_spec"].get("kind") != kind:
        raise ModelError(f"model takes {card['input_spec'].get('kind')} input, not {kind}: pick the matching "
                         "model or input kind", path)
    return Detector(model, card, device)
