"""Extraction throughput into S3 next to a local store, in the same process and Ray session.

A real S3 API (moto's server on 127.0.0.1, in this process) holds the synthetic mini-COCO's
images, the manifest and the store; the local run reads the same images from disk and
writes its store to a temporary folder. Both runs use the same manifest, network, chunk
and batch sizes, and alternate (local, s3, local, s3) so both see the same machine load
on average. Printed: the sustained rate (slope of samples stored vs time after the first
chunk) and the whole-run rate of each, and their ratio.

    python benchmarks/bench_s3.py                 # 32 samples, R50 backbone, 160 px canvas
    python benchmarks/bench_s3.py --n 64 --repeats 2

Needs ``moto[server]`` and ``s3fs`` (the ``test`` extra).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="samples (one chunk each)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each kind, alternating")
    ap.add_argument("--batch-size", type=int, default=1)
    args = ap.parse_args()

    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    opts = {"key": "testing", "secret": "testing", "endpoint_url": f"http://{host}:{port}"}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    fs = s3fs.S3FileSystem(**opts)
    fs.mkdir("bench")

    from test_extract import make_manifest

    from fovea_ray.data.manifest import write_manifest
    from fovea_ray.data.synthetic import make_synthetic_coco
    from fovea_ray.pipeline import extract

    tmp = Path(tempfile.mkdtemp(prefix="bench_s3_"))
    make_synthetic_coco(tmp / "coco", n_images=args.n, seed=0)
    fs.put(str(tmp / "coco" / "images") + "/", "bench/coco/images/", recursive=True)
    local_df = make_manifest(tmp / "coco", args.n)
    s3_df = local_df.assign(image_uri=[f"s3://bench/coco/images/{n}" for n in local_df["file_name"]])
    local_manifest = write_manifest(local_df, tmp / "m.parquet")
    fs.pipe("bench/m.parquet", Path(write_manifest(s3_df, tmp / "m_s3.parquet")).read_bytes())

    kw = dict(
        arch="resnet50",
        layers=["backbone.body.layer1.0.bn3", "backbone.body.layer2.3.bn3"],
        stats=["mean", "max"],
        chunk_size=1,
        batch_size=args.batch_size,
        backbone_only=True,
        progress=False,
    )
    rates: dict[str, list[tuple[float, float]]] = {"local": [], "s3": []}
    for r in range(args.repeats):
        for kind in ("local", "s3"):
            if kind == "local":
                s = extract(local_manifest, tmp / f"store{r}.zarr", **kw)
            else:
                s = extract("s3://bench/m.parquet", f"s3://bench/store{r}.zarr", storage_options=opts, **kw)
            rates[kind].append((s.steady_images_per_s, s.images_per_s))
            print(f"{kind:5s} run {r}: {s.steady_images_per_s:.2f} images/s sustained, {s.images_per_s:.2f} whole run")
    med = {k: (statistics.median(v[0] for v in x), statistics.median(v[1] for v in x)) for k, x in rates.items()}
    print(
        f"median of {args.repeats}: local {med['local'][0]:.2f} images/s sustained ({med['local'][1]:.2f} whole run), "
        f"s3 {med['s3'][0]:.2f} ({med['s3'][1]:.2f}); s3/local sustained {med['s3'][0] / med['local'][0]:.2f}"
    )
    server.stop()


if __name__ == "__main__":
    main()
