"""The O_h augmentation: a group of 48 elements acting consistently on fields, vectors and positions."""

import numpy as np
import pytest
import torch

from srsim.augment import (ELEMENTS, IDENTITY, compose, inverse, transform_field,
                           transform_positions, transformed_block)
from srsim.fields import displacement_to_positions, minimum_image
from srsim.model.layers import interp_up


def _field(n=6, seed=0):
    return np.random.default_rng(seed).standard_normal((3, n, n, n)).astype(np.float32)


def test_48_distinct_elements_forming_a_group():
    assert len(ELEMENTS) == 48
    assert len({g.matrix().tobytes() for g in ELEMENTS}) == 48
    for g in ELEMENTS:
        assert abs(round(np.linalg.det(g.matrix()))) == 1
        assert compose(g, inverse(g)) == IDENTITY
    # closure: every product is an element, and the multiplication table is a Latin square
    table = [[ELEMENTS.index(compose(g, h)) for h in ELEMENTS] for g in ELEMENTS]
    for row in table:
        assert sorted(row) == list(range(48))


def test_distinct_actions_on_a_field():
    f = _field(4)
    images = {transform_field(f, g).tobytes() for g in ELEMENTS}
    assert len(images) == 48


def test_action_composes_like_the_group():
    f = _field(5, 1)
    rng = np.random.default_rng(0)
    for gi, hi in rng.integers(0, 48, size=(40, 2)):
        g, h = ELEMENTS[gi], ELEMENTS[hi]
        np.testing.assert_array_equal(transform_field(transform_field(f, h), g), transform_field(f, compose(g, h)))


@pytest.mark.parametrize("gi", range(0, 48, 5))
def test_transformed_field_positions_equal_transformed_positions(gi):
    """Positions of the transformed displacement field = the transformed particle positions (same IDs)."""
    g = ELEMENTS[gi]
    n, box = 6, 30.0
    disp = 3.0 * _field(n, 2)  # up to ~ 2 cells: particles cross the box edge
    ids = np.arange(n ** 3, dtype=np.float32).reshape(1, n, n, n)
    pos_old = displacement_to_positions(disp, box)
    pos_new = displacement_to_positions(transform_field(disp, g), box)
    ids_new = transform_field(ids, g, vector=False).reshape(-1).astype(int)
    expect = transform_positions(pos_old[ids_new], g, box)
    assert np.abs(minimum_image(pos_new - expect, box)).max() < 1e-5


def test_block_of_transformed_box_equals_crop_of_transformed_field():
    f = _field(7, 3)
    for g in ELEMENTS[::3]:
        whole = transform_field(f, g)
        for start in [(0, 0, 0), (5, -2, 9), (-8, 3, 6)]:
            blk = transformed_block(f, g, start, 4)
            idx = [np.arange(s, s + 4) % 7 for s in start]
            ref = whole[:, idx[0][:, None, None], idx[1][None, :, None], idx[2][None, None, :]]
            np.testing.assert_array_equal(blk, ref)


def _up_periodic(lr, s):
    n = lr.shape[1]
    x = torch.from_numpy(np.pad(lr, ((0, 0),) + ((0, 1),) * 3, mode="wrap")).double()[None]
    return interp_up(x, s)[0, :, :s * n, :s * n, :s * n].numpy()


def test_lr_hr_alignment_survives_every_element():
    """HR = trilinear interpolation of LR at the HR lattice is preserved by every element (no sub-cell shift)."""
    lr = _field(4, 5).astype(np.float64)
    hr = _up_periodic(lr, 4)
    for g in ELEMENTS:
        np.testing.assert_allclose(_up_periodic(transform_field(lr, g), 4), transform_field(hr, g), atol=1e-6)
