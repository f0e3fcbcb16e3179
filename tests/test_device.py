"""One device resolver for every stage (srsim.device), and the P(k) engine it maps to."""

import pytest
import torch

from srsim.analysis.power import power_engine
from srsim.device import available_host_bytes, resolve_device
from srsim.errors import SrsimError


def test_auto_cpu_and_bad_names():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device(" auto ")
    assert resolve_device("cpu", local_rank=3) == torch.device("cpu")
    with pytest.raises(SrsimError, match=r"sims.pm.device: invalid torch device 'gpu0'"):
        resolve_device("gpu0", what="sims.pm.device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_cuda_is_refused():
    with pytest.raises(SrsimError, match=r"train.device: 'cuda' requested but CUDA is not available"):
        resolve_device("cuda", local_rank=0, what="train.device")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_bare_cuda_takes_the_local_rank():
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("auto", local_rank=0) == torch.device("cuda", 0)
    assert resolve_device("cuda:0", local_rank=5) == torch.device("cuda", 0)


def test_power_engine():
    assert power_engine(None) == power_engine("") == power_engine("numpy") == "numpy"
    assert power_engine("cpu") == "cpu"  # torch on the CPU, on request
    assert power_engine("auto") == ("cuda" if torch.cuda.is_available() else "numpy")


def test_available_host_bytes():
    assert available_host_bytes() > 0
