import os
from pathlib import Path

import pytest

# Keep torch/numba from oversubscribing the 2-core CI machines.
os.environ.setdefault("OMP_NUM_THREADS", "1")

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent
MPGADGET = DATA / "mpgadget"


@pytest.fixture(scope="session")
def mpgadget_dir() -> Path:
    """Real MP-Gadget outputs (n16/, n32/): see tests/data/mpgadget/README.md."""
    return MPGADGET


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo_cosmology() -> dict:
    return {"Omega_m": 0.2814, "Omega_b": 0.0464, "Omega_L": 0.7186, "h": 0.697, "sigma8": 0.82, "n_s": 0.971}
