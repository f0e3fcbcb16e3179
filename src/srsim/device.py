"""The compute device, chosen one way for every stage (generation, training, PM simulation, P(k)), and the
host memory it can use."""

from __future__ import annotations

import os

from srsim.errors import SrsimError

__all__ = ["resolve_device", "available_host_bytes", "cpu_model"]


def resolve_device(name: str | None = "auto", *, local_rank: int | None = None, what: str = "device"):
    """torch.device for 'auto' (CUDA if torch sees a GPU, else CPU), 'cpu', 'cuda' or 'cuda:N'.

    local_rank: under torchrun, the GPU of this process; a bare 'cuda' (or 'auto' on a GPU machine) then
    means cuda:<local_rank>. what: the setting's name in error messages (e.g. 'train.device').
    Raises SrsimError for an unknown device name, or a CUDA device when CUDA is not available.
    """
    import torch

    name = (name or "auto").strip()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise SrsimError(f"{what}: invalid torch device '{name}': {exc}") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SrsimError(f"{what}: '{name}' requested but CUDA is not available (use 'auto' or 'cpu')")
        if dev.index is None and local_rank is not None:
            dev = torch.device("cuda", local_rank)
    return dev


def available_host_bytes() -> float:
    """Host memory available to new allocations, bytes (``MemAvailable`` of /proc/meminfo, else free pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo) and logical core count: the machine a CPU rate was measured on."""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "CPU"
    return f"{model}, {os.cpu_count()} cores"
