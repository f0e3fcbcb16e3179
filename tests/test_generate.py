"""Chunked SR generation: chunk-size invariance (noise included), regions, snapshot validity, resume, jobs, memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import bigfile
import h5py
import numpy as np
import pytest
import torch

from srsim.device import available_host_bytes
from srsim.errors import SrsimError
from srsim.fields import grid_ids, lagrangian_positions
from srsim.generate import (GenerateSettings, auto_chunk_size, axis_windows, estimate_generator_bytes, finalize,
                            generate, output_paths, plan_chunks, region_from_cells, region_from_centre,
                            region_from_mpc)
from srsim.io.displacement import read_displacement, write_displacement
from srsim.io.snapshot import particle_mass, read_header, read_particles
from srsim.model.generator import Generator

BOX = 60.0
N = 6
COSMO = {"Omega_m": 0.2814, "Omega_b": 0.0464, "Omega_L": 0.7186, "h": 0.697, "sigma8": 0.82, "n_s": 0.971}


def narrow_generator(seed: int = 0, noise_std: float = 0.5) -> Generator:
    """A narrow paper-geometry generator (3 rungs, 8x) with random weights and switched-on noise."""
    torch.manual_seed(seed)
    gen = Generator(widths=(6, 4, 4, 4))
    with torch.no_grad():
        for name, p in gen.named_parameters():
            if name.endswith("std"):
                p.fill_(noise_std)  # trained amplitudes start at 0; make the noise matter here
            elif ".proj." in name:
                p.normal_(0.0, 0.3)  # output projections start at 0 (the trivial predictor)
    return gen.eval()


def lr_field(n: int, seed: int = 1, amp: float = 1.5) -> np.ndarray:
    """A smooth periodic random displacement field (3, n, n, n) float32 Mpc/h."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((3, n, n, n))
    k = np.fft.fftfreq(n) * n
    k2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2
    field = np.fft.ifftn(np.fft.fftn(white, axes=(1, 2, 3)) * np.exp(-k2 / 8.0), axes=(1, 2, 3)).real
    return (amp * field / field.std()).astype(np.float32)


@pytest.fixture(scope="module")
def gen():
    return narrow_generator()


@pytest.fixture(scope="module")
def lr_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lr") / "lr.h5"
    write_displacement(path, lr_field(N), box_size=BOX, redshift=2.0, cosmology=COSMO, source="test field")
    return path


def sorted_positions(path) -> tuple[np.ndarray, np.ndarray]:
    p = read_particles(path, ("Position", "ID"))
    order = np.argsort(p["ID"])
    return p["ID"][order], p["Position"][order]


def periodic_max_diff(a: np.ndarray, b: np.ndarray, box: float) -> float:
    d = np.mod(a - b + box / 2, box) - box / 2
    return float(np.abs(d).max())


def block_bytes(snapshot: Path) -> dict:
    return {b: (snapshot / "1" / b / "000000").read_bytes() for b in ("Position", "ID")}


@pytest.fixture(scope="module")
def full_sr(gen, lr_file, tmp_path_factory) -> dict:
    """Whole-box SR in one chunk (the reference), seed 7, with its displacement file."""
    d = tmp_path_factory.mktemp("full")
    res = generate((gen, {}), lr_file, d / "sr",
                   GenerateSettings(seed=7, chunk=N, progress=False), disp_out=d / "sr.h5")
    assert res.complete and res.n_chunks == 1
    ids, pos = sorted_positions(d / "sr")
    return {"dir": d, "ids": ids, "pos": pos}


# ----------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("extent,size", [(6, 6), (6, 3), (6, 2), (6, 4), (7, 3), (5, 8), (13, 5)])
def test_axis_windows_cover_each_cell_once(extent, size):
    size = min(size, extent)
    covered = np.zeros(extent, int)
    for w, lo, hi in axis_windows(extent, size):
        assert 0 <= lo < hi <= size and w >= 0 and w + size >= hi
        covered[w + lo:w + hi] += 1
    assert np.all(covered == 1)


def test_plan_tiles_a_wrapping_region_in_slot_order():
    plan = plan_chunks(10, 3, 8, 3, region=((8, 0, 5), (4, 10, 7)))
    cells = np.zeros((10, 10, 10), int)
    start = 0
    for c in plan.chunks:
        assert c.start == start
        start += plan.particles(c)
        sl = [np.arange(w + l, w + h) % 10 for w, l, h in zip(c.window, c.lo, c.hi)]
        cells[np.ix_(*sl)] += 1
    assert start == plan.n_particles == 4 * 10 * 7 * 512
    expect = np.zeros((10, 10, 10), int)
    expect[np.ix_(np.arange(8, 12) % 10, np.arange(10), np.arange(5, 12) % 10)] = 1
    assert np.array_equal(cells, expect)


def test_regions_in_cells_and_mpc():
    assert region_from_cells((-2, 0, 3), (2, 6, 4), 6) == ((4, 0, 3), (4, 6, 1))
    # 10 Mpc/h cells: [15, 31) widens to cells 1..3
    assert region_from_mpc((15, -5, 0), (31, 5, 60), 60.0, 6) == ((1, 5, 0), (3, 2, 6))
    with pytest.raises(SrsimError):
        region_from_cells((0, 0, 0), (7, 1, 1), 6)


