"""Ray Job entrypoint for pre-training the backbone on foveated ImageNet.

Submit from a clone of the repository (the working directory travels with the job)::

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/pretrain.py --data s3://BUCKET/imagenet --out /mnt/shared/fovea-ray/pre-r101-center \
        --arch resnet101 --workers 8 --gpu --cpus-per-worker 2 --batch-size 128 --epochs 90 \
        --checkpoint-every 2500 --eval-every 10000 --eval-max-images 10000 --fixation center

It takes exactly the options of ``fovea-ray pretrain`` and calls the same function; inside
a job ``RAY_ADDRESS`` names the cluster, so ``fovea_ray.cluster.connect`` joins it. Ray
Data's decode tasks take the cluster's remaining CPUs (size the GPU nodes with ~12-16 vCPUs
per GPU for R101 at 224 px). ``--out`` must be a folder every node reaches at the same
path (an NFS/EFS mount). Resubmitting the same command after a failure resumes from the
newest checkpoint in ``--out`` with identical steps. Exit status 2 with one line on bad
input, as the CLI.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run ``fovea-ray pretrain`` with ``argv`` (default: this process's arguments)."""
    from fovea_ray.cli import main as cli_main

    args = list(sys.argv[1:] if argv is None else argv)
    cli_main(["pretrain", *args])


if __name__ == "__main__":
    main()
