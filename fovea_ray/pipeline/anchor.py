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


def anchor_score(
    detection: dict, anchor_xyxy: Sequence[float], category_id: int, iou_threshold: float = IOU_THRESHOLD
) -> float:
    """Score of the anchor object in one image's detections (see the module docstring).

    The IoU is :func:`torchvision.ops.box_iou`, computed where the detections are (the
    actor's device), in float64 so that the 0.5 threshold is not decided by rounding.

    Parameters
    ----------
    detection : dict
        torchvision's per-image output with ``boxes`` (D, 4) xyxy, ``labels`` (D,) and
        ``scores`` (D,), tensors or arrays.
    anchor_xyxy : sequence of 4 floats
        The anchor's box in the same (canvas) coordinates.
    category_id : int
        The anchor's COCO category id (the model's label space).
    iou_threshold : float
        The IoU a detection needs with the anchor box to count.

    Returns
    -------
    float
        The highest matching detection score, or 0.0 when none matches.
    """
    import torch
    from torchvision.ops import box_iou

    # float32 first: the detector's own precision, whatever dtype the caller passes.
    boxes = torch.as_tensor(detection["boxes"]).detach().float().double().reshape(-1, 4)
    labels = torch.as_tensor(detection["labels"], device=boxes.device)
    scores = torch.as_tensor(detection["scores"], device=boxes.device).detach().float()
    same = labels.long() == int(category_id)
    if not bool(same.any()):
        return 0.0
    anchor = torch.as_tensor(anchor_xyxy, dtype=torch.float64, device=boxes.device).reshape(1, 4)
    hit = box_iou(anchor, boxes[same])[0] >= iou_threshold
    return float(scores[same][hit].max()) if bool(hit.any()) else 0.0