def test_region_from_centre_widens_wraps_and_refuses_bad_geometry():
    # 10 Mpc/h cells: a 16 Mpc/h cube around (55, 20, 30) covers [47, 63) -> cells 4, 5, 0 on x (across the edge)
    assert region_from_centre((55, 20, 30), 16, 60.0, 6) == ((4, 1, 2), (3, 2, 2))
    assert region_from_centre((55, 25, 30), (16, 5, 60), 60.0, 6) == ((4, 2, 0), (3, 1, 6))
    # a side of the whole box is the whole axis even off the cell edges (widening would make it 7 cells)
    assert region_from_centre((3, 3, 3), 60, 60.0, 6)[1] == (6, 6, 6)
    for centre, size, what in [((60, 0, 0), 10, "outside the box"), ((-1, 0, 0), 10, "outside the box"),
                               ((1, 1, float("nan")), 10, "outside the box"), ((1, 1, 1), 0, "must be > 0"),
                               ((1, 1, 1), (5, 5, -1), "must be > 0"), ((1, 1, 1), 61, "at most the box"),
                               ((1, 1), 5, "3 values"), ((1, 1, 1), (5, 5), "1 or 3")]:
        with pytest.raises(SrsimError, match=what):
            region_from_centre(centre, size, 60.0, 6)


