"""``python -m fovea_ray.cli``: the same as the ``fovea-ray`` script."""

from fovea_ray.cli import main

main()
