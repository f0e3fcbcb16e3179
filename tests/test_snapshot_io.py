"""Our bigfile snapshots and HDF5 displacement files: units, atomic writes, streaming, errors."""

import json
import re

import numpy as np
import pytest

from srsim.displacement import snapshot_to_displacement_file
from srsim.errors import SrsimError
from srsim.fields import displacement_to_positions, grid_ids
from srsim.io.displacement import DisplacementWriter, read_displacement, write_displacement
from srsim.io.snapshot import (
    KPC_PER_MPC,
    SnapshotWriter,
    iter_particles,
    make_header,
    particle_mass,
    read_header,
    read_particles,
    write_snapshot,
)


def _snapshot(tmp_path, cosmo, n=8, box=20.0, seed=0):
    rng = np.random.default_rng(seed)
    disp = rng.normal(0, 0.7, size=(3, n, n, n)).astype(np.float32)
    pos = displacement_to_positions(disp, box)
    ids = grid_ids(n)
    perm = rng.permutation(n**3)
    vel = rng.normal(0, 100, size=(n**3, 3)).astype(np.float32)
    attrs = make_header(box_size=box, redshift=2.0, n_particles=n**3, cosmology=cosmo, n_grid=n)
    path = tmp_path / "snap"
    write_snapshot(path, attrs, pos[perm], ids[perm], velocity=vel[perm])
    return path, disp, pos[perm], ids[perm], vel[perm]


def test_write_read_units_and_header(tmp_path, demo_cosmology):
    path, disp, pos, ids, vel = _snapshot(tmp_path, demo_cosmology)
    h = read_header(path)
    assert h.box_size == 20.0 and h.n_particles == 512 and h.n_grid == 8
    assert h.redshift == pytest.approx(2.0)
    # paper: 64^3 in 100 Mpc/h with Omega_m = 0.2814 gives 2.98e11 Msun/h
    assert particle_mass(100.0, 64**3, 0.2814) == pytest.approx(2.98e11, rel=2e-3)
    assert h.particle_mass == pytest.approx(particle_mass(20.0, 512, 0.2814))
    assert h.attrs["BoxSize"][0] == 20.0 * KPC_PER_MPC
    got = read_particles(path, ("Position", "Velocity", "ID"))
    np.testing.assert_allclose(got["Position"], pos, atol=1e-12)
    np.testing.assert_array_equal(got["ID"], ids)
    np.testing.assert_array_equal(got["Velocity"], vel)
    streamed = list(iter_particles(path, ("ID",), chunk_size=100))
    assert [len(c["ID"]) for c in streamed] == [100] * 5 + [12]
    np.testing.assert_array_equal(np.concatenate([c["ID"] for c in streamed]), ids)


def test_gadget_velocity_convention_is_converted_to_peculiar(tmp_path, demo_cosmology):
    """MP-Gadget with UsePeculiarVelocity = 0 stores u = v / sqrt(a): the reader returns v = sqrt(a) u."""
    n = 4
    vel = np.random.default_rng(1).normal(0, 100, size=(n**3, 3)).astype(np.float32)
    pos = displacement_to_positions(np.zeros((3, n, n, n)), 10.0)
    attrs = make_header(box_size=10.0, redshift=3.0, n_particles=n**3, cosmology=demo_cosmology)
    attrs["UsePeculiarVelocity"] = np.array([0], dtype=np.int32)
    write_snapshot(tmp_path / "gadget", attrs, pos, grid_ids(n), velocity=vel)
    got = read_particles(tmp_path / "gadget", ("Velocity",))["Velocity"]
    np.testing.assert_allclose(got, vel * np.sqrt(0.25), rtol=1e-6)
    streamed = np.concatenate([c["Velocity"] for c in iter_particles(tmp_path / "gadget", ("Velocity",), 10)])
    np.testing.assert_array_equal(streamed, got)


