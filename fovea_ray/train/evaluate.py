"""COCO box and mask AP on a validation set foveated as the training images are.

Detections are scored by pycocotools' ``COCOeval`` (Lin et al., "Microsoft COCO: Common
Objects in Context", ECCV 2014), the reference implementation of COCO AP: for
``iouType`` "bbox" and "segm", AP averaged over IoU 0.50:0.95 (``AP``), at 0.50
(``AP50``) and 0.75 (``AP75``), and by object size (``APs``, ``APm``, ``APl``).

Each validation image is foveated with the run's fixation policy before the forward
pass ("uniform" fixations are fixed per image id), so the AP measures the network on the
kind of input it was trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fovea_ray.train.fixation import eval_fixations, foveate_images

__all__ = ["STAT_NAMES", "coco_evaluate", "predict", "to_coco_results"]

log = logging.getLogger(__name__)

#: Names of the first six ``COCOeval.stats`` entries.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def to_coco_results(
    outputs: Sequence[dict[str, torch.Tensor]],
    image_ids: Sequence[int],
    category_ids: Sequence[int],
    *,
    mask_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """torchvision detections -> COCO result dicts (xywh boxes, RLE masks, category ids)."""
    import pycocotools.mask as mask_utils

    results: list[dict[str, Any]] = []
    for out, image_id in zip(outputs, image_ids):
        boxes = out["boxes"].detach().float().cpu()
        if boxes.numel() == 0:
            continue
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        scores = out["scores"].detach().float().cpu().tolist()
        labels = out["labels"].detach().cpu().tolist()
        rles: list[Any] = [None] * len(labels)
        if "masks" in out:
            binary = (out["masks"].detach()[:, 0] > mask_threshold).to(torch.uint8).cpu().numpy()
            rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
        for box, score, label, rle in zip(xywh, scores, labels, rles):
            cat = int(category_ids[label]) if 0 <= label < len(category_ids) else 0
            if cat <= 0:
                continue
            rec = {
                "image_id": int(image_id),
                "category_id": cat,
                "bbox": [float(v) for v in box],
                "score": float(score),
            }
            if rle is not None:
                rec["segmentation"] = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
            results.append(rec)
    return results


def coco_evaluate(
    coco_gt: Any, results: list[dict[str, Any]], image_ids: Sequence[int], iou_types: Sequence[str] = ("bbox", "segm")
) -> dict[str, float]:
    """``COCOeval`` stats, as {"bbox_AP": ..., "segm_AP50": ..., ...}.

    With no detections at all, every AP is 0 (pycocotools cannot load an empty result).
    """
    from pycocotools.cocoeval import COCOeval

    out: dict[str, float] = {}
    if not results:
        return {f"{t}_{name}": 0.0 for t in iou_types for name in STAT_NAMES}
    from fovea_ray.train.dataset import quiet_prints

    with quiet_prints():
        coco_dt = coco_gt.loadRes(results)
        for iou_type in iou_types:
            if iou_type == "segm" and not all("segmentation" in r for r in results):
                continue
            ev = COCOeval(coco_gt, coco_dt, iou_type)
            ev.params.imgIds = sorted(int(i) for i in image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            for name, value in zip(STAT_NAMES, ev.stats[: len(STAT_NAMES)]):
                # COCOeval writes -1 where a size bin has no ground truth.
                out[f"{iou_type}_{name}"] = float(value) if value >= 0 else float("nan")
    return out


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    dataset: Any,
    indices: Sequence[int],
    *,
    foveator: Any,
    policy: str,
    seed: int,
    device: torch.device,
    category_ids: Sequence[int],
    batch_size: int = 2,
    amp: bool = False,
) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    """Foveate and run the validation images ``indices`` of ``dataset`` (a
    :class:`~fovea_ray.train.dataset.CocoInstances`); returns (COCO results, image ids
    evaluated, errors). An unreadable image is recorded and left out, not fatal.
    """
    was_training = model.training
    model.eval()
    results: list[dict[str, Any]] = []
    done: list[int] = []
    errors: list[str] = []
    try:
        for start in range(0, len(indices), batch_size):
            images, ids = [], []
            for i in indices[start : start + batch_size]:
                try:
                    image, target = dataset.load(i)
                except Exception as err:  # noqa: BLE001 - recorded and skipped
                    errors.append(f"{dataset.image_path(i)}: {type(err).__name__}: {err}")
                    continue
                images.append(image.to(device, non_blocking=True).float().div_(255))
                ids.append(int(target["image_id"]))
            if not images:
                continue
            fix = eval_fixations(policy, [tuple(im.shape[-2:]) for im in images], ids, seed)
            images = foveate_images(foveator, images, fix)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=amp and device.type == "cuda"):
                outputs = model(images)
            results.extend(to_coco_results(outputs, ids, category_ids))
            done.extend(ids)
    finally:
        model.train(was_training)
    return results, done, errors
