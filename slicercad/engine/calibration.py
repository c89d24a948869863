"""Temperature scaling (Guo et al. 2017): one scalar T fitted on validation logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """T > 0 minimising the negative log-likelihood of ``softmax(logits / T)`` on ``labels``."""
    logits = torch.as_tensor(logits).detach().double()
    labels = torch.as_tensor(labels).long()
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise InputError(f"need (N, C) logits and N labels, got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}", "fit_temperature")
    if not torch.isfinite(logits).all():
        raise InputError("logits contain NaN or infinite values", "fit_temperature")
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return float(log_t.detach().exp().clamp(0.01, 100.0))


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Calibrated probabilities ``softmax(logits / T)``."""
    if not temperature > 0:
        raise InputError(f"temperature must be > 0, got {temperature}", "temperature")
    return torch.softmax(logits.float() / float(temperature), dim=-1)


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of labels under temperature-scaled probabilities."""
    return float(F.cross_entropy(logits.double() / temperature, torch.as_tensor(labels).long()))
