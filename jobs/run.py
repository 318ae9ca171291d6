"""Ray Job entrypoint for the whole study (``fovea-ray run``) on a cluster.

Submit from a clone of the repository (the working directory travels with the job)::

    ray up cluster.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/run.py --ann-file /data/coco/annotations/instances_train2017.json \
        --images s3://BUCKET/coco/train2017 --weights ckpt/ --n-per-type 2500 \
        --full-permutations 10000 --out /home/ray/fovea-ray-out
    ray rsync-down cluster.yaml /home/ray/fovea-ray-out ./fovea-ray-out
    ray down cluster.yaml

It takes exactly the options of ``fovea-ray run`` and runs the same code: the extraction
fans out over the cluster's GPU actors and the permutation tests over its CPUs (inside a
job Ray is already initialised, so ``fovea_ray.cluster.connect`` reuses that cluster).
Rerunning the same submission resumes. Exit status 2 with one line on bad input.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run ``fovea-ray run`` with ``argv`` (default: this process's arguments)."""
    from fovea_ray.cli import main as cli_main

    cli_main(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
