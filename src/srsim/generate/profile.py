"""Where the time of a generation run goes: wall seconds per stage, for `benchmarks/generate.py --profile`.

A `StageTimer` is passed to `generate` only when profiling; without one the chunk loop times nothing. With
one on CUDA every stage boundary synchronises the device, so each stage is charged its own kernels and
copies (this serialises what would otherwise overlap: profile totals are an upper bound of a plain run).
Writer-thread stages (``write``, ``checksum``) run beside the main thread's, so shares of the wall time
may add up to more than 1. The particles of ``lr_read``, ``h2d`` and ``generator`` are the SR cells the
generator produced (whole windows, overlaps of uneven tilings included); the other stages count the
particles written.
"""

from __future__ import annotations

import contextlib
import threading
import time

__all__ = ["STAGES", "StageTimer", "stage"]

#: stages in chunk order: LR window read, host-to-device copy, generator call, displacement to stored
#: positions + IDs, device-to-host copy into the host slot, wait for a free host slot (the writers are
#: behind), bigfile write, journal checksum
STAGES = ("lr_read", "h2d", "generator", "particles", "d2h", "queue_wait", "write", "checksum")


class StageTimer:
    """Accumulated wall seconds and particles per stage (thread-safe). device: torch device to synchronise."""

    def __init__(self, device=None):
        self.device = device
        self.seconds = {s: 0.0 for s in STAGES}
        self.particles = {s: 0 for s in STAGES}
        self.calls = {s: 0 for s in STAGES}
        self._lock = threading.Lock()

    def _sync(self) -> None:
        if self.device is not None and getattr(self.device, "type", "cpu") == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def stage(self, name: str, particles: int = 0, sync: bool = True):
        """Charge the enclosed work to `name` (SR particles it handles: `particles`)."""
        if name not in self.seconds:
            raise KeyError(f"unknown generation stage {name!r} (known: {', '.join(STAGES)})")
        if sync:
            self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if sync:
                self._sync()
            dt = time.perf_counter() - t0
            with self._lock:
                self.seconds[name] += dt
                self.particles[name] += int(particles)
                self.calls[name] += 1

    def report(self, wall: float) -> dict:
        """Per stage: seconds, calls, particles, particles/s, share of `wall` (seconds of the chunk loop)."""
        out = {}
        for s in STAGES:
            sec, n = self.seconds[s], self.particles[s]
            out[s] = {"seconds": sec, "calls": self.calls[s], "particles": n,
                      "particles_per_s": n / sec if sec > 0 and n else None,
                      "share_of_wall": sec / wall if wall > 0 else None}
        return out


def stage(timer: StageTimer | None, name: str, particles: int = 0, sync: bool = True):
    """`timer.stage(...)`, or a context that does nothing when there is no timer (the plain run)."""
    return contextlib.nullcontext() if timer is None else timer.stage(name, particles, sync)
