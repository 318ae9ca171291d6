"""Ray Job entrypoint for training Mask R-CNN on foveated COCO.

Submit from a clone of the repository (the working directory travels with the job)::

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/train.py --ann-file /mnt/coco/annotations/instances_train2017.json \
        --images /mnt/coco/train2017 --out /mnt/shared/fovea-ray/r101-center \
        --val-ann-file /mnt/coco/annotations/instances_val2017.json --val-images /mnt/coco/val2017 \
        --workers 8 --gpu --cpus-per-worker 6 --loader-workers 4 --batch-size 2 \
        --backbone-weights /mnt/shared/resnet101-foveated-imagenet.pth --steps 90000 \
        --checkpoint-every 2000 --eval-every 10000 --fixation center

It takes exactly the options of ``fovea-ray train`` and calls the same function; inside a
job ``RAY_ADDRESS`` names the cluster, so ``fovea_ray.cluster.connect`` joins it. ``--out``
must be a folder every node can reach at the same path (an NFS/EFS mount): Ray Train
persists the checkpoints there and rank 0 appends ``metrics.jsonl`` to it. Resubmitting the
same command after a failure resumes from the newest checkpoint in ``--out``. Exit status 2
with one line on bad input, as the CLI.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run ``fovea-ray train`` with ``argv`` (default: this process's arguments)."""
    from fovea_ray.cli import main as cli_main

    args = list(sys.argv[1:] if argv is None else argv)
    cli_main(["train", *args])


if __name__ == "__main__":
    main()
