"""Invariant 1 of DESIGN.md: positions -> displacements -> positions is exact modulo the box."""

import h5py
import numpy as np
import pytest

from srsim.errors import SrsimError
from srsim.fields import (
    displacement_to_positions,
    grid_ids,
    ids_to_index,
    lagrangian_positions,
    minimum_image,
    periodic_runs,
    positions_to_displacement,
    read_periodic,
    wrap,
)


def test_grid_ids_follow_the_convention():
    n = 5
    ids = grid_ids(n).reshape(n, n, n)
    assert ids[0, 0, 0] == 1
    assert ids[1, 2, 3] == 1 * n * n + 2 * n + 3 + 1
    assert np.array_equal(np.sort(ids.ravel()), np.arange(1, n**3 + 1))


def test_subblock_ids_wrap_periodically():
    n = 6
    full = grid_ids(n).reshape(n, n, n)
    block = grid_ids(n, origin=(4, 5, -1), shape=(3, 2, 2), n_total=n).reshape(3, 2, 2)
    expect = full[np.ix_([4, 5, 0], [5, 0], [5, 0])]
    assert np.array_equal(block, expect)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_exact_in_any_order(seed):
    rng = np.random.default_rng(seed)
    n, box = 8, 50.0
    # displacements up to ~a third of the box, so particles cross the periodic boundary
    disp = rng.uniform(-0.3 * box, 0.3 * box, size=(3, n, n, n)).astype(np.float32)
    pos = displacement_to_positions(disp, box)
    assert pos.min() >= 0 and pos.max() < box
    ids = grid_ids(n)
    perm = rng.permutation(n**3)
    back = positions_to_displacement(pos[perm], ids[perm], n, box)
    np.testing.assert_allclose(back, disp, atol=1e-5)
    again = displacement_to_positions(back, box)
    sep = minimum_image(again - pos, box)
    assert np.abs(sep).max() < 1e-5


def test_block_positions_match_whole_box():
    rng = np.random.default_rng(3)
    n, box = 6, 10.0
    disp = rng.normal(0, 0.5, size=(3, n, n, n))
    whole = displacement_to_positions(disp, box).reshape(n, n, n, 3)
    block = displacement_to_positions(disp[:, 2:5, 1:3, 4:6], box, origin=(2, 1, 4), n_total=n)
    np.testing.assert_allclose(block, whole[2:5, 1:3, 4:6].reshape(-1, 3))


def test_lagrangian_grid_and_wrap():
    q = lagrangian_positions(4, 8.0)
    assert q.shape == (3, 4, 4, 4)
    assert q[0, 3, 0, 0] == 6.0 and q[2, 0, 0, 1] == 2.0
    w = wrap(np.array([-1e-17, 8.0, 9.5]), 8.0)
    assert np.all((w >= 0) & (w < 8.0))
    assert minimum_image(np.array([4.0, -4.0, 5.0]), 8.0).tolist() == [-4.0, -4.0, -3.0]


def test_bad_ids_fail_loudly():
    n = 3
    ids = grid_ids(n)
    pos = np.zeros((n**3, 3))
    dup = ids.copy()
    dup[0] = dup[1]
    with pytest.raises(SrsimError, match="snapX.*1 duplicated, 1 missing"):
        positions_to_displacement(pos, dup, n, 1.0, source="snapX")
    with pytest.raises(SrsimError, match="expected 3\\^3"):
        ids_to_index(ids[:-1], n, source="snapX")
    bad = pos.copy()
    bad[3, 1] = np.nan
    with pytest.raises(SrsimError, match="NaN"):
        positions_to_displacement(bad, ids, n, 1.0, source="snapX")


def test_read_periodic_from_hdf5_equals_wrapped_take(tmp_path):
    field = np.arange(3 * 5**3, dtype=np.float32).reshape(3, 5, 5, 5)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["disp"] = field
    with h5py.File(tmp_path / "f.h5", "r") as f:
        for origin, size in (((-3, 4, 1), 4), ((2, -1, 3), 12)):
            block = read_periodic(f["disp"], origin, size, 5)
            idx = [(np.arange(size) + o) % 5 for o in origin]
            assert np.array_equal(block, field[:, idx[0]][:, :, idx[1]][:, :, :, idx[2]])
    assert len(periodic_runs(-3, 4, 5)) == 2 and len(periodic_runs(2, 12, 5)) == 3


def test_read_periodic_block_wraps():
    f = np.random.default_rng(4).standard_normal((3, 5, 5, 5)).astype(np.float32)
    blk = read_periodic(f, (3, -1, 4), 4)
    idx = [np.arange(s, s + 4) % 5 for s in (3, -1, 4)]
    np.testing.assert_array_equal(blk, f[:, idx[0][:, None, None], idx[1][None, :, None], idx[2][None, None, :]])
