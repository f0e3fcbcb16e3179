"""The nbodykit analysis engine against srsim's own: P(k) and FOF on real MP-Gadget output, on a snapshot of
srsim's writer and on an SR snapshot of srsim's generator, 1 MPI rank against 2, and its failure modes.

nbodykit lives in its own venv (scripts/nbodykit-install.sh, which `make test` runs where ../shared/nbodykit
is present); $SRSIM_NBODYKIT_PYTHON names its python, and the checkout's src/ goes first on its PYTHONPATH.
Without it the comparisons skip; the start-up error of a missing nbodykit is tested in any case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from srsim.analysis.fof import fof_snapshot
from srsim.analysis.power import power_spectrum_snapshot
from srsim.io.catalog import read_catalog
from srsim.io.power import read_power
from srsim.io.snapshot import make_header, write_snapshot
from srsim.testing import clustered

REPO = Path(__file__).resolve().parents[1]
NBK_PYTHON = os.environ.get("SRSIM_NBODYKIT_PYTHON", "")
HAVE_NBK = bool(NBK_PYTHON) and Path(NBK_PYTHON).is_file()
needs_nbodykit = pytest.mark.skipif(not HAVE_NBK, reason="nbodykit not installed here: set SRSIM_NBODYKIT_PYTHON "
                                    "(scripts/nbodykit-install.sh; `make test` does it where ../shared/nbodykit is)")
WATCHDOG_S = 900  # a hung MPI run fails the test instead of stalling the suite; not a verdict on speed
CLI = "import sys; from srsim.cli import main; sys.exit(main(sys.argv[1:]))"


def nbk_srsim(*args, ranks: int = 1, check: bool = True) -> subprocess.CompletedProcess:
    """`srsim ARGS --engine nbodykit` in the nbodykit venv, under `mpiexec -n ranks` when ranks > 1."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    launch = [shutil.which("mpiexec") or "mpiexec", "-n", str(ranks)] if ranks > 1 else []
    out = subprocess.run([*launch, NBK_PYTHON, "-c", CLI, *map(str, args), "--engine", "nbodykit"], env=env,
                         capture_output=True, text=True, timeout=WATCHDOG_S)
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def srsim_snapshot(tmp_path_factory, demo_cosmology) -> Path:
    """A clustered 48^3-particle, 60 Mpc/h snapshot written by srsim's writer (f4 positions, as SR snapshots)."""
    pos, ids = clustered(48, 60.0, seed=3)
    path = tmp_path_factory.mktemp("snap") / "sr"
    attrs = make_header(box_size=60.0, redshift=0.0, n_particles=len(ids), cosmology=demo_cosmology)
    return write_snapshot(path, attrs, pos, ids, position_dtype="f4")


@pytest.fixture(scope="module")
def sr_snapshot(tmp_path_factory, mpgadget_dir) -> Path:
    """An SR snapshot as the pipeline writes it: `generate` (trivial predictor, 8x) of MP-Gadget's 16^3 z = 0
    box -> 128^3 particles, f4 positions, written chunk by chunk."""
    from srsim.generate import GenerateSettings, generate, trivial_generator

    out = tmp_path_factory.mktemp("sr") / "sr0"
    res = generate((trivial_generator({"gen_widths": [8, 8, 8, 8]}), {}), mpgadget_dir / "n16/output/PART_002", out,
                   GenerateSettings(chunk=8, position_dtype="f4", progress=False))
    assert res.complete
    return out


def snapshots(mpgadget_dir, srsim_snapshot, sr_snapshot=None) -> dict[str, Path]:
    return {"mpgadget_n32_z0": mpgadget_dir / "n32/output/PART_002",
            "mpgadget_n32_z4": mpgadget_dir / "n32/output/PART_000", "srsim_writer": srsim_snapshot,
            "srsim_sr": sr_snapshot}


def test_nbodykit_engine_without_nbodykit_fails_at_start_naming_the_extra(tmp_path, mpgadget_dir):
    """In an environment without nbodykit (this venv), the CLI and the workflow stop before any work."""
    import importlib.util

    if importlib.util.find_spec("nbodykit") is not None:
        pytest.skip("nbodykit is importable in this environment")
    for cmd in (["power", mpgadget_dir / "n32/output/PART_002", tmp_path / "p.txt"],
                ["fof", mpgadget_dir / "n32/output/PART_002", tmp_path / "f.h5"]):
        out = subprocess.run([sys.executable, "-c", CLI, *map(str, cmd), "--engine", "nbodykit"],
                             capture_output=True, text=True, timeout=WATCHDOG_S)
        assert out.returncode == 2 and 'pip install -e ".[nbodykit]"' in out.stderr, out.stderr
        assert not list(tmp_path.iterdir())
    # the workflow: at parse time, not in the first analysis job
    out = subprocess.run([sys.executable, "-m", "snakemake", "all", "-n", "--configfile", ".test/config/config.yaml",
                          "--config", f"results={tmp_path}", "analysis={'engine': 'nbodykit'}"], cwd=REPO,
                         capture_output=True, text=True, timeout=WATCHDOG_S)
    assert out.returncode != 0 and 'pip install -e ".[nbodykit]"' in out.stdout + out.stderr