def test_streamed_writer_any_order_and_atomic(tmp_path, demo_cosmology):
    n, box = 6, 10.0
    ids = grid_ids(n)
    pos = displacement_to_positions(np.zeros((3, n, n, n)), box)
    attrs = make_header(box_size=box, redshift=0.0, n_particles=n**3, cosmology=demo_cosmology)
    path = tmp_path / "out"
    writer = SnapshotWriter(path, attrs, n**3, position_dtype="f4")
    for start in (150, 0, 100, 50, 200):
        stop = min(start + 50, n**3)
        writer.write(start, pos[start:stop], ids[start:stop])
        assert not path.exists()  # nothing appears before the end
    writer.close()
    got = read_particles(path)
    np.testing.assert_allclose(got["Position"], pos, atol=1e-5)
    np.testing.assert_array_equal(got["ID"], ids)


def test_writer_failure_leaves_no_snapshot(tmp_path, demo_cosmology):
    attrs = make_header(box_size=1.0, redshift=0.0, n_particles=8, cosmology=demo_cosmology)
    path = tmp_path / "bad"
    with pytest.raises(SrsimError, match="non-finite"):
        with SnapshotWriter(path, attrs, 8) as w:
            w.write(0, np.full((8, 3), np.nan), grid_ids(2))
    assert not path.exists()


def test_displacement_file_round_trip(tmp_path, demo_cosmology):
    path, disp, *_ = _snapshot(tmp_path, demo_cosmology)
    out = snapshot_to_displacement_file(path, tmp_path / "d.h5")
    got, attrs = read_displacement(out)
    np.testing.assert_allclose(got, disp, atol=1e-5)
    assert attrs["box_size"] == 20.0 and attrs["redshift"] == pytest.approx(2.0) and attrs["n_grid"] == 8
    assert attrs["cosmology"]["Omega_m"] == pytest.approx(0.2814)
    assert attrs["source"].endswith("snap")


def test_displacement_of_an_mpgadget_snapshot_takes_sigma8_from_the_config(tmp_path, mpgadget_dir, demo_cosmology,
                                                                          capsys):
    """MP-Gadget's snapshot headers lack Sigma8 and PrimordialIndex, which training needs (the scaling's D(z))."""
    from srsim.cli import main

    snap = mpgadget_dir / "n16" / "output" / "PART_002"
    _, plain = read_displacement(snapshot_to_displacement_file(snap, tmp_path / "plain.h5"))
    assert "sigma8" not in plain["cosmology"] and plain["cosmology"]["Omega_m"] == pytest.approx(0.2814)
    cfg = '{"cosmology": %s}' % json.dumps(demo_cosmology)
    assert main(["displacement", str(snap), str(tmp_path / "d.h5"), "--config", cfg]) == 0
    _, attrs = read_displacement(tmp_path / "d.h5")
    assert attrs["cosmology"]["sigma8"] == 0.82 and attrs["cosmology"]["n_s"] == 0.971
    # a snapshot of another cosmology is refused, naming the key
    other = json.dumps({"cosmology": dict(demo_cosmology, Omega_m=0.3, Omega_L=0.7)})
    with pytest.raises(SrsimError, match=r"PART_002: the snapshot's omega_m = 0.2814 differs from config cosmology.Omega_m"):
        snapshot_to_displacement_file(snap, tmp_path / "o.h5", json.loads(other)["cosmology"])
    assert not (tmp_path / "o.h5").exists()
    # training on the field without them names the file and the fix
    plain32 = snapshot_to_displacement_file(mpgadget_dir / "n32" / "output" / "PART_002", tmp_path / "plain32.h5")
    code = main(["train", "--data", f"{tmp_path / 'plain.h5'}:{plain32}", "--redshift", "0",
                 "--config", '{"model": {"gen_widths": [8, 8], "pad": 2, "crop": 4}}', "--out", str(tmp_path / "m.pt")])
    assert code == 2
    assert re.search(r"plain.h5: its cosmology attribute lacks sigma8, n_s .*--config", capsys.readouterr().err)


def test_streamed_displacement_writer(tmp_path, demo_cosmology):
    disp = np.arange(3 * 4**3, dtype=np.float32).reshape(3, 4, 4, 4)
    w = DisplacementWriter(tmp_path / "s.h5", 4, box_size=1.0, redshift=0.0, cosmology=demo_cosmology, source="t")
    w.write((0, 0, 0), disp[:, :2])
    w.write((2, 0, 0), disp[:, 2:])
    w.close()
    np.testing.assert_array_equal(read_displacement(tmp_path / "s.h5")[0], disp)


