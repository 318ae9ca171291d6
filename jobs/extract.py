"""Ray Job entrypoint for the extraction pipeline.

Submit from a clone of the repository (the working directory travels with the job)::

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/extract.py s3://BUCKET/fovea-ray/manifest.parquet \
        --out s3://BUCKET/fovea-ray/store.zarr --weights none --device cuda

It takes exactly the options of ``fovea-ray extract`` and calls the same function; inside
a job Ray is already initialised, so ``fovea_ray.cluster.connect`` reuses that cluster.
Exit status 2 with one line on bad input, as the CLI.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run ``fovea-ray extract`` with ``argv`` (default: this process's arguments)."""
    from fovea_ray.cli import main as cli_main

    args = list(sys.argv[1:] if argv is None else argv)
    cli_main(["extract", *args])


if __name__ == "__main__":
    main()
