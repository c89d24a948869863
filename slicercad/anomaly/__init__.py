"""AnomalyCT core: detectors trained on normal images only (Glow 2D/3D, f-AnoGAN), head CT and chest X-ray
sample paths, scores, maps, baselines and the SYNTHETIC experiment (seed 001 part 2)."""
