"""The end-of-run summary: samples done, skipped, failed (with reasons) and images/s."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: Failures listed in full in the printed summary (all are in the store's samples/error).
MAX_LISTED = 20


@dataclass
class ExtractSummary:
    """What one ``extract`` call did.

    ``done`` counts samples processed by this run (good and failed), ``skipped`` those
    already done by an earlier run (resume), ``failed`` those whose image could not be
    read, decoded or rendered (``failures`` lists ``(sample, file_name, reason)``).
    """

    store: str
    n_samples: int
    n_chunks: int
    chunks_run: int = 0
    chunks_skipped: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[tuple[int, str, str]] = field(default_factory=list)
    seconds: float = 0.0
    complete: bool = False
    device: str = ""
    actors: int = 0
    #: Seconds from the pipeline's start to its first finished chunk (actor start-up, model
    #: build, the first chunk's work): the fixed cost that a long run amortises.
    first_chunk_s: float = 0.0
    #: The sustained rate after start-up: the slope of samples stored vs time over the chunks
    #: after the first (:func:`fovea_ray.pipeline.extract.sustained_rate`); what the benchmark
    #: compares with the model-only loop.
    steady_images_per_s: float = 0.0
    #: Model-stage seconds (all actors), of which in the tapped forward, and sink write seconds.
    model_seconds: float = 0.0
    forward_seconds: float = 0.0
    write_seconds: float = 0.0
    #: Damaged chunks found by the verification before the run (missing, or failing their
    #: checksum), each described in words; they were marked not done and recomputed.
    repaired: list[str] = field(default_factory=list)

    @property
    def forward_share(self) -> float:
        """Fraction of the model stage's time spent in the tapped forward (the rest is decode,
        foveation, crop and paste, pixel controls and anchor scores)."""
        return self.forward_seconds / self.model_seconds if self.model_seconds > 0 else 0.0

    @property
    def good(self) -> int:
        """Samples of this run with activations."""
        return self.done - self.failed

    @property
    def images_per_s(self) -> float:
        """Samples processed by this run per second of pipeline wall time."""
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        """JSON-able form (stored in the store's ``last_run`` attribute)."""
        d = asdict(self)
        d["failures"] = [list(f) for f in self.failures[:1000]]
        d["images_per_s"] = self.images_per_s
        d["forward_share"] = self.forward_share
        return d

    def format(self) -> str:
        """The summary printed at the end of ``fovea-ray extract``."""
        state = "complete" if self.complete else "INCOMPLETE (rerun the same command to finish)"
        lines = [
            f"store {self.store}: {state}",
            f"  samples: {self.n_samples} in {self.n_chunks} chunks; this run: {self.done} done "
            f"({self.good} good, {self.failed} failed), {self.skipped} skipped (already done)",
            f"  throughput: {self.images_per_s:.2f} images/s over {self.seconds:.1f} s "
            f"({self.actors} {self.device} actor{'s' if self.actors != 1 else ''}; first chunk after "
            f"{self.first_chunk_s:.1f} s"
            + (f", then {self.steady_images_per_s:.2f} images/s sustained)" if self.steady_images_per_s > 0 else ")"),
            f"  model stage: {self.model_seconds:.1f} s, {100 * self.forward_share:.0f}% of it in the tapped forward; "
            f"store writes: {self.write_seconds:.1f} s",
        ]
        if self.repaired:
            lines.append(f"  damaged chunks found and recomputed ({len(self.repaired)}):")
            lines.extend(f"    {d}" for d in self.repaired[:MAX_LISTED])
            if len(self.repaired) > MAX_LISTED:
                lines.append(f"    ... and {len(self.repaired) - MAX_LISTED} more")
        if self.failures:
            lines.append(f"  failed samples ({self.failed}; reasons are in samples/error):")
            for sample, name, reason in self.failures[:MAX_LISTED]:
                lines.append(f"    sample {sample} {name}: {reason}")
            if self.failed > MAX_LISTED:
                lines.append(f"    ... and {self.failed - MAX_LISTED} more")
        return "\n".join(lines)