@needs_nbodykit
@pytest.mark.parametrize("name", ["mpgadget_n32_z0", "mpgadget_n32_z4", "srsim_writer", "srsim_sr"])
def test_power_spectra_agree_below_the_mesh_nyquist(name, mpgadget_dir, srsim_snapshot, request, tmp_path):
    """Same shells, mode counts and mean k; P within 1e-3 in every bin below the mesh Nyquist (CIC, no
    compensation, no shot-noise subtraction in both)."""
    sr = request.getfixturevalue("sr_snapshot") if name == "srsim_sr" else None
    snap = snapshots(mpgadget_dir, srsim_snapshot, sr)[name]
    n_mesh = 64
    nbk_srsim("power", snap, tmp_path / "nbk.txt", "--mesh", n_mesh)
    theirs, meta = read_power(tmp_path / "nbk.txt")
    ours = power_spectrum_snapshot(snap, n_mesh, device="numpy", progress=False)
    assert meta["engine"] == "nbodykit" and meta["deconvolved"] is False
    below = ours.k < ours.meta["k_nyquist"]
    assert below.sum() > 20
    np.testing.assert_array_equal(theirs["n_modes"][: below.sum()], ours.n_modes[below])
    np.testing.assert_allclose(theirs["k"][: below.sum()], ours.k[below], rtol=1e-9)  # the table keeps 11 digits
    rel = np.abs(theirs["P"][: below.sum()] / ours.P[below] - 1)
    assert rel.max() < 1e-3, (name, rel.max(), int(rel.argmax()))
    # the whole table, corner shells included, is the same shape as ours: the pipeline cannot tell them apart
    assert len(theirs["k"]) == len(ours.k)


def _members(cat: dict) -> set[tuple[int, ...]]:
    off, ids = cat["members_offset"], cat["members_id"]
    return {tuple(ids[off[g]:off[g + 1]].tolist()) for g in range(len(cat["npart"]))}


@needs_nbodykit
@pytest.mark.parametrize("name", ["mpgadget_n32_z0", "srsim_writer", "srsim_sr"])
def test_fof_groups_have_identical_members(name, mpgadget_dir, srsim_snapshot, request, tmp_path):
    """b = 0.2, >= 32 particles: the same groups, member by member, with the same masses and centres."""
    sr = request.getfixturevalue("sr_snapshot") if name == "srsim_sr" else None
    snap = snapshots(mpgadget_dir, srsim_snapshot, sr)[name]
    nbk_srsim("fof", snap, tmp_path / "nbk.h5", "--members", "--min-members", 32, "--b", 0.2)
    theirs, attrs = read_catalog(tmp_path / "nbk.h5")
    ours, our_attrs = fof_snapshot(snap, b=0.2, min_members=32, members=True)
    assert attrs["engine"] == "nbodykit" and attrs["min_members"] == 32
    assert attrs["linking_length"] == pytest.approx(our_attrs["linking_length"], rel=1e-12)
    assert len(ours["npart"]) >= 5 and ours["npart"].min() >= 32
    assert _members(theirs) == _members(ours)
    # same order (size, then smallest ID), so the rows line up
    np.testing.assert_array_equal(theirs["npart"], ours["npart"])
    np.testing.assert_array_equal(theirs["min_id"], ours["min_id"])
    np.testing.assert_allclose(theirs["mass"], ours["mass"], rtol=1e-12)
    d = theirs["pos"] - ours["pos"]
    box = attrs["box_size"]
    d -= box * np.round(d / box)
    assert np.abs(d).max() < 1e-9 * box
    # velocities (MP-Gadget's snapshot has them, srsim's writer and SR snapshots not): the same columns or none
    assert attrs["has_velocity"] == our_attrs["has_velocity"] == ("vel" in ours) == (name == "mpgadget_n32_z0")
    assert ("vel" in theirs) == ("sigma_v" in theirs) == ("vel" in ours)
    if "vel" in ours:
        np.testing.assert_allclose(theirs["vel"], ours["vel"], rtol=1e-10, atol=1e-9)
        np.testing.assert_allclose(theirs["sigma_v"], ours["sigma_v"], rtol=1e-10)


@needs_nbodykit
def test_fof_keeps_groups_of_exactly_min_members(srsim_snapshot, tmp_path):
    """nbodykit's nmin keeps groups of more than nmin particles; the engine keeps >= min_members as srsim does
    (the cut is where a naive call would differ): with the smallest group's size as the cut, it is kept."""
    ours, _ = fof_snapshot(srsim_snapshot, b=0.2, min_members=20)
    smallest = int(ours["npart"].min())
    nbk_srsim("fof", srsim_snapshot, tmp_path / "cut.h5", "--min-members", smallest)
    theirs, _ = read_catalog(tmp_path / "cut.h5")
    assert theirs["npart"].min() == smallest
    ours_cut, _ = fof_snapshot(srsim_snapshot, b=0.2, min_members=smallest)
    np.testing.assert_array_equal(theirs["npart"], ours_cut["npart"])