def test_streamed_displacement_writer_resumes_or_discards(tmp_path, demo_cosmology):
    disp = np.arange(3 * 4**3, dtype=np.float32).reshape(3, 4, 4, 4)
    kw = dict(box_size=1.0, redshift=0.0, cosmology=demo_cosmology, source="t")
    w = DisplacementWriter(tmp_path / "s.h5", 4, **kw)
    crc = w.write((0, 0, 0), disp[:, :2])
    w.suspend()  # an interrupted job: the partial file stays, nothing is in place
    assert not (tmp_path / "s.h5").exists() and w.tmp.is_file()
    w = DisplacementWriter(tmp_path / "s.h5", 4, resume=True, **kw)
    assert w.crc((0, 0, 0), (2, 4, 4)) == crc
    w.write((2, 0, 0), disp[:, 2:])
    w.close()
    np.testing.assert_array_equal(read_displacement(tmp_path / "s.h5")[0], disp)
    w = DisplacementWriter(tmp_path / "t.h5", 4, **kw)
    w.write((0, 0, 0), disp[:, :2])
    w.suspend()
    w = DisplacementWriter(tmp_path / "t.h5", 4, **kw)  # no resume: the old blocks are gone
    assert w.crc((0, 0, 0), (2, 4, 4)) != crc
    w.abort()
    assert not w.tmp.exists() and not (tmp_path / "t.h5").exists()


def test_bad_inputs_name_the_file(tmp_path, demo_cosmology):
    with pytest.raises(SrsimError, match="nowhere.*not found"):
        read_header(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SrsimError, match="empty.*no 'Header'"):
        read_header(tmp_path / "empty")
    with pytest.raises(SrsimError, match="NaN"):
        write_displacement(tmp_path / "x.h5", np.full((3, 2, 2, 2), np.nan), box_size=1, redshift=0,
                           cosmology=demo_cosmology, source="t")
    assert not (tmp_path / "x.h5").exists()
    with pytest.raises(SrsimError, match="shape"):
        write_displacement(tmp_path / "y.h5", np.zeros((3, 2, 2, 3)), box_size=1, redshift=0,
                           cosmology=demo_cosmology, source="t")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(SrsimError, match="junk.h5.*HDF5"):
        read_displacement(tmp_path / "junk.h5")
    # a snapshot whose particle count is not a cube cannot be a grid simulation
    attrs = make_header(box_size=1.0, redshift=0.0, n_particles=10, cosmology=demo_cosmology)
    write_snapshot(tmp_path / "odd", attrs, np.zeros((10, 3)), np.arange(1, 11, dtype=np.uint64))
    with pytest.raises(SrsimError, match="odd.*not a cube"):
        snapshot_to_displacement_file(tmp_path / "odd", tmp_path / "odd.h5")
    assert not (tmp_path / "odd.h5").exists()


def test_cli_displacement(tmp_path, demo_cosmology, capsys):
    from srsim.cli import main

    path, disp, *_ = _snapshot(tmp_path, demo_cosmology)
    assert main(["displacement", str(path), str(tmp_path / "cli.h5")]) == 0
    np.testing.assert_allclose(read_displacement(tmp_path / "cli.h5")[0], disp, atol=1e-5)
    assert main(["displacement", str(tmp_path / "missing"), str(tmp_path / "m.h5")]) == 2
    assert "missing" in capsys.readouterr().err


