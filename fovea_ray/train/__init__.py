"""Training Mask R-CNN on foveated COCO with Ray Train (``fovea-ray train``).

The flow: :mod:`~fovea_ray.train.dataset` (COCO instances: boxes, labels, masks) ->
:mod:`~fovea_ray.train.fixation` (where each image is fixated; foveation of mixed sizes)
-> :mod:`~fovea_ray.train.loop` (the training step, foveating on the device, and the Ray
Train worker loop) -> :mod:`~fovea_ray.train.checkpoint` (``model.pt`` + ``meta.json``
directories that extraction loads) and :mod:`~fovea_ray.train.metrics`
(``metrics.jsonl``); :mod:`~fovea_ray.train.evaluate` scores COCO AP;
:mod:`~fovea_ray.train.trainer` is the driver (TorchTrainer, resume).

Importing this package does not import torch or Ray.
"""

from fovea_ray.train.config import FIXATION_POLICIES, SCHEDULES, TrainConfig

__all__ = ["FIXATION_POLICIES", "SCHEDULES", "TrainConfig", "train"]


def train(cfg: TrainConfig, *, address: str | None = None, quiet_ray: bool = True):  # noqa: ANN201 - lazy import
    """Run (or resume) training; see :func:`fovea_ray.train.trainer.train`."""
    from fovea_ray.train.trainer import train as _train

    return _train(cfg, address=address, quiet_ray=quiet_ray)