@needs_nbodykit
def test_two_mpi_ranks_give_the_one_rank_result(mpgadget_dir, srsim_snapshot, tmp_path):
    for snap in (mpgadget_dir / "n32/output/PART_002", srsim_snapshot):
        for ranks in (1, 2):
            nbk_srsim("power", snap, tmp_path / f"p{ranks}.txt", "--mesh", 32, ranks=ranks)
            nbk_srsim("fof", snap, tmp_path / f"f{ranks}.h5", "--members", ranks=ranks)
        (p1, m1), (p2, m2) = read_power(tmp_path / "p1.txt"), read_power(tmp_path / "p2.txt")
        assert m2["mpi_ranks"] == 2 and m1["mpi_ranks"] == 1
        np.testing.assert_array_equal(p1["n_modes"], p2["n_modes"])
        np.testing.assert_allclose(p1["P"], p2["P"], rtol=1e-10)
        (c1, a1), (c2, a2) = read_catalog(tmp_path / "f1.h5"), read_catalog(tmp_path / "f2.h5")
        assert a2["mpi_ranks"] == 2
        assert _members(c1) == _members(c2)
        np.testing.assert_array_equal(c1["npart"], c2["npart"])
        np.testing.assert_array_equal(c1["min_id"], c2["min_id"])
        np.testing.assert_allclose(c1["pos"], c2["pos"], rtol=0, atol=1e-9 * a1["box_size"])
        if "vel" in c1:
            np.testing.assert_allclose(c1["vel"], c2["vel"], rtol=1e-10, atol=1e-9)
            np.testing.assert_allclose(c1["sigma_v"], c2["sigma_v"], rtol=1e-10)


@needs_nbodykit
def test_an_error_on_one_rank_stops_every_rank(mpgadget_dir, tmp_path):
    """Only rank 0 writes: an unwritable output fails there alone, and the run ends (MPI_Abort), naming it."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = nbk_srsim("power", mpgadget_dir / "n32/output/PART_002", blocker / "p.txt", "--mesh", 16, ranks=2,
                    check=False)
    assert out.returncode != 0
    # rank 0 names its error; rank 1 (which had finished its share) may only report being stopped by the abort
    (line,) = [ln for ln in out.stderr.splitlines() if "rank 0 of 2" in ln]
    assert "file" in line, out.stderr[-2000:]
    assert all("KeyboardInterrupt" in ln or "Terminated" in ln
               for ln in out.stderr.splitlines() if "rank 1 of 2" in ln), out.stderr[-2000:]
    # a missing snapshot fails on every rank at once, with srsim's message
    out = nbk_srsim("fof", tmp_path / "missing", tmp_path / "f.h5", ranks=2, check=False)
    assert out.returncode != 0 and "missing" in out.stderr and not (tmp_path / "f.h5").exists()


def test_workflow_runs_power_and_fof_as_mpi_jobs_with_the_nbodykit_engine(tmp_path):
    """analysis.engine nbodykit: P(k) and FOF jobs ask for analysis.nbodykit.ntasks MPI tasks and run under the
    launcher; the big box's FOF is one such job (no partition/domain/merge jobs)."""
    from dryrun import dry_run_jobs

    # an importable stand-in, so that the start-up check passes in this venv for a dry run
    (tmp_path / "fake" / "nbodykit").mkdir(parents=True)
    (tmp_path / "fake" / "nbodykit" / "__init__.py").write_text("")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "fake"), os.environ.get("PYTHONPATH", "")]))
    cfg = yaml.safe_load((REPO / ".test/config/config.yaml").read_text())
    cfg["results"] = str(tmp_path / "results")
    cfg["analysis"].update(engine="nbodykit", nbodykit={"ntasks": 3, "bigbox_ntasks": 5, "launcher": "srun -n {ntasks}",
                                                         "mem_mb_per_task": 1000})
    (tmp_path / "nbk.yaml").write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "snakemake", "all", "-n", "-p", "--configfile", tmp_path / "nbk.yaml"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=WATCHDOG_S)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    jobs = dry_run_jobs(out.stdout)
    assert not {j["rule"] for j in jobs} & {"fof_partition", "fof_partition_index", "fof_domain", "fof_merge"}
    ana = [j for j in jobs if j["rule"] in ("power", "fof")]
    assert ana and all(j["resources"].get("mpi") == "True" for j in ana)
    for j in ana:
        tasks = 5 if j["wildcards"]["sim"] == "bigbox" else 3
        assert (j["resources"]["tasks"], j["mem_mb"], j["threads"]) == (str(tasks), 1000 * tasks, 1), j
    assert "exec srun -n 3 srsim power" in out.stdout and "exec srun -n 5 srsim fof" in out.stdout
    big = [j for j in jobs if j["rule"] == "fof" and j["wildcards"].get("sim") == "bigbox"]
    assert len(big) == 2  # LR and SR of the big box, one MPI job each
