"""cluster.yaml (the `ray up` config) and the Ray Job entrypoint are well-formed."""

from __future__ import annotations

import copy
import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster.yaml"


@pytest.fixture(scope="module")
def cfg() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


def test_passes_rays_own_schema(cfg):
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cfg)))


def test_aws_head_plus_autoscaling_gpu_workers(cfg):
    assert cfg["provider"]["type"] == "aws"
    types = cfg["available_node_types"]
    head = cfg["head_node_type"]
    assert head in types and "GPU" not in types[head].get("resources", {})
    gpu = [t for name, t in types.items() if name != head]
    assert gpu, "no worker node type"
    for t in gpu:
        assert t["resources"].get("GPU", 0) >= 1
        family = t["node_config"]["InstanceType"].split(".")[0]
        assert family in {"g5", "g6", "g6e", "p4d", "p4de", "p5"}  # A10G / L4 / L40S / A100 / H100
        assert t["min_workers"] < t["max_workers"]  # autoscaling


def test_current_ray_gpu_image(cfg):
    import ray

    image = cfg["docker"]["image"]
    repo, tag = image.split(":")
    assert repo == "rayproject/ray" and "ray-ml" not in image  # ray-ml is deprecated
    assert tag.endswith("-gpu") and "py3" in tag
    assert tag.split("-")[0] == ray.__version__  # the cluster runs the Ray we test against


def test_setup_installs_this_package(cfg):
    mounts = cfg["file_mounts"]
    (target,) = [k for k, v in mounts.items() if v in (".", "./")]
    cmds = " ".join(cfg["setup_commands"])
    assert "pip install" in cmds and f"-e {target}" in cmds and f"-c {target}/constraints.txt" in cmds
    assert "s3fs" in cmds  # images and stores in S3 through fsspec


def test_only_ssh_is_open_to_the_world(cfg):
    perms = cfg["provider"]["security_group"]["IpPermissions"]
    for p in perms:
        public = any(ipaddress.ip_network(r["CidrIp"]).num_addresses > 2**16 for r in p.get("IpRanges", []))
        if public:
            assert (p["FromPort"], p["ToPort"]) == (22, 22) and p["IpProtocol"].lower() == "tcp"
    head_cmd = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_cmd  # dashboard/jobs API only through the SSH tunnel


def test_job_entrypoint_help():
    out = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "extract.py"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "--out" in out.stdout and "--weights" in out.stdout
