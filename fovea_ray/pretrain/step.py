"""One classification training step on foveated images (no Ray involved), and evaluation.

Order of operations on the device, per image of its own size:

1. uint8 (H, W, 3) -> (3, H, W) float in [0, 1] on the device;
2. **foveation** at the policy's fixation, in the image's own pixel geometry, by the
   analysis' :class:`~fovea_ray.foveation.Foveator` (same parameters as ``train``);
3. the **random-resized crop** (Szegedy et al., "Going deeper with convolutions", CVPR
   2015; torchvision's sampling), resized to ``input_size``, and a horizontal flip;
4. ImageNet normalisation; forward/backward under bfloat16 autocast on CUDA.

Why foveate before the crop: the study filtered every ImageNet image as it filtered COCO,
so blur follows eccentricity measured from the fixation in the *original* image, in its
pixels and at its ``pixels_per_degree``. Cropping first would re-centre the blur on each
random crop and rescale it by the crop's zoom, so the eccentricity (and the cutoff
frequency) a pixel is shown at would depend on the augmentation, not on where it lies in
the photo. The cost is foveating the full decoded image (bounded by ``max_side``)
rather than the 224 px crop; the benchmark measures that share.

Exactness: fixations, crops and flips come from a generator seeded by (seed, step, rank)
and the model's randomness is seeded per step as ``train`` does, so a resumed run repeats
the uninterrupted run's steps.

References: Goyal et al., "Accurate, Large Minibatch SGD" (2017): linear scaling, warm-up,
zero-init residual gamma, no weight decay on BN; He et al., "Bag of Tricks for Image
Classification" (CVPR 2019): cosine decay, label smoothing, no bias decay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fovea_ray.errors import FoveaRayError
from fovea_ray.pretrain.config import IMAGENET_MEAN, IMAGENET_STD, PretrainConfig
from fovea_ray.train.fixation import draw_fixations, eval_fixations, foveate_images
from fovea_ray.train.metrics import PhaseTimer
from fovea_ray.train.schedule import learning_rate

__all__ = [
    "ClassifierStep",
    "build_classifier",
    "center_crop_box",
    "param_groups",
    "random_resized_crop_box",
    "step_seed",
]


def step_seed(seed: int, step: int, rank: int) -> int:
    """The per-(seed, step, rank) seed (the same mixing as ``train``'s StepRunner)."""
    return ((int(seed) * 1_000_003 + int(step)) * 4099 + int(rank)) % (2**63)


def build_classifier(arch: str, num_classes: int, seed: int) -> torch.nn.Module:
    """``torchvision.models.<arch>(num_classes=K)``, initialised from ``seed`` (every rank
    builds the same weights), with each residual block's last BN gamma at zero (Goyal et
    al. 2017: every block starts as the identity, which helps large-batch training)."""
    import torchvision

    state = torch.random.get_rng_state()
    torch.manual_seed(int(seed))
    try:
        model = getattr(torchvision.models, arch)(weights=None, num_classes=int(num_classes), zero_init_residual=True)
    finally:
        torch.random.set_rng_state(state)
    return model


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two SGD groups: conv/linear weights with ``weight_decay``; BN parameters and biases without."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def random_resized_crop_box(
    height: int, width: int, g: torch.Generator, scale: Sequence[float], ratio: Sequence[float]
) -> tuple[int, int, int, int]:
    """(top, left, h, w) as torchvision's ``RandomResizedCrop.get_params``, from ``g``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(4, generator=g, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(u[2] * (height - h + 1)), int(u[3] * (width - w + 1)), h, w
    # Fallback: the centre crop at the nearest allowed aspect.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def center_crop_box(height: int, width: int, fraction: float) -> tuple[int, int, int, int]:
    """The centre square of side ``fraction x min(H, W)`` (resize-256-crop-224 for 0.875)."""
    side = max(1, int(round(min(height, width) * fraction)))
    return (height - side) // 2, (width - side) // 2, side, side


def _crop_resize(image: torch.Tensor, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    top, left, h, w = box
    crop = image[:, top : top + h, left : left + w].unsqueeze(0)
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]


def _topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum()


def to_tensors(images: Sequence[np.ndarray]) -> list[torch.Tensor]:
    """uint8 (H, W, 3) arrays -> (3, H, W) uint8 tensors (a copy only of read-only arrays,
    such as those Ray Data hands out, which torch may not wrap)."""
    return [
        torch.from_numpy(im if im.flags.writeable and im.flags.c_contiguous else np.array(im)).permute(2, 0, 1)
        for im in images
    ]


class ClassifierStep:
    """One SGD step of an ImageNet classifier on foveated images (see the module docstring).

    Parameters
    ----------
    model:
        The classifier to call (possibly DDP-wrapped), on ``device``.
    cfg:
        The run's configuration.
    foveator:
        A :class:`~fovea_ray.foveation.Foveator` (unused for policy "none").
    device:
        Where the step runs.
    steps:
        The run's total steps (the cosine schedule's length).
    rank:
        The worker's rank (seeds its fixations, crops and flips).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: PretrainConfig,
        foveator: Any,
        device: torch.device,
        *,
        steps: int,
        rank: int = 0,
    ) -> None:
        if foveator is None and cfg.fixation != "none":
            raise ValueError(f"fixation policy {cfg.fixation!r} needs a Foveator")
        self.model, self.cfg, self.foveator, self.device = model, cfg, foveator, torch.device(device)
        self.steps, self.rank = int(steps), int(rank)
        self.optimizer = torch.optim.SGD(
            param_groups(model, cfg.weight_decay), lr=cfg.base_lr(), momentum=cfg.momentum, nesterov=cfg.nesterov
        )
        self.amp = bool(cfg.amp and self.device.type == "cuda")
        self.timer = PhaseTimer(self.device)
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self._timing = False

    def _mark(self, name: str) -> None:
        if self._timing:
            self.timer.mark(name)

    def lr(self, step: int) -> float:
        c = self.cfg
        return learning_rate(
            step,
            base_lr=c.base_lr(),
            steps=self.steps,
            schedule="cosine",
            warmup_steps=c.warmup(),
            warmup_factor=c.warmup_factor,
        )

    def _device_float(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        return [t.to(self.device, non_blocking=True).float().div_(255) for t in to_tensors(images)]

    def _normalize(self, batch: torch.Tensor) -> torch.Tensor:
        batch = (batch - self.mean) / self.std
        return batch.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else batch

    def prepare(self, step: int, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network input of ``step`` (B, 3, S, S), normalised, and the fixations (B, 2) or None."""
        g = torch.Generator().manual_seed(step_seed(self.cfg.seed, step, self.rank))
        dev = self._device_float(images)
        self._mark("loaded")
        fixations = draw_fixations(self.cfg.fixation, [tuple(im.shape[-2:]) for im in dev], g)
        dev = foveate_images(self.foveator, dev, fixations)
        self._mark("foveated")
        out = []
        for im in dev:
            box = random_resized_crop_box(im.shape[-2], im.shape[-1], g, self.cfg.crop_scale, self.cfg.crop_ratio)
            crop = _crop_resize(im, box, self.cfg.input_size)
            if self.cfg.hflip > 0 and torch.rand((), generator=g).item() < self.cfg.hflip:
                crop = crop.flip(-1)
            out.append(crop)
        return self._normalize(torch.stack(out)), fixations

    def step(self, step: int, images: Sequence[np.ndarray], labels: np.ndarray) -> dict[str, torch.Tensor]:
        """Run optimizer step ``step`` (0-based) on a batch; returns {"loss", "top1"} tensors
        (top1 = correct predictions in the batch, before the update). Nothing is
        synchronised with the host here."""
        if len(images) == 0:
            raise FoveaRayError(f"step {step}: every image of the batch was unreadable")
        self._timing = True
        self.timer.mark("start")
        # Dropout-free ResNets draw nothing at random in the forward pass; seeding anyway
        # keeps a resumed run exact should a model that does (stochastic depth) be used.
        torch.manual_seed(step_seed(self.cfg.seed, step, self.rank) ^ 0x5EED)
        lr = self.lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        inputs, _ = self.prepare(step, images)
        target = torch.as_tensor(np.asarray(labels), dtype=torch.long).to(self.device, non_blocking=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.amp):
            logits = self.model(inputs)
        loss = self.criterion(logits.float(), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.timer.mark("end")
        self._timing = False
        return {"loss": loss.detach(), "top1": _topk_correct(logits.detach(), target, 1)}

    @torch.no_grad()
    def evaluate(self, images: Sequence[np.ndarray], labels: np.ndarray, rows: np.ndarray) -> torch.Tensor:
        """(top-1 correct, top-5 correct, count) on validation images: foveated at the
        policy's fixation (the "uniform" point fixed per index row), centre crop."""
        if len(images) == 0:
            return torch.zeros(3, device=self.device)
        dev = self._device_float(images)
        sizes = [tuple(im.shape[-2:]) for im in dev]
        dev = foveate_images(self.foveator, dev, eval_fixations(self.cfg.fixation, sizes, rows.tolist(), self.cfg.seed))
        batch = torch.stack(
            [_crop_resize(im, center_crop_box(*im.shape[-2:], self.cfg.eval_crop), self.cfg.input_size) for im in dev]
        )
        target = torch.as_tensor(np.asarray(labels), dtype=torch.long).to(self.device)
        was = self.model.training
        self.model.eval()
        try:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.amp):
                logits = self.model(self._normalize(batch)).float()
        finally:
            self.model.train(was)
        return torch.stack(
            [
                _topk_correct(logits, target, 1).float(),
                _topk_correct(logits, target, 5).float(),
                torch.tensor(float(len(images)), device=self.device),
            ]
        )

    def state_dict(self) -> dict[str, Any]:
        """Optimizer state (what resuming needs besides the weights)."""
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