@pytest.mark.parametrize("dtype,nmemb,nfile", [("f4", 3, 1), ("f8", 3, 3), ("u8", 1, 4)])
def test_raw_block_writes_the_files_and_header_of_bigfile_write(tmp_path, dtype, nmemb, nfile):
    import threading

    import bigfile

    from srsim.io.rawblock import RawBlock, byte_sum

    n = 1000
    rng = np.random.default_rng(1)
    shape = (n, nmemb) if nmemb > 1 else (n,)
    data = (rng.uniform(0, 1e6, shape) if dtype != "u8" else rng.integers(0, 2**64, shape, dtype=np.uint64))
    data = data.astype(dtype)
    slices = [(0, 137), (600, 1000), (137, 600), (200, 300)]  # any order, spanning files, one rewritten
    for d in ("lib", "raw"):
        with bigfile.File(str(tmp_path / d), create=True) as f:
            f.create("b", dtype=(dtype, nmemb) if nmemb > 1 else dtype, size=n, Nfile=nfile)
    with bigfile.File(str(tmp_path / "lib")) as f:
        for a, b in slices:
            f["b"].write(a, data[a:b])
    raw = RawBlock(tmp_path / "raw" / "b")
    threads = [threading.Thread(target=raw.write, args=(a, data[a:b])) for a, b in slices[:3]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    raw.write(*(lambda a, b: (a, data[a:b]))(*slices[3]))
    raw.close()
    for name in sorted(p.name for p in (tmp_path / "lib" / "b").iterdir()):
        assert (tmp_path / "raw" / "b" / name).read_bytes() == (tmp_path / "lib" / "b" / name).read_bytes(), name
    assert sorted(p.name for p in (tmp_path / "raw" / "b").iterdir()) == sorted(
        p.name for p in (tmp_path / "lib" / "b").iterdir())
    assert np.array_equal(bigfile.File(str(tmp_path / "raw"))["b"][:], data)
    assert byte_sum(np.array([255, 255, 1], np.uint8)) == 511
    with pytest.raises(ValueError, match="outside"):
        RawBlock(tmp_path / "raw" / "b").write(n - 1, data[:2])
    with pytest.raises(ValueError, match="expected rows"):
        RawBlock(tmp_path / "raw" / "b").write(0, data[:2].astype(np.float32 if dtype != "f4" else np.float64))


def test_chunk_checksum_is_zlibs_crc32():
    import zlib

    from srsim.io.atomic import crc32

    a = np.random.default_rng(2).normal(size=(1000, 3)).astype(np.float32)
    assert crc32(a) == zlib.crc32(a.tobytes()) and crc32(a[::2]) == zlib.crc32(a[::2].tobytes())


def _raw_writer_process(path, data, rows):
    from srsim.io.rawblock import RawBlock

    block = RawBlock(path)
    for a in rows:
        block.write(a, data[a:a + 10])
    block.close()


def test_raw_block_header_checksum_adds_up_across_processes(tmp_path):
    """Jobs writing one partial snapshot at once: no header update is lost (bigfile's own write races)."""
    import multiprocessing as mp

    import bigfile

    from srsim.io.rawblock import byte_sum, read_block_header

    n = 2000
    data = np.random.default_rng(3).integers(0, 2**63, n, dtype=np.uint64)
    with bigfile.File(str(tmp_path / "s"), create=True) as f:
        f.create("b", dtype="u8", size=n, Nfile=2)
    byte_sum(data[:1])  # compiled (or loaded from numba's cache) once, before the fork
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_raw_writer_process, args=(tmp_path / "s" / "b", data, range(p * 10, n, 40)))
             for p in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    assert np.array_equal(bigfile.File(str(tmp_path / "s"))["b"][:], data)
    _, files = read_block_header(tmp_path / "s" / "b" / "header")
    assert [f[1] for f in files] == [byte_sum(data[:n // 2]), byte_sum(data[n // 2:])]


def test_truncated_block_is_refused_naming_the_file(tmp_path, mpgadget_dir):
    """A block whose data file is shorter than its header says (the header alone reads back as complete)."""
    import shutil

    from srsim.io.snapshot import check_blocks_complete

    snap = tmp_path / "PART_002"
    shutil.copytree(mpgadget_dir / "n16/output/PART_002", snap)
    check_blocks_complete(snap)
    data = snap / "1" / "ID" / "000000"
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size - 8)
    with pytest.raises(SrsimError, match=r"1/ID/000000: \d+ bytes, but its block header lists 4096 rows of 8 bytes"):
        check_blocks_complete(snap)
    check_blocks_complete(snap, blocks=("Position",))
