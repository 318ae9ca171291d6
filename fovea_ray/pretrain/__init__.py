"""Pre-training the backbone on foveated ImageNet with Ray Train (``fovea-ray pretrain``).

The study's ResNet-101 was pre-trained on ImageNet with the same variable-resolution
filter applied to every training image, then fine-tuned on foveated COCO. This package
is the first stage; ``fovea-ray train --backbone-weights PRETRAIN_DIR`` is the second.

The flow: :mod:`~fovea_ray.pretrain.index` (an ImageFolder listed into columnar arrays,
checked on the driver) -> :mod:`~fovea_ray.pretrain.data` (Ray Data: the seeded per-step
order, bytes read and decoded to uint8 in CPU tasks) -> :mod:`~fovea_ray.pretrain.step`
(foveation on the device in the image's own geometry, then the random-resized crop, the
classifier step) -> :mod:`~fovea_ray.pretrain.loop` (the Ray Train worker) ->
:mod:`~fovea_ray.pretrain.checkpoint` (the same directory format as ``train``, and a
torch-only loader); :mod:`~fovea_ray.pretrain.trainer` is the driver.

Importing this package does not import torch or Ray.
"""

from fovea_ray.pretrain.config import ARCHS, PretrainConfig

__all__ = ["ARCHS", "PretrainConfig", "pretrain"]


def pretrain(cfg: PretrainConfig, *, address: str | None = None, quiet_ray: bool = True):  # noqa: ANN201 - lazy import
    """Run (or resume) pre-training; see :func:`fovea_ray.pretrain.trainer.pretrain`."""
    from fovea_ray.pretrain.trainer import pretrain as _pretrain

    return _pretrain(cfg, address=address, quiet_ray=quiet_ray)
