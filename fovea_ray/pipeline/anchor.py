"""The anchor object's detection score: did the network find the object a sample is about?

Definition (COCO's matching rule, Lin et al., "Microsoft COCO", ECCV 2014): the anchor
score is the highest confidence among the model's detections *of the anchor's category*
whose box overlaps the anchor's ground-truth box with IoU >= 0.5, both boxes in canvas
pixels. It is 0.0 when the model reports no such detection (torchvision keeps
detections scoring above ``box_score_thresh`` = 0.05), and NaN where no detection was
run (backbone-only mode, or a sample whose image failed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: IoU a detection needs with the anchor box to count as finding it (COCO's AP50 rule).
IOU_THRESHOLD = 0.5


def anchor_box_on_canvas(
    bbox_xywh: Sequence[float], window_xywh: Sequence[float], canvas_hw: Sequence[int]
) -> np.ndarray:
    """The anchor's box in canvas pixels, ``(x0, y0, x1, y1)``.

    The window (source pixels) is pasted unscaled and centred on the canvas, at offset
    ``((W - w) // 2, (H - h) // 2)`` as :func:`fovea_ray.data.render.render_batch` does,
    so a source point ``p`` lands at ``p - window_xy + offset``.
    """
    x, y, w, h = (float(v) for v in bbox_xywh)
    wx, wy, ww, wh = (float(v) for v in window_xywh)
    ch, cw = (int(v) for v in canvas_hw)
    ox, oy = (cw - int(ww)) // 2, (ch - int(wh)) // 2
    return np.array([x - wx + ox, y - wy + oy, x - wx + ox + w, y - wy + oy + h], dtype=np.float64)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``(4,)`` xyxy box with each of ``(D, 4)`` xyxy boxes."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def anchor_score(
    detection: dict, anchor_xyxy: np.ndarray, category_id: int, iou_threshold: float = IOU_THRESHOLD
) -> float:
    """Score of the anchor object in one image's detections (see the module docstring).

    Args:
        detection: torchvision's per-image output with ``boxes`` (D, 4) xyxy, ``labels``
            (D,) and ``scores`` (D,) (tensors or arrays).
        anchor_xyxy: the anchor's box in the same (canvas) coordinates.
        category_id: the anchor's COCO category id (the model's label space).
    """

    def arr(v) -> np.ndarray:
        return v.detach().float().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)

    boxes, labels, scores = arr(detection["boxes"]), arr(detection["labels"]), arr(detection["scores"])
    same = labels.astype(np.int64) == int(category_id)
    if not same.any():
        return 0.0
    iou = box_iou(np.asarray(anchor_xyxy, dtype=np.float64), boxes[same])
    hit = iou >= iou_threshold
    return float(scores[same][hit].max()) if hit.any() else 0.0