def test_auto_chunk_size_fits_memory_and_tiles_evenly():
    cpu = torch.device("cpu")
    narrow = auto_chunk_size((8, 8, 8, 8), 8, 3, 12, cpu)
    paper = auto_chunk_size((512, 256, 128, 64), 8, 3, 640, cpu)
    assert 1 <= paper < 640 and narrow == 12  # a narrow model takes the 12^3 box whole
    pieces = -(-640 // paper)
    assert paper == -(-640 // pieces)  # balanced: no sliver of a last chunk
    assert estimate_generator_bytes((512, 256, 128, 64), paper, 3) < 0.6 * available_host_bytes()


# ----------------------------------------------------------------------------------- invariance


@pytest.mark.parametrize("chunk,n_chunks", [(3, 8), (2, 27), (4, 8)])  # 4 does not divide 6
def test_sr_independent_of_chunking_noise_included(gen, lr_file, full_sr, tmp_path, chunk, n_chunks):
    res = generate((gen, {}), lr_file, tmp_path / "sr",
                   GenerateSettings(seed=7, chunk=chunk, batch=2, writers=3, progress=False),
                   disp_out=tmp_path / "sr.h5")
    assert res.complete and res.n_chunks == n_chunks
    ids, pos = sorted_positions(tmp_path / "sr")
    assert np.array_equal(ids, full_sr["ids"])
    assert periodic_max_diff(pos, full_sr["pos"], BOX) < 1e-5 * BOX
    a, _ = read_displacement(tmp_path / "sr.h5")
    b, _ = read_displacement(full_sr["dir"] / "sr.h5")
    assert np.abs(a - b).max() < 1e-5 * BOX


def test_other_seed_gives_other_small_scales(gen, lr_file, full_sr, tmp_path):
    generate((gen, {}), lr_file, tmp_path / "sr", GenerateSettings(seed=8, chunk=3, progress=False))
    ids, pos = sorted_positions(tmp_path / "sr")
    assert np.array_equal(ids, full_sr["ids"])
    diff = np.mod(pos - full_sr["pos"] + BOX / 2, BOX) - BOX / 2
    hr_cell = BOX / (8 * N)
    assert np.sqrt(np.mean(diff**2)) > 0.05 * hr_cell  # noise changes every particle...
    assert np.sqrt(np.mean(diff**2)) < 5 * hr_cell  # ...on small scales only: the LR field is shared


def test_region_equals_cut_from_full_box(gen, lr_file, full_sr, tmp_path):
    origin, extent = region_from_cells((-2, 1, 3), (1, 3, 8), N)  # wraps on x and z
    res = generate((gen, {}), lr_file, tmp_path / "sub",
                   GenerateSettings(seed=7, chunk=2, region=(origin, extent), progress=False))
    assert res.complete and res.particles == 3 * 2 * 5 * 512
    ids, pos = sorted_positions(tmp_path / "sub")
    want = np.sort(grid_ids(8 * N, origin=[8 * o for o in origin], shape=[8 * e for e in extent], n_total=8 * N))
    assert np.array_equal(ids, want)
    assert periodic_max_diff(pos, full_sr["pos"][ids.astype(np.int64) - 1], BOX) < 1e-5 * BOX
    hdr = read_header(tmp_path / "sub")
    assert hdr.n_particles == len(ids)
    assert hdr.particle_mass == pytest.approx(particle_mass(BOX, (8 * N) ** 3, COSMO["Omega_m"]))


# ----------------------------------------------------------------------------------- the snapshot


def test_output_is_an_ordinary_snapshot(full_sr):
    path = full_sr["dir"] / "sr"
    n_hr = 8 * N
    assert np.array_equal(full_sr["ids"], np.arange(1, n_hr**3 + 1, dtype=np.uint64))  # each ID once
    pos = full_sr["pos"]
    assert pos.min() >= 0 and pos.max() < BOX
    raw = bigfile.File(str(path))["1/Position"][:]
    assert raw.min() >= 0 and raw.max() < BOX * 1000  # kpc/h on disk, wrapped
    assert "1/Velocity" not in bigfile.File(str(path)).list_blocks()
    hdr = read_header(path)
    assert hdr.box_size == BOX and hdr.n_particles == n_hr**3 and hdr.redshift == pytest.approx(2.0)
    assert hdr.particle_mass == pytest.approx(particle_mass(BOX, n_hr**3, COSMO["Omega_m"]))
    assert hdr.omega_m == COSMO["Omega_m"] and int(hdr.attrs["NGrid"][0]) == n_hr
    assert "no Velocity" in str(hdr.attrs["SRNote"])
    # the displacement file and the snapshot describe the same particles
    disp, attrs = read_displacement(full_sr["dir"] / "sr.h5")
    assert attrs["n_grid"] == n_hr and attrs["box_size"] == BOX
    q = lagrangian_positions(n_hr, BOX).reshape(3, -1).T
    assert periodic_max_diff(q + disp.reshape(3, -1).T.astype(np.float64), pos, BOX) < 1e-9 * BOX
    # nothing but the outputs is left behind
    assert sorted(p.name for p in full_sr["dir"].iterdir()) == ["sr", "sr.h5"]


def host_stored_positions(disp: np.ndarray, hr_origin, n_hr: int, box: float, position_dtype: str):
    """The host reference: float64 grid + displacement (Mpc/h) through SnapshotWriter.write's conversion."""
    idx = [np.remainder(np.arange(s) + o, n_hr) for o, s in zip(hr_origin, disp.shape[1:])]
    cell = box / n_hr
    d = disp.astype(np.float64)
    pos = np.stack([d[0] + idx[0][:, None, None] * cell, d[1] + idx[1][None, :, None] * cell,
                    d[2] + idx[2][None, None, :] * cell], -1).reshape(-1, 3)
    ids = (idx[0][:, None, None] * n_hr**2 + idx[1][None, :, None] * n_hr + idx[2][None, None, :] + 1)
    return pos, ids.reshape(-1).astype(np.uint64)


devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", devices)
@pytest.mark.parametrize("position_dtype", ["f4", "f8"])
def test_device_particles_store_the_bytes_of_the_host_f8_path(tmp_path, device, position_dtype):
    from srsim.generate import chunk_particles
    from srsim.io.snapshot import SnapshotWriter, make_header

    n_hr, box, shape, origin = 32, 50.0, (5, 7, 6), (30, 3, 29)  # wraps around the box edge on x and z
    rng = np.random.default_rng(4)
    disp = rng.normal(0, 0.6 * box / n_hr, (3, *shape)).astype(np.float32)
    disp[0, :, 0, 0] = -box  # whole-box jumps and tiny negatives: remainder and rounding to BoxSize
    disp[1, 0, 0, :] = np.float32(-1e-12)
    disp[2, 0, :, 0] = box * (1 - 1e-8)
    disp[2, -1, 0, :] = np.float32(box / n_hr * 2.99999)  # the last cell pushed onto the upper edge
    pos, ids = chunk_particles(torch.from_numpy(disp).to(device), origin, n_hr, box, position_dtype)
    pos, ids = pos.cpu().numpy(), ids.cpu().numpy().view(np.uint64)
    ref_pos, ref_ids = host_stored_positions(disp, origin, n_hr, box, position_dtype)
    assert np.array_equal(ids, ref_ids)  # IDs exactly
    n = len(ids)
    attrs = make_header(box_size=box, redshift=0.0, n_particles=n, cosmology=COSMO)
    host = SnapshotWriter(tmp_path / "host", attrs, n, position_dtype=position_dtype)
    host.write(0, ref_pos, ref_ids)
    stored = SnapshotWriter(tmp_path / "dev", attrs, n, position_dtype=position_dtype)
    stored.write_stored(0, pos, ids)
    host.close(), stored.close()
    assert block_bytes(tmp_path / "dev") == block_bytes(tmp_path / "host")  # the same snapshot, bit for bit
    raw = bigfile.File(str(tmp_path / "dev"))["1/Position"][:]
    assert raw.dtype.base == np.dtype(position_dtype) and raw.min() >= 0 and raw.max() < box * 1000
    # and within one rounding to the stored dtype of the exact wrapped f8 position
    exact = np.mod(ref_pos, box) * 1000
    ulp = np.spacing(np.asarray(box * 1000, dtype=position_dtype)).astype(np.float64)
    assert periodic_max_diff(raw.astype(np.float64), exact, box * 1000) <= ulp
    with pytest.raises(ValueError, match="write_stored"):
        SnapshotWriter(tmp_path / "x", attrs, n, position_dtype=position_dtype).write_stored(
            0, pos.astype(np.float64 if position_dtype == "f4" else np.float32), ids)


def test_generated_f4_snapshot_is_the_host_f8_path_of_its_displacements(gen, lr_file, tmp_path):
    """End to end: what generate stores (f4, several chunks) is the host path applied to the SR
    displacement it wrote, and each journaled checksum is that of the bytes on disk."""
    from srsim.generate import stored_crc

    out = tmp_path / "sr"
    first = generate((gen, {}), lr_file, out, GenerateSettings(seed=7, chunk=3, position_dtype="f4", max_chunks=5,
                                                               progress=False))
    assert not first.complete
    paths = output_paths(out)
    entries = [json.loads(line) for line in paths["journal"].read_text().splitlines()[1:]]
    reader = bigfile.File(str(paths["partial"]))
    assert len(entries) == 5
    for e in entries:
        assert {k: e[k] for k in ("crc_position", "crc_id")} == stored_crc(reader, e["start"], e["count"])
    res = generate((gen, {}), lr_file, out, GenerateSettings(seed=7, chunk=3, position_dtype="f4", progress=False))
    assert res.complete and res.skipped == 5
    full = tmp_path / "full"
    generate((gen, {}), lr_file, full, GenerateSettings(seed=7, chunk=N, position_dtype="f8", progress=False),
             disp_out=tmp_path / "sr.h5")
    disp, _ = read_displacement(tmp_path / "sr.h5")
    n_hr = 8 * N
    ref_pos, ref_ids = host_stored_positions(disp, (0, 0, 0), n_hr, BOX, "f8")
    ref_kpc = np.mod(ref_pos, BOX) * 1000
    ref_f4 = ref_kpc.astype(np.float32)
    ref_f4[ref_f4 >= np.float32(BOX * 1000)] = 0
    f = bigfile.File(str(out))
    raw, ids = f["1/Position"][:], f["1/ID"][:]
    assert raw.dtype.base == np.float32 and raw.min() >= 0 and raw.max() < BOX * 1000
    order = np.argsort(ids)
    assert np.array_equal(ids[order], ref_ids)
    assert np.array_equal(raw[order], ref_f4)
    # the f8 run stores the same f8 computation unrounded
    g = bigfile.File(str(full))
    order8 = np.argsort(g["1/ID"][:])
    assert np.array_equal(g["1/Position"][:][order8], ref_kpc)


def test_bf16_power_spectrum_close_to_fp32(gen, lr_file, full_sr, tmp_path):
    generate((gen, {}), lr_file, tmp_path / "sr",
             GenerateSettings(seed=7, chunk=N, bf16=True, progress=False), disp_out=tmp_path / "sr.h5")
    a, _ = read_displacement(tmp_path / "sr.h5")
    b, _ = read_displacement(full_sr["dir"] / "sr.h5")
    n = a.shape[1]
    k = np.fft.fftfreq(n) * n
    kk = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2).ravel()
    bins = np.digitize(kk, np.arange(1, n // 2 + 1))
    pa, pb = (np.bincount(bins, (np.abs(np.fft.fftn(x, axes=(1, 2, 3))) ** 2).sum(0).ravel()) for x in (a, b))
    ratio = pa[1:n // 2] / pb[1:n // 2]
    assert np.all(np.abs(ratio - 1) < 0.05), ratio


# ----------------------------------------------------------------------------------- resume and jobs


def test_interrupted_run_resumes_to_identical_bytes(gen, lr_file, tmp_path):
    ref = generate((gen, {}), lr_file, tmp_path / "ref", GenerateSettings(seed=3, chunk=2, writers=1, progress=False))
    assert ref.complete
    out = tmp_path / "sr"
    first = generate((gen, {}), lr_file, out,
                     GenerateSettings(seed=3, chunk=2, max_chunks=10, writers=3, progress=False))
    assert not first.complete and first.generated == 10 and not out.exists()
    paths = output_paths(out)
    assert paths["partial"].is_dir() and paths["journal"].is_file()
    # damage one journaled chunk on disk: verification must catch it and regenerate it
    with open(paths["partial"] / "1" / "Position" / "000000", "r+b") as f:
        f.seek(100)
        f.write(b"\x00" * 16)
    second = generate((gen, {}), lr_file, out, GenerateSettings(seed=3, chunk=2, writers=2, progress=False))
    assert second.complete and second.skipped == 9 and second.generated == 27 - 9
    assert block_bytes(out) == block_bytes(tmp_path / "ref")
    assert not paths["partial"].exists() and not paths["journal"].exists() and not paths["plan"].exists()


def test_stop_request_leaves_a_resumable_partial(gen, lr_file, tmp_path):
    calls = []

    def stop():  # what SIGUSR1 (slurm's time-limit warning) does in the CLI
        calls.append(1)
        return len(calls) > 4

    out = tmp_path / "sr"
    first = generate((gen, {}), lr_file, out, GenerateSettings(seed=3, chunk=3, progress=False), stop=stop)
    assert not first.complete and first.generated == 4 and not out.exists()
    second = generate((gen, {}), lr_file, out, GenerateSettings(seed=3, chunk=3, progress=False))
    assert second.complete and second.skipped == 4 and second.generated == 4
    ref = generate((gen, {}), lr_file, tmp_path / "ref", GenerateSettings(seed=3, chunk=3, progress=False))
    assert ref.complete and block_bytes(out) == block_bytes(tmp_path / "ref")


def test_changed_settings_restart_instead_of_mixing(gen, lr_file, tmp_path):
    out = tmp_path / "sr"
    generate((gen, {}), lr_file, out, GenerateSettings(seed=3, chunk=2, max_chunks=5, progress=False))
    res = generate((gen, {}), lr_file, out,
                   GenerateSettings(seed=4, chunk=2, progress=False))  # another seed: nothing reused
    assert res.complete and res.skipped == 0 and res.generated == 27


def test_split_jobs_then_merge_equal_single_run(gen, lr_file, tmp_path):
    ref = tmp_path / "ref"
    generate((gen, {}), lr_file, ref, GenerateSettings(seed=5, chunk=3, progress=False))
    out = tmp_path / "sr"
    r0 = generate((gen, {}), lr_file, out, GenerateSettings(seed=5, chunk=3, job=0, jobs=3, progress=False))
    assert r0.complete and r0.n_chunks in (2, 3) and not out.exists()
    with pytest.raises(SrsimError, match="incomplete jobs"):
        finalize(out, 3, progress=False)
    for j in (1, 2):
        generate((gen, {}), lr_file, out, GenerateSettings(seed=5, chunk=3, job=j, jobs=3, progress=False))
    finalize(out, 3, verify=True, progress=False)
    assert block_bytes(out) == block_bytes(ref)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref", "sr"]


def test_killed_chunk_job_reruns_only_its_unfinished_chunks_and_merge_names_the_job(gen, tmp_path):
    """One of two chunk jobs is SIGKILLed mid-run (no signal handler runs), then rerun: it regenerates only the
    chunks its journal does not hold. The merge refuses while a job is unfinished, or when a chunk's bytes
    disagree with its journal's checksums, naming the job; the repaired result equals a single run."""
    import signal
    import time

    from srsim.generate import read_journal
    from srsim.model.checkpoint import FORMAT, save_checkpoint

    n = 12  # 216 chunks of 2^3 LR cells: job 0 has 108, so the kill below lands mid-run
    lr = tmp_path / "lr.h5"
    write_displacement(lr, lr_field(n, seed=4), box_size=BOX * 2, redshift=2.0, cosmology=COSMO, source="test")
    model = tmp_path / "model.pt"
    save_checkpoint(model, {"format": FORMAT, "version": 1,
                            "generator": {"hyperparameters": gen.hyperparameters(), "state_dict": gen.state_dict()},
                            "state": {"step": 0, "epoch": 0},
                            "meta": {"disp_scale": 1.0, "redshift": 2.0, "box_size": 2 * BOX, "n_lr": n,
                                     "n_hr": 8 * n}})
    out = tmp_path / "sr"
    cli = [sys.executable, "-c", "import sys; from srsim.cli import main; sys.exit(main(sys.argv[1:]))"]

    def job(j, **kw):
        return [*cli, "generate", "--model", str(model), "--lr", str(lr), "--out", str(out), "--seed", "5",
                "--chunk", "2", "--writers", "1", "--jobs", "2", "--job", str(j), "--quiet"]

    journal0 = output_paths(out, 2, 0)["journal"]
    fingerprint = lambda: json.loads(output_paths(out)["plan"].read_text())  # noqa: E731
    proc = subprocess.Popen(job(0), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 900  # a watchdog, not a verdict
    while not (journal0.is_file() and len(journal0.read_text().splitlines()) > 5):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "job 0 journaled no chunks"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    kept = read_journal(journal0, fingerprint())
    assert proc.returncode == -signal.SIGKILL and 4 <= len(kept) < 108, len(kept)

    # job 1 has not run: the merge refuses, naming it
    with pytest.raises(SrsimError, match=r"job 0: \d+ of 108 chunks not finished.*job 1: 108 of 108"):
        finalize(out, 2, progress=False)
    rerun = subprocess.run(job(0), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{108 - len(kept)} chunks generated, {len(kept)} reused of 108" in rerun.stderr
    done1 = subprocess.run(job(1), capture_output=True, text=True, timeout=900)
    assert done1.returncode == 0 and "108 chunks generated, 0 reused of 108" in done1.stderr

    # a chunk of job 1 damaged on disk after it was journaled: the verifying merge names job 1 and the chunk
    entries1 = read_journal(output_paths(out, 2, 1)["journal"], fingerprint())
    victim = min(entries1.values(), key=lambda e: e["start"])
    with open(output_paths(out)["partial"] / "1" / "ID" / "000000", "r+b") as f:
        f.seek(8 * victim["start"])
        f.write(b"\xff" * 8)
    with pytest.raises(SrsimError, match=rf"job 1: chunks \[{victim['chunk']}\] whose data disagree with the "
                       r"journal's checksums") as err:
        finalize(out, 2, verify=True, progress=False)
    assert "job 0" not in str(err.value) and not out.exists()
    again = subprocess.run(job(1), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "1 chunks generated, 107 reused of 108" in again.stderr
    finalize(out, 2, verify=True, progress=False)
    ref = tmp_path / "ref"
    generate((gen, {}), lr, ref, GenerateSettings(seed=5, chunk=2, progress=False))
    assert block_bytes(out) == block_bytes(ref)


# ----------------------------------------------------------------------------------- bad input, CLI


def test_lr_snapshot_input_equals_its_displacement_file(gen, mpgadget_dir, tmp_path):
    """A real MP-Gadget LR snapshot (16^3, z = 2) as input, directly or through `srsim displacement`."""
    from srsim.displacement import snapshot_to_displacement_file

    snap = mpgadget_dir / "n16" / "output" / "PART_001"
    snapshot_to_displacement_file(snap, tmp_path / "lr.h5")
    region = region_from_cells((14, 0, 5), (17, 2, 7), 16)  # wraps on x
    for name, src in (("a", snap), ("b", tmp_path / "lr.h5")):
        res = generate((gen, {"redshift": 2.0, "box_size": 100.0, "n_lr": 16}), src, tmp_path / name,
                       GenerateSettings(seed=2, chunk=2, region=region, progress=False))
        assert res.complete and res.particles == 3 * 2 * 2 * 512
    assert block_bytes(tmp_path / "a") == block_bytes(tmp_path / "b")
    hdr = read_header(tmp_path / "a")
    assert hdr.box_size == 100.0 and hdr.redshift == pytest.approx(2.0, abs=1e-6) and hdr.omega_m == 0.2814
    assert hdr.particle_mass == pytest.approx(particle_mass(100.0, 128**3, 0.2814))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_generator_nan_or_inf_is_refused_naming_the_chunk(lr_file, tmp_path, value):
    from srsim.generate import trivial_predictor

    base = trivial_predictor(3)

    class Broken(type(base)):
        def forward(self, x, offset=None, seed=0, box_cells=None):
            y = super().forward(x, offset, seed, box_cells)
            if int(offset[0, 0]) + self.pad == 3:  # the chunks at LR x = 3 only
                y[0, 1, 5, 6, 7] = float(value)
            return y

    broken = base
    broken.__class__ = Broken
    with pytest.raises(SrsimError, match=r"NaN/inf in chunk \d+ \(LR window \(3, "):
        generate((broken, {}), lr_file, tmp_path / "sr", GenerateSettings(chunk=3, progress=False))
    assert not (tmp_path / "sr").exists()


def test_stage_timer_counts_every_particle_once_and_changes_nothing(lr_file, tmp_path):
    from srsim.generate import STAGES, StageTimer, trivial_predictor

    model = (trivial_predictor(3), {})
    settings = GenerateSettings(chunk=4, position_dtype="f4", progress=False)  # 4 does not divide 6
    plain = generate(model, lr_file, tmp_path / "plain", settings)
    timer = StageTimer()
    timed = generate(model, lr_file, tmp_path / "timed", settings, timer=timer)
    assert block_bytes(tmp_path / "timed") == block_bytes(tmp_path / "plain")
    assert timed.particles == plain.particles == (8 * N) ** 3
    for stage in ("particles", "d2h", "write", "checksum"):
        assert timer.particles[stage] == timed.particles, stage
    # the generator's work: whole windows of 4 LR cells, of which the overlapping tiles keep less
    assert timer.particles["generator"] == timer.particles["lr_read"] == 8 * (8 * 4) ** 3 > timed.particles
    assert timer.calls["lr_read"] == timed.n_chunks == 8
    report = timer.report(timer.loop_seconds)
    assert set(report) == set(STAGES) and all(r["seconds"] >= 0 for r in report.values())
    assert sum(r["seconds"] for k, r in report.items() if k not in ("write", "checksum")) <= timer.loop_seconds
    with pytest.raises(KeyError, match="unknown generation stage"):
        with timer.stage("gpu"):
            pass


def test_bad_inputs_fail_loudly(gen, lr_file, tmp_path):
    bad = lr_field(N)
    bad[1, 2, 3, 4] = np.nan
    with h5py.File(tmp_path / "nan.h5", "w") as f:  # written by hand: write_displacement refuses NaN
        f["disp"] = bad
        f.attrs["box_size"], f.attrs["redshift"] = BOX, 2.0
    with pytest.raises(SrsimError, match="nan.h5.*NaN"):
        generate((gen, {}), tmp_path / "nan.h5", tmp_path / "sr", GenerateSettings(chunk=3, progress=False))
    assert not (tmp_path / "sr").exists()
    with pytest.raises(SrsimError, match="trained at z = 0"):
        generate((gen, {"redshift": 0.0}), lr_file, tmp_path / "sr", GenerateSettings(chunk=3, progress=False))
    with pytest.raises(SrsimError, match="Mpc/h cells"):
        generate((gen, {"box_size": 100.0, "n_lr": 64}), lr_file, tmp_path / "sr",
                 GenerateSettings(chunk=3, progress=False))
    with pytest.raises(SrsimError, match="not found"):
        generate((gen, {}), tmp_path / "missing.h5", tmp_path / "sr", GenerateSettings(chunk=3, progress=False))


def test_cli_seeds_config_and_checkpoint(gen, lr_file, full_sr, tmp_path, capfd):
    from srsim.cli import main
    from srsim.model.checkpoint import FORMAT, save_checkpoint

    model = tmp_path / "model.pt"
    save_checkpoint(model, {"format": FORMAT, "version": 1,
                            "generator": {"hyperparameters": gen.hyperparameters(), "state_dict": gen.state_dict()},
                            "state": {"step": 0, "epoch": 0},
                            "meta": {"disp_scale": 1.0, "redshift": 2.0, "box_size": BOX, "n_lr": N, "n_hr": 8 * N}})
    cfg = json.dumps({"generate": {"chunk": 4, "position_dtype": "f4"}})
    code = main(["generate", "--model", str(model), "--lr", str(lr_file), "--out", str(tmp_path / "sr{seed}"),
                 "--disp-out", str(tmp_path / "sr{seed}.h5"), "--seed", "7", "9", "--config", cfg, "--quiet"])
    assert code == 0
    # a checkpoint from before scalings were recorded keeps the fixed disp_scale it was trained with
    assert "records no scaling" in capfd.readouterr().err
    for seed in (7, 9):
        assert read_header(tmp_path / f"sr{seed}").attrs["SRSeed"][0] == seed
        assert bigfile.File(str(tmp_path / f"sr{seed}"))["1/Position"].dtype.base == np.float32
    ids, pos = sorted_positions(tmp_path / "sr7")
    assert periodic_max_diff(pos, full_sr["pos"], BOX) < 1e-5 * BOX  # f4 storage of kpc/h
    code = main(["generate", "--model", str(model), "--lr", str(lr_file), "--out", str(tmp_path / "sub"),
                 "--seed", "7", "--region", "-10", "10", "20", "10", "30", "40", "--chunk", "2", "--quiet"])
    assert code == 0 and read_header(tmp_path / "sub").n_particles == 2 * 2 * 2 * 512
    # the same cells by centre and size: the same particles
    code = main(["generate", "--model", str(model), "--lr", str(lr_file), "--out", str(tmp_path / "sub_c"),
                 "--seed", "7", "--region-centre", "0", "20", "30", "--region-size", "20", "--chunk", "2", "--quiet"])
    assert code == 0
    assert np.array_equal(sorted_positions(tmp_path / "sub_c")[0], sorted_positions(tmp_path / "sub")[0])
    # bad regions fail before any output is written
    for bad in (["--region-centre", "0", "20", "35"], ["--region-size", "20"],
                ["--region-centre", "0", "20", "35", "--region-size", "20", "20"],
                ["--region-centre", "0", "20", "35", "--region-size", "0"],
                ["--region-centre", "0", "20", "35", "--region-size", "20", "--region", *["0"] * 3, *["10"] * 3]):
        assert main(["generate", "--model", str(model), "--lr", str(lr_file), "--out", str(tmp_path / "bad"),
                     "--quiet", *bad]) == 2, bad
        assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad*")), bad
    assert main(["generate", "--model", str(model), "--lr", str(lr_file), "--out", str(tmp_path / "x"),
                 "--seed", "1", "2", "--quiet"]) == 2  # several seeds need {seed} in --out


def test_disp_scale_normalises_input_and_output_like_training(gen, lr_file, full_sr, tmp_path):
    """The network sees LR / disp_scale (as CropDataset feeds it) and its output is scaled back to Mpc/h."""
    s = 2.0
    generate((gen, {"disp_scale": s}), lr_file, tmp_path / "sr",
             GenerateSettings(seed=7, chunk=N, progress=False), disp_out=tmp_path / "sr.h5")
    sr, _ = read_displacement(tmp_path / "sr.h5")
    lr, _ = read_displacement(lr_file)
    x = torch.from_numpy(np.pad(lr / np.float32(s), ((0, 0),) + ((gen.pad, gen.pad),) * 3, mode="wrap"))[None]
    with torch.no_grad():
        ref = s * gen(x, torch.full((1, 3), -gen.pad), 7, (N, N, N))[0].numpy()
    assert np.abs(sr - ref).max() < 1e-5 * BOX
    unscaled, _ = read_displacement(full_sr["dir"] / "sr.h5")
    assert np.abs(sr - unscaled).max() > 1e-3  # the scale matters for a nonlinear network


def test_recorded_scaling_round_trips_and_is_checked_against_the_data(lr_file, tmp_path):
    """Generation divides by the checkpoint's disp_unit x D(z) and multiplies back: an untrained generator
    (the trivial predictor) then returns the upsampled LR displacement in Mpc/h, whatever the scale."""
    from srsim.model.layers import lr_to_hr
    from srsim.model.scaling import Scaling

    scaling = Scaling.for_data({"disp_scale": 6.0, "density": "log1p"}, COSMO, 2.0)
    assert scaling.disp_scale == pytest.approx(6.0 * 0.42719, rel=1e-4)
    torch.manual_seed(0)
    fresh = Generator(widths=(6, 4, 4, 4)).eval()
    meta = {"disp_scale": scaling.disp_scale, "scaling": scaling.to_dict(), "redshift": 2.0}
    generate((fresh, meta), lr_file, tmp_path / "sr",
             GenerateSettings(seed=3, chunk=N, progress=False), disp_out=tmp_path / "sr.h5")
    sr, _ = read_displacement(tmp_path / "sr.h5")
    lr, _ = read_displacement(lr_file)
    x = torch.from_numpy(np.pad(lr, ((0, 0),) + ((3, 3),) * 3, mode="wrap"))[None]
    np.testing.assert_allclose(sr, lr_to_hr(x, 8, 3)[0].numpy(), rtol=0, atol=1e-5)
    # a model scaled for another cosmology's D(z) is refused, naming both values
    other = Scaling.for_data({"disp_scale": 6.0, "density": "log1p"}, dict(COSMO, Omega_m=0.35, Omega_L=0.65), 2.0)
    bad = {"disp_scale": other.disp_scale, "scaling": other.to_dict(), "redshift": 2.0}
    with pytest.raises(SrsimError, match=rf"growth D\(z\) {other.growth:.6g} vs {scaling.growth:.6g}"):
        generate((fresh, bad), lr_file, tmp_path / "bad", GenerateSettings(seed=3, chunk=N, progress=False))


# ----------------------------------------------------------------------------------- memory


_MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys
    import torch
    sys.path.insert(0, {tests!r})
    from test_generate import narrow_generator, lr_field, BOX, COSMO
    from srsim.io.displacement import write_displacement
    from srsim.generate import GenerateSettings, generate
    n, out = int(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(1)
    write_displacement(out + "/lr.h5", lr_field(n), box_size=BOX * n / 6, redshift=2.0, cosmology=COSMO,
                       source="test")
    res = generate((narrow_generator(), {{}}), out + "/lr.h5", out + "/sr",
                   GenerateSettings(chunk=4, progress=False), disp_out=out + "/sr.h5")
    assert res.complete
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def test_peak_memory_bounded_by_chunks_not_box(tmp_path):
    """SR of a box 8x larger by volume (2M instead of 262k particles) raises peak RSS by < 20%.

    Both the snapshot and the SR displacement file are streamed; each run is a fresh interpreter.
    """
    script = tmp_path / "mem.py"
    script.write_text(_MEMORY_SCRIPT.format(tests=str(Path(__file__).parent)))
    peaks = {}
    for n in (8, 16):
        d = tmp_path / f"n{n}"
        d.mkdir()
        proc = subprocess.run([sys.executable, str(script), str(n), str(d)], capture_output=True, text=True,
                              timeout=1800, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr
        peaks[n] = int(proc.stdout.split()[-1])  # KiB
        assert read_header(d / "sr").n_particles == (8 * n) ** 3
    # holding the 16^3 -> 128^3 box (positions, IDs, displacements: 92 MB) would break this bound
    assert peaks[16] < 1.2 * peaks[8], peaks


# ----------------------------------------------------------------------------------- trivial predictor


def test_trivial_snapshot_is_upsampled_lr_whatever_the_chunking(lr_file, tmp_path, capsys):
    """`generate --trivial`: SR displacement = lr_to_hr of the periodically padded LR field, in any chunking."""
    from srsim.cli import main
    from srsim.generate import trivial_generator
    from srsim.model.generator import generator_geometry
    from srsim.model.layers import lr_to_hr

    cfg = json.dumps({"model": {"gen_widths": [6, 4, 4, 4]}})
    for name, chunk in (("whole", N), ("chunked", 4)):
        code = main(["generate", "--trivial", "--lr", str(lr_file), "--out", str(tmp_path / name),
                     "--chunk", str(chunk), "--config", cfg, "--quiet"])
        assert code == 0
    pad = generator_geometry(3)[1]
    disp = read_displacement(lr_file)[0]
    padded = np.pad(disp, [(0, 0)] + [(pad, pad)] * 3, mode="wrap")
    want = lr_to_hr(torch.from_numpy(padded)[None], 8, pad)[0].numpy()  # (3, 8N, 8N, 8N) Mpc/h
    q = lagrangian_positions(8 * N, BOX)  # grid positions in ID order
    want_pos = np.mod((q + want).reshape(3, -1).T, BOX)
    ref_ids, ref_pos = sorted_positions(tmp_path / "whole")
    assert np.array_equal(ref_ids, np.arange(1, (8 * N) ** 3 + 1))
    assert periodic_max_diff(ref_pos, want_pos, BOX) < 1e-4
    ids, pos = sorted_positions(tmp_path / "chunked")
    assert np.array_equal(ids, ref_ids) and periodic_max_diff(pos, ref_pos, BOX) < 1e-9
    attrs = read_header(tmp_path / "whole").attrs
    assert str(attrs["SRModel"]) == "TrivialPredictor" and "trivial" in str(attrs["SRPredictor"])
    assert trivial_generator({"gen_widths": [6, 4]}).scale == 2
    assert main(["generate", "--lr", str(lr_file), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "--model CHECKPOINT or --trivial" in capsys.readouterr().err
    assert main(["generate", "--trivial", "--lr", str(lr_file), "--out", str(tmp_path / "x"), "--config", "{}"]) == 2
    assert "gen_widths" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --trivial and --model are mutually exclusive
        main(["generate", "--trivial", "--model", "m.pt", "--lr", str(lr_file), "--out", str(tmp_path / "x")])
