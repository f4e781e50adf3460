"""Stage II's image loss: (1 - l) L1 + l S per frame, S = D-SSIM or a LoFTR feature distance."""

from __future__ import annotations

from pathlib import Path

import torch

from cgwm_env.learn.settings import LearnSettings
from cgwm_env.render.metrics import d_ssim


class ImageLoss:
    """(1 - l) L1 + l S between predicted and true images (T, H, W, 3), S = D-SSIM or a LoFTR
    feature distance; returns per-frame losses (T,)."""

    def __init__(self, settings: LearnSettings):
        self.lam = settings.lambda_structure
        self.loftr = LoftrFeatureLoss(settings.loftr_weights) if settings.structure == "loftr" else None

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        l1 = (pred - target).abs().mean(dim=(-3, -2, -1))
        if self.lam == 0:
            return l1
        structure = self.loftr(pred, target) if self.loftr is not None else d_ssim(pred, target)
        return (1.0 - self.lam) * l1 + self.lam * structure


class LoftrFeatureLoss:
    """Distance of LoFTR's backbone features (coarse 1/8 and fine 1/2 resolution, unit length
    per location) of grayscale images (T, H, W, 3) -> (T,): mean of 1 - cosine similarity. The
    weights come from a local file (a kornia LoFTR state dict, or a checkpoint holding one under
    "state_dict"), read with torch.load(weights_only=True)."""

    def __init__(self, weights):
        from kornia.feature import LoFTR

        path = Path(weights)
        if not path.is_file():
            raise ValueError(f"loftr_weights: no file at {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for unreadable or unsafe files
            raise ValueError(f"loftr_weights: cannot read {path} as a torch state dict ({err})") from err
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"loftr_weights: expected a state dict in {path}, got {type(state).__name__}")
        state = {k.removeprefix("matcher."): v for k, v in state.items()}
        net = LoFTR(pretrained=None)
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"loftr_weights: {path} does not fit kornia's LoFTR ({err})") from err
        self.backbone = net.backbone.eval().requires_grad_(False)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weights = pred.new_tensor([0.299, 0.587, 0.114])
        gray = lambda x: (x @ weights)[:, None]  # noqa: E731
        total = 0.0
        for a, b in zip(self.backbone(gray(pred)), self.backbone(gray(target))):
            cos = torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-6)
            total = total + (1.0 - cos).mean(dim=(-2, -1))
        return total / 2
