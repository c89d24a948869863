"""Shared engine: manifests, training, evaluation, model registry, Grad-CAM, export, job runner."""
