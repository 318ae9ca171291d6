"""``fovea-ray verify``: find a store's damaged chunks, and recompute them."""

from __future__ import annotations

import time

import typer

from fovea_ray.cli._options import ADDRESS_HELP


def verify(
    store: str = typer.Argument(..., help="Activation store written by `fovea-ray extract` (STORE.zarr, path or URL)."),
    repair: bool = typer.Option(
        False,
        "--repair",
        help="Recompute the damaged chunks: mark them not done, then rerun the extraction with the "
        "arguments the store records (its manifest, weights, layers, chunking and numerics).",
    ),
    mark_only: bool = typer.Option(
        False,
        "--mark-only",
        help="With --repair: only mark the damaged chunks not done; a later `fovea-ray extract` recomputes them.",
    ),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars while recomputing."),
) -> None:
    """Check every chunk of a store: present where it must be, and its crc32c checksum intact.

    Lists each damaged chunk (array, chunk index, sample range, reason) and exits 1 when
    there is any. With --repair the damaged chunks are marked not done and recomputed by
    the extraction the store records (the same manifest, weights, layers, chunking and
    numerics, so the new chunks match the others bit for bit), then the store is checked
    again. --mark-only stops after the marking.

    Stores made before checksums are reported as unverified.
    """
    from fovea_ray.errors import DamagedStoreError
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
            f"`fovea-ray verify {st.path} --repair`"
        )
        # SystemExit, not typer.Exit: click in non-standalone mode returns an Exit's code unseen.
        raise SystemExit(1)
    if not mark_only:
        from fovea_ray.pipeline.rerun import rerun_arguments

        manifest, kwargs = rerun_arguments(st)  # refused here, before anything is marked
    marked = st.repair(found)
    st.update_attrs(status="incomplete")
    typer.echo(head + f"{len(found)} damaged; marked {len(marked)} chunks not done ({', '.join(map(str, marked))})")
    if mark_only:
        typer.echo(f"rerun the same `fovea-ray extract MANIFEST --out {st.path}` to recompute them")
        return
    from fovea_ray.pipeline import extract

    summary = extract(manifest, st.path, address=address, progress=progress, **kwargs)
    again = open_store(st.path).damage()
    if again or not summary.complete:
        what = f"{len(again)} damaged chunk objects remain" if again else "the store is not complete"
        raise DamagedStoreError(f"{st.path}: repair incomplete: {what}; rerun `fovea-ray verify {st.path} --repair`")
    typer.echo(f"repaired: {summary.chunks_run} chunks recomputed from {manifest}; verified, no damage")
