"""Memory budget of chunked generation: how large a window the generator and the host buffers can take.

Host memory holds `host_slots` chunks of SR particles at `HOST_BYTES_PER_PARTICLE` each; the device holds
one generator call (`estimate_generator_bytes`). `auto_chunk_size` picks the largest window that fits both.
"""

from __future__ import annotations

from typing import Sequence

from srsim.device import available_host_bytes

__all__ = ["HOST_BYTES_PER_PARTICLE", "VELOCITY_BYTES_PER_PARTICLE", "WRITERS", "host_slots",
           "estimate_generator_bytes", "auto_chunk_size"]

#: bytes per SR particle held on the host between generator and writer: position f8 x3, ID u8, disp f4 x3
HOST_BYTES_PER_PARTICLE = 24 + 8 + 12
#: and, for 6-channel models, their velocity f4 x3
VELOCITY_BYTES_PER_PARTICLE = 12

#: background writer threads by default: two write raw block bytes and checksum side by side (all of it
#: releases the GIL; the SR displacement file's HDF5 writes go beside them)
WRITERS = 2


def host_slots(writers: int, batch: int) -> int:
    """Host buffers of one chunk each: one per writer thread, plus a batch being filled, plus one queued."""
    return writers + batch + 1


def estimate_generator_bytes(widths: Sequence[int], size: int, pad: int, batch: int = 1) -> float:
    """Rough peak activation memory (bytes, float32) of one generator call on `batch` windows of `size`.

    Each level l holds about 3 tensors of widths[l] channels on a grid of 2^l (size + 2 pad) per side
    (features, upsampled copy, convolution output); calibrated against CUDA peaks in benchmarks/generate.py.
    """
    m = size + 2 * pad
    total = sum(w * (2**level * m) ** 3 for level, w in enumerate(widths))
    return 4.0 * 3.0 * batch * total


def auto_chunk_size(widths: Sequence[int], scale: int, pad: int, extent: int, device, batch: int = 1,
                    writers: int = 1, memory_fraction: float = 0.6, velocity: bool = False) -> int:
    """Largest window side (LR cells) whose generator call and host buffers fit in the free memory.

    Device budget: `memory_fraction` of the free CUDA memory (or of the available RAM on CPU, shared with
    the host buffers). The size is then balanced so that the windows tile `extent` evenly. `velocity`: the
    host buffers also hold velocities (6-channel models).
    """
    import torch

    host = memory_fraction * available_host_bytes()
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        dev_budget = memory_fraction * free
    else:
        dev_budget = 0.5 * host
        host = 0.5 * host
    per_particle = HOST_BYTES_PER_PARTICLE + (VELOCITY_BYTES_PER_PARTICLE if velocity else 0)
    best = 1
    for size in range(1, extent + 1):
        slots = host_slots(writers, batch)
        if (estimate_generator_bytes(widths, size, pad, batch) > dev_budget
                or slots * (scale * size) ** 3 * per_particle > host):
            break
        best = size
    pieces = -(-extent // best)
    return -(-extent // pieces)

