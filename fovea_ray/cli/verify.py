"""``fovea-ray verify``: find a store's damaged chunks (and mark them for recomputation)."""

from __future__ import annotations

import time

import typer


def verify(
    store: str = typer.Argument(..., help="Activation store written by `fovea-ray extract` (STORE.zarr, path or URL)."),
    repair: bool = typer.Option(
        False,
        "--repair",
        help="Mark the damaged chunks not done, so that a rerun of `fovea-ray extract` recomputes them.",
    ),
) -> None:
    """Check every chunk of a store: present where it must be, and its crc32c checksum intact.

    Lists each damaged chunk (array, chunk index, sample range, reason) and exits 1 when
    there is any. With --repair the damaged chunks are marked not done (exit 0); rerun the
    extraction (the same `fovea-ray extract` command) to recompute them: it rewrites the
    manifest-derived rows from the manifest and the results from the network.

    Stores made before checksums are reported as unverified.
    """
    from fovea_ray.store import open_store

    st = open_store(store, mode="r+" if repair else "r")
    done = int(st.chunk_done().sum())
    if not st.checksummed:
        typer.echo(
            f"{st.path}: made without chunk checksums: unverified ({done} of {st.n_chunks} chunks done); "
            "re-extract into a new store to get checksums"
        )
        return
    t0 = time.perf_counter()
    found = st.damage()
    seconds = time.perf_counter() - t0
    for d in found:
        typer.echo(f"damaged: {d.describe()}")
    head = f"{st.path}: {done} of {st.n_chunks} chunks done, checked in {seconds:.1f} s: "
    if not found:
        typer.echo(head + "no damage")
        return
    chunks = sorted({d.chunk for d in found if d.samples is not None})
    if not repair:
        typer.echo(
            head + f"{len(found)} damaged chunk objects in {len(chunks)} sample chunks; repair: "
            f"`fovea-ray verify {st.path} --repair`, then rerun `fovea-ray extract`"
        )
        # SystemExit, not typer.Exit: click in non-standalone mode returns an Exit's code unseen.
        raise SystemExit(1)
    marked = st.repair(found)
    st.update_attrs(status="incomplete")
    typer.echo(
        head + f"{len(found)} damaged; marked {len(marked)} chunks not done "
        f"({', '.join(map(str, marked))}); rerun the same `fovea-ray extract MANIFEST --out {st.path}` "
        "to recompute them"
    )
