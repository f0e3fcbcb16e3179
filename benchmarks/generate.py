"""Benchmark of chunked SR generation (`srsim generate`): speed, memory, and the big-box wall time.

Measures, on the chosen device:
  1. generator throughput (SR voxels per second, kept voxels only) and peak GPU / CPU memory, for several
     chunk sizes, in fp32 and bf16 autocast;
  2. the writer alone (SnapshotWriter.write + the journal's read-back CRC), in particles per second;
  3. one end-to-end `generate` run of an LR box (generator + particles + background writer), fp32 and
     bf16, and the bf16/fp32 ratio of the output's matter power spectrum (CIC, srsim.analysis.power);
  4. the extrapolated wall time of the paper's 640^3 -> 5120^3 big box including writing:
     5120^3 / (end-to-end particles per second), and the generator-only and writer-only bounds.

Paper widths (512, 256, 128, 64) on CUDA; a narrow model on CPU (random weights: speed does not depend on
them). Prints a table and writes JSON.

With --profile, instead: one `generate` run timed stage by stage (LR read, host-to-device copy, generator,
displacement to stored positions + IDs, device-to-host copy, wait for a free host slot, bigfile write,
journal checksum: seconds, particles/s, share of the loop's wall time); the host side (positions + IDs +
writer) today against the float64 host path it replaced, both against numpy `tofile` of the same bytes on
the same disk; and the projected wall time of the paper's 640^3 -> 5120^3 box per stage (read, generate,
write, merge) for --jobs parallel jobs, every input a rate measured in this run on the machine named.

    python benchmarks/generate.py                       # auto device
    python benchmarks/generate.py --device cuda --chunks 8 16 24 32 --e2e-n-lr 64 --json gen.json
    python benchmarks/generate.py --profile             # stage profile, host side before/after, projection

`--from-run RESULTS` instead projects the paper's 640^3 -> 5120^3 big-box job from a finished big-box run
of the workflow (the demo's: `--from-run results/demo`), for each `--bigbox-jobs N`. Its inputs are measured:
from the run, per chunk job j of the big box (`generate/bigbox/sr0/z{z}/job{j}ofJ.done`, the job's log line
and Snakemake's benchmark table `benchmarks/generate/...tsv`), its wall time t_j, the time inside
`generate` g_j, its particles P_j and chunks, and its peak RSS M_j; the merged snapshot's bytes on disk D
and particle count P. Now, on `--device`, the generator alone (random weights, the run's chunk size) in SR
voxels per second: v_run for the run's model widths, v_paper for the paper's. With P* = 5120^3:

    tau_rest  = max(g_j / P_j - 1 / v_run, 0)             s per particle outside the generator (assembly,
                                                          journal, bigfile write, CRC read-back), run's mean
    T_job(N)  = (t_j - g_j) + (P* / N) (tau_rest + 1 / v_paper)   wall time of one of the N chunk jobs
    T_1dev(N) = N T_job(N)                                all N jobs one after another on one device
    D*        = P* (D / P + b_pos* - b_pos)                disk: per-particle bytes of the run, with the
                                                          paper's position type (b_pos = 3 x 4 for f4, 3 x 8 for f8)
    M_job     = M_j - S B c_run^3 + S B c*^3               host memory of a job: the run's peak minus its chunk
                                                          buffers plus the paper chunk's (S host slots of
                                                          B = HOST_BYTES_PER_PARTICLE bytes per SR particle,
                                                          c = SR particles per chunk side)

Neither the generator's overlap with the writer threads nor a GPU's data transfers are modelled: tau_rest
and 1 / v_paper add, an upper bound where they overlap. On a GPU machine v_paper is that GPU's.

    python benchmarks/generate.py --from-run results/demo --bigbox-jobs 1 8 64 --device cpu
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from srsim.device import cpu_model, resolve_device
from srsim.errors import SrsimError
from srsim.generate import (BIGFILE_LOCK, HOST_BYTES_PER_PARTICLE, STAGES, WRITERS, GenerateSettings, StageTimer,
                            chunk_particles, estimate_generator_bytes, finalize, generate, host_slots, load_model,
                            read_stored, stored_crc, super_resolve)
from srsim.io.atomic import crc32
from srsim.io.displacement import write_displacement
from srsim.io.snapshot import SnapshotWriter, make_header
from srsim.model.generator import Generator

PAPER_WIDTHS = (512, 256, 128, 64)
CPU_WIDTHS = (16, 8, 8, 4)
BIG_N_HR = 5120
COSMO = {"Omega_m": 0.2814, "Omega_b": 0.0464, "Omega_L": 0.7186, "h": 0.697, "sigma8": 0.82, "n_s": 0.971}


class RSSPeak:
    """Peak resident memory (bytes) of this process while the context is open, sampled every 5 ms."""

    def __enter__(self):
        self.peak = self._rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._rss())
        return False


def make_generator(widths, device) -> Generator:
    torch.manual_seed(0)
    gen = Generator(widths=widths)
    with torch.no_grad():
        for name, p in gen.named_parameters():
            if name.endswith("std"):
                p.fill_(0.1)  # noise on, as in a trained model
            elif ".proj." in name:
                p.normal_(0.0, 0.1)  # output projections start at 0; give them a trained model's work
    return gen.to(device).eval()


def smooth_field(n: int, box: float, seed: int = 0) -> np.ndarray:
    """(3, n, n, n) float32 smooth periodic displacement, Mpc/h, rms half an LR cell of a `box` Mpc/h box."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(n) * n
    k2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2
    f = np.fft.ifftn(np.fft.fftn(rng.standard_normal((3, n, n, n)), axes=(1, 2, 3)) / (1 + k2), axes=(1, 2, 3)).real
    return (f / f.std() * 0.5 * box / n).astype(np.float32)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_generator(gen, size: int, batch: int, bf16: bool, device, repeats: int, n_box: int) -> dict:
    pad, s = gen.pad, gen.scale
    windows = np.stack([smooth_field(size + 2 * pad, 1.0, seed=b) for b in range(batch)])
    offsets = np.zeros((batch, 3), np.int64)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with RSSPeak() as rss:
            super_resolve(gen, windows, offsets, 0, n_box, 1.0, device, bf16)  # warm-up (cudnn autotune)
            sync(device)
            t0 = time.perf_counter()
            for r in range(repeats):
                y = super_resolve(gen, windows, offsets, r, n_box, 1.0, device, bf16)
            sync(device)
            dt = (time.perf_counter() - t0) / repeats
        del y
    except torch.OutOfMemoryError:
        return {"size": size, "batch": batch, "bf16": bf16, "oom": True}
    voxels = batch * (s * size) ** 3
    out = {"size": size, "batch": batch, "bf16": bf16, "seconds_per_call": dt, "sr_voxels_per_s": voxels / dt,
           "peak_cpu_rss_gb": rss.peak / 1e9,
           "estimated_activation_gb": estimate_generator_bytes(gen.widths, size, pad, batch) / 1e9}
    if device.type == "cuda":
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    return out


def bench_writer(n_part: int, position_dtype: str, tmp: Path) -> dict:
    box = 1000.0
    attrs = make_header(box_size=box, redshift=0.0, n_particles=n_part, cosmology=COSMO)
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, box, (n_part, 3))
    ids = np.arange(1, n_part + 1, dtype=np.uint64)
    path = tmp / "writer_bench"
    w = SnapshotWriter(path, attrs, 2 * n_part, position_dtype=position_dtype)
    import bigfile

    reader = bigfile.File(str(w.tmp))
    t0 = time.perf_counter()
    w.write(0, pos, ids)
    t1 = time.perf_counter()
    stored_crc(reader, 0, n_part)
    t2 = time.perf_counter()
    w.abort()
    return {"particles": n_part, "position_dtype": position_dtype, "write_s": t1 - t0, "crc_readback_s": t2 - t1,
            "particles_per_s": n_part / (t2 - t0), "bytes_per_particle": (12 if position_dtype == "f4" else 24) + 8}


def bench_end_to_end(gen, n_lr: int, chunk: int, batch: int, device, position_dtype: str, tmp: Path,
                     power_mesh: int) -> dict:
    from srsim.analysis.power import power_spectrum_snapshot

    box = 100.0 * n_lr / 64  # the paper's LR cell of 1.5625 Mpc/h
    lr = tmp / f"lr{n_lr}.h5"
    write_displacement(lr, smooth_field(n_lr, box), box_size=box, redshift=0.0, cosmology=COSMO, source="bench")
    out = {"n_lr": n_lr, "n_hr": gen.scale * n_lr, "chunk": chunk, "batch": batch, "position_dtype": position_dtype}
    spectra = {}
    for bf16 in (False, True):
        snap = tmp / f"sr{n_lr}_{int(bf16)}"
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with RSSPeak() as rss:
            t0 = time.perf_counter()
            res = generate((gen, {}), lr, snap,
                           GenerateSettings(seed=0, chunk=chunk, batch=batch, device=str(device), bf16=bf16,
                                            position_dtype=position_dtype, progress=False))
            dt = time.perf_counter() - t0
        key = "bf16" if bf16 else "fp32"
        out[key] = {"seconds": dt, "particles_per_s": res.particles / dt, "n_chunks": res.n_chunks,
                    "peak_cpu_rss_gb": rss.peak / 1e9}
        if device.type == "cuda":
            out[key]["peak_gpu_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
        mesh = min(power_mesh, gen.scale * n_lr)
        spectra[key] = power_spectrum_snapshot(snap, mesh, device="numpy", progress=False)
    k, p32, p16 = spectra["fp32"].k, spectra["fp32"].P, spectra["bf16"].P
    keep = (k > 0) & (k <= 0.5 * spectra["fp32"].meta["k_nyquist"]) & (spectra["fp32"].n_modes > 0)
    ratio = p16[keep] / p32[keep]
    out["bf16_over_fp32_power_max_dev"] = float(np.max(np.abs(ratio - 1)))
    out["power_k_max"] = float(k[keep].max())
    return out


# ------------------------------------------------------------------------------------------- --profile


def legacy_chunk_particles(disp, hr_origin, n_hr: int, box_size: float):
    """The host path `generate` used before positions were computed in their stored form (the baseline):
    (N, 3) float64 Mpc/h wrapped with a whole-array remainder, IDs (N,) int64; SnapshotWriter.write then
    converts to kpc/h and the stored dtype in another float64 pass."""
    idx = [torch.remainder(torch.arange(s, dtype=torch.int64) + int(o), n_hr) for o, s in zip(hr_origin, disp.shape[1:])]
    A, B, C = disp.shape[1:]
    cell = box_size / n_hr
    pos = torch.empty((A, B, C, 3), dtype=torch.float64)
    q = [i.double() * cell for i in idx]
    pos[..., 0] = disp[0].double() + q[0][:, None, None]
    pos[..., 1] = disp[1].double() + q[1][None, :, None]
    pos[..., 2] = disp[2].double() + q[2][None, None, :]
    pos = torch.remainder(pos, box_size)
    pos = torch.where(pos >= box_size, pos - box_size, pos)
    ids = (idx[0][:, None, None] * (n_hr * n_hr) + idx[1][None, :, None] * n_hr + idx[2][None, None, :] + 1)
    return pos.reshape(-1, 3), ids.reshape(-1)


def _best(fn, repeats: int) -> float:
    """Fastest of `repeats` calls (seconds): the machine is shared, the minimum is the least disturbed."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_host_side(shape, tmp: Path, repeats: int, threads: int = 2, pipeline: int = 6) -> dict:
    """Host side of one chunk of SR particles on the CPU, before and after, and the disk it writes to.

    before: legacy_chunk_particles + copy into a float64 host slot + SnapshotWriter.write (f4) + the chunk
    read back and checksummed with zlib; after: chunk_particles (f4 kpc/h) + copy into the stored-dtype slot +
    write_stored + CRC32 of the buffer (srsim.io.atomic.crc32, ISA-L when installed);
    writer_*: the writer part alone; bigfile_write: the same bytes through bigfile's own write (an
    element-wise cast and a byte sum into a 64 MB buffer, then fwrite), what write_stored replaced;
    writer_threads: `threads` writer threads as in ChunkStore writing `pipeline` chunks; disk: numpy tofile of the same bytes (positions f4 + IDs u8), no fsync (bigfile does not fsync
    either), and with fsync.
    """
    box, n_hr = 1000.0, 5120
    n = int(np.prod(shape))
    rng = np.random.default_rng(0)
    disp = torch.from_numpy(rng.normal(0, 0.3, (3, *shape)).astype(np.float32))
    origin = (n_hr - shape[0] // 2, 100, 200)  # wraps on x, as chunks at the box edge do
    attrs = make_header(box_size=box, redshift=0.0, n_particles=n, cosmology=COSMO)
    w = SnapshotWriter(tmp / "host_bench", attrs, n, position_dtype="f4")
    import bigfile

    reader = bigfile.File(str(w.tmp))
    slot64, slot32, slot_ids = (torch.empty((n, 3), dtype=torch.float64), torch.empty((n, 3), dtype=torch.float32),
                                torch.empty(n, dtype=torch.int64))

    def before_particles():
        pos, ids = legacy_chunk_particles(disp, origin, n_hr, box)
        slot64.copy_(pos)
        slot_ids.copy_(ids)

    def before_writer():  # as it was: bigfile's write, the chunk read back, zlib's CRC32 of it
        w.write(0, slot64.numpy(), slot_ids.numpy().view(np.uint64))
        with BIGFILE_LOCK:
            raw = read_stored(reader, 0, n)
        {k: zlib.crc32(np.ascontiguousarray(v).view(np.uint8).reshape(-1)) for k, v in raw.items()}

    def after_particles():
        pos, ids = chunk_particles(disp, origin, n_hr, box, "f4")
        slot32.copy_(pos)
        slot_ids.copy_(ids)

    def after_writer():
        p, i = slot32.numpy(), slot_ids.numpy().view(np.uint64)
        w.write_stored(0, p, i)
        crc32(p), crc32(i)

    def disk(fsync: bool):
        p, i = slot32.numpy(), slot_ids.numpy()
        with open(tmp / "tofile.bin", "wb") as f:
            p.tofile(f)
            i.tofile(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())

    def bigfile_write():
        w._file["1/Position"].write(0, slot32.numpy())
        w._file["1/ID"].write(0, slot_ids.numpy().view(np.uint64))

    t = {"before_particles": _best(before_particles, repeats), "before_writer": _best(before_writer, repeats),
         "after_particles": _best(after_particles, repeats), "after_writer": _best(after_writer, repeats),
         "bigfile_write": _best(bigfile_write, repeats),
         "disk_tofile": _best(lambda: disk(False), repeats), "disk_tofile_fsync": _best(lambda: disk(True), repeats)}
    w.abort()
    t["writer_threads"] = _best(lambda: writer_threads(slot32.numpy(), slot_ids.numpy().view(np.uint64), tmp,
                                                       threads, pipeline), repeats) / pipeline
    (tmp / "tofile.bin").unlink()
    out = {"particles": n, "shape": list(shape), "bytes_per_particle": 20, "torch_threads": torch.get_num_threads(),
           "seconds": t, "particles_per_s": {k: n / v for k, v in t.items()}}
    r = out["particles_per_s"]
    r["before_host_side"] = n / (t["before_particles"] + t["before_writer"])
    r["after_host_side"] = n / (t["after_particles"] + t["after_writer"])
    out["disk_gb_per_s"] = {k: 20 * n / t[k] / 1e9 for k in ("disk_tofile", "disk_tofile_fsync")}
    out["writer_speedup"] = r["after_writer"] / r["before_writer"]
    out["host_side_speedup"] = r["after_host_side"] / r["before_host_side"]
    out["writer_threads_speedup"] = r["writer_threads"] / r["before_writer"]
    out["writer_over_disk"] = r["after_writer"] / r["disk_tofile"]
    out["writer_threads_over_disk"] = r["writer_threads"] / r["disk_tofile"]
    out["threads"], out["pipeline_chunks"] = threads, pipeline
    return out


def writer_threads(pos: np.ndarray, ids: np.ndarray, tmp: Path, threads: int, chunks: int) -> None:
    """`chunks` copies of one chunk written at successive slots by `threads` threads, as ChunkStore's writers
    do: write_stored (raw block writes) and the journal checksums, all of which release the GIL."""
    import queue
    import threading

    n = len(ids)
    attrs = make_header(box_size=1000.0, redshift=0.0, n_particles=n * chunks, cosmology=COSMO)
    w = SnapshotWriter(tmp / "threads_bench", attrs, n * chunks, position_dtype=str(pos.dtype.str[1:]))
    q: queue.Queue = queue.Queue()
    for i in range(chunks):
        q.put(i)

    def run():
        while True:
            try:
                i = q.get_nowait()
            except queue.Empty:
                return
            w.write_stored(i * n, pos, ids)
            crc32(pos), crc32(ids)

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    w.abort()


def profile_generate(gen, n_lr: int, chunk: int, device, tmp: Path, writers: int) -> dict:
    """One `generate` run (f4, as the paper config) with a StageTimer; also times `finalize` of a 2-job run."""
    box = 100.0 * n_lr / 64
    lr = tmp / f"lr{n_lr}.h5"
    write_displacement(lr, smooth_field(n_lr, box), box_size=box, redshift=0.0, cosmology=COSMO, source="bench")
    timer = StageTimer(device)
    settings = dict(seed=0, chunk=chunk, device=str(device), position_dtype="f4", writers=writers, progress=False)
    res = generate((gen, {}), lr, tmp / "profiled", GenerateSettings(**settings), timer=timer)
    wall = timer.loop_seconds
    # merge: the rename after N jobs, and the optional full read-back (--verify) that re-checksums everything
    for job in range(2):
        generate((gen, {}), lr, tmp / "merged", GenerateSettings(**settings, job=job, jobs=2))
    t0 = time.perf_counter()
    finalize(tmp / "merged", 2, verify=True, progress=False)
    verify_s = time.perf_counter() - t0
    return {"n_lr": n_lr, "n_hr": gen.scale * n_lr, "chunk": chunk, "n_chunks": res.n_chunks, "writers": writers,
            "particles": res.particles, "loop_seconds": wall, "particles_per_s": res.particles / wall,
            "stages": timer.report(wall), "merge_verify_particles_per_s": res.particles / verify_s}


def project_bigbox(prof: dict, host: dict, jobs: int, gpu_rate: float | None) -> dict:
    """Projected wall time (hours) per stage of the paper's 640^3 -> 5120^3 box over `jobs` parallel jobs.

    Every rate is one measured in this run. LR read: profile's lr_read (SR particles/s of windows read);
    generate: the profile's generator rate (or --gpu-voxels-per-s, a rate measured on a GPU); write: the
    writer rate per job (the better of one and the run's writer threads), capped by the disk bandwidth
    measured with tofile (the jobs share one disk);
    merge: the read-back checksum rate of `finalize --verify` (the plain merge is a rename).
    """
    n = BIG_N_HR**3
    st = prof["stages"]
    read = st["lr_read"]["particles_per_s"]
    gen_rate = gpu_rate or st["generator"]["particles_per_s"]
    r = host["particles_per_s"]
    write = min(jobs * max(r["after_writer"], r["writer_threads"]), r["disk_tofile"])
    rows = {"read": n / (jobs * read), "generate": n / (jobs * gen_rate), "write": n / write,
            "merge_verify": n / prof["merge_verify_particles_per_s"]}
    # read, generate and write of one job overlap (writer threads); a job's wall is its slowest stage
    rows["jobs_wall_overlapped"] = max(rows["read"] + rows["generate"], rows["write"])
    return {"jobs": jobs, "hours": {k: v / 3600 for k, v in rows.items()},
            "generator_rate_source": "--gpu-voxels-per-s" if gpu_rate else "this run's profile (CPU, narrow widths)",
            "rates": {"lr_read": read, "generator": gen_rate, "write_all_jobs": write,
                      "merge_verify": prof["merge_verify_particles_per_s"]}}


# `srsim generate`'s summary line (srsim/cli/generate.py): the time inside generate() and the chunk counts
_DONE_LINE = re.compile(r"srsim generate: (?P<out>\S+): complete; (?P<gen>\d+) chunks generated, (?P<reused>\d+) "
                        r"reused of (?P<n>\d+); (?P<particles>\d+) SR particles in the output; (?P<s>[\d.]+) s")


def read_bigbox_run(results: Path, z: str | None) -> dict:
    """The measured big-box chunk jobs of a finished workflow run under `results` (e.g. results/demo).

    Returns {"z", "jobs": [{"job", "wall_s", "cpu_s", "generate_s", "chunks", "particles", "max_rss_mb"}], "n_chunks",
    "n_particles", "chunk", "scale", "pad", "n_lr", "disk_bytes", "position_bytes", "model"}; raises SrsimError
    naming the missing file.
    """
    base = results / "generate" / "bigbox" / "sr0"
    zs = sorted(p.name[1:] for p in base.glob("z*")) if base.is_dir() else []
    if not zs:
        raise SrsimError(f"{base}: no big-box chunk jobs (run the workflow with a big box and generate.bigbox_jobs > 1)")
    if z is None:
        z = zs[0]
    elif z not in zs:
        raise SrsimError(f"{base}/z{z}: no such big-box redshift (found {', '.join(zs)})")
    dones = sorted((base / f"z{z}").glob("job*of*.done"))
    if not dones:
        raise SrsimError(f"{base}/z{z}: no finished chunk job (job*of*.done)")
    jobs = []
    for done in dones:
        info = json.loads(done.read_text())
        name = f"bigbox_sr0_z{z}_job{info['job']}of{info['jobs']}"
        log, bench = results / "logs" / "generate" / f"{name}.log", results / "benchmarks" / "generate" / f"{name}.tsv"
        for path in (log, bench):
            if not path.is_file():
                raise SrsimError(f"{path}: missing (the run's generate_bigbox job {info['job']} needs it)")
        lines = [m for m in map(_DONE_LINE.search, log.read_text().splitlines()) if m]
        if not lines:
            raise SrsimError(f"{log}: no 'srsim generate: ... complete' line")
        m = lines[-1]
        if int(m["reused"]):
            raise SrsimError(f"{log}: the job resumed {m['reused']} chunks: its time is not one whole job's")
        with bench.open() as f:
            row = list(csv.DictReader(f, delimiter="\t"))[-1]
        # the log counts this job's chunks; the plan holds the whole box's
        plan = info["plan"]
        n_chunks, n_particles = int(plan["n_chunks"]), int(plan["n_particles"])
        jobs.append({"job": info["job"], "wall_s": float(row["s"]), "cpu_s": float(row["cpu_time"]),
                     "generate_s": float(m["s"]), "chunks": int(m["gen"]),
                     "particles": n_particles * int(m["gen"]) // n_chunks, "max_rss_mb": float(row["max_rss"])})
    snap = Path(info["out"]) if Path(info["out"]).is_absolute() else results.parent.parent / info["out"]
    if not snap.is_dir():
        snap = results / "snapshots" / "bigbox" / "sr0" / f"z{z}"
    if not (snap / "1" / "Position").is_dir():
        raise SrsimError(f"{snap}: no merged big-box SR snapshot (1/Position)")
    import bigfile

    with bigfile.File(str(snap)) as f:
        position_bytes = f["1/Position"].dtype.itemsize  # ('<f8', (3,)): all three components
    disk = sum(p.stat().st_size for p in snap.rglob("*") if p.is_file())
    model = results / "models" / f"z{z}" / "model.pt"
    return {"z": z, "jobs": jobs, "n_chunks": n_chunks, "n_particles": n_particles, "chunk": plan["size"],
            "scale": plan["scale"], "pad": plan["pad"], "n_lr": plan["n_lr"], "disk_bytes": disk,
            "position_bytes": position_bytes, "snapshot": str(snap), "model": str(model)}


def project_paper_job(run: dict, v_run: float, v_paper: float, paper_chunk: int, paper_position_bytes: int,
                      n_jobs: int, writers: int = WRITERS, batch: int = 1) -> dict:
    """The paper job's projection (formulas in the module docstring) for `n_jobs` chunk jobs.

    run: read_bigbox_run's dict; v_run, v_paper: generator-only SR voxels per second of the run's and the
    paper's model; paper_chunk: LR cells per chunk side of the paper job. Times in s, sizes in bytes.
    """
    jobs = run["jobs"]
    mean = lambda key: float(np.mean([j[key] for j in jobs]))  # noqa: E731
    tau = float(np.mean([j["generate_s"] / j["particles"] for j in jobs]))
    tau_rest = max(tau - 1.0 / v_run, 0.0)
    start = mean("wall_s") - mean("generate_s")
    p_big = BIG_N_HR**3
    t_job = start + p_big / n_jobs * (tau_rest + 1.0 / v_paper)
    slots = host_slots(writers, batch)
    buffers_run = slots * HOST_BYTES_PER_PARTICLE * (run["scale"] * run["chunk"]) ** 3
    buffers_paper = slots * HOST_BYTES_PER_PARTICLE * (run["scale"] * paper_chunk) ** 3
    base = max(max(j["max_rss_mb"] for j in jobs) * 2**20 - buffers_run, 0.0)
    per_particle = run["disk_bytes"] / run["n_particles"]
    return {"bigbox_jobs": n_jobs, "tau_s_per_particle": tau, "tau_rest_s_per_particle": tau_rest,
            "job_start_s": start, "job_wall_h": t_job / 3600, "one_device_wall_h": n_jobs * t_job / 3600,
            "particles_per_job": p_big // n_jobs,
            "disk_bytes": p_big * (per_particle - run["position_bytes"] + paper_position_bytes),
            "disk_bytes_per_particle_run": per_particle, "host_mem_bytes_per_job": base + buffers_paper,
            "host_base_bytes": base}


def from_run_main(args) -> int:
    """--from-run: measure the generator on this device and project the paper's big-box job."""
    run = read_bigbox_run(Path(args.from_run), args.z)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    run_widths = tuple(load_model(run["model"], torch.device("cpu")).gen.widths)
    paper_chunk = args.paper_chunk or run["chunk"]
    n_part = run["n_particles"]
    print(f"# measured big-box run {args.from_run}, z = {run['z']}: {run['n_lr']}^3 -> {run['scale'] * run['n_lr']}^3"
          f" ({n_part} SR particles), {run['n_chunks']} chunks of {run['chunk']}^3 LR cells in {len(run['jobs'])}"
          f" jobs; model widths {run_widths}")
    print(f"{'job':>4} {'chunks':>6} {'particles':>10} {'wall s':>8} {'CPU s':>8} {'generate s':>10} {'part/s':>10} "
          f"{'RSS MB':>8}")
    for j in run["jobs"]:
        print(f"{j['job']:>4} {j['chunks']:>6} {j['particles']:>10} {j['wall_s']:>8.1f} {j['cpu_s']:>8.1f} "
              f"{j['generate_s']:>10.1f} {j['particles'] / j['generate_s']:>10.3e} {j['max_rss_mb']:>8.0f}")
    busy = np.mean([j["cpu_s"] / j["wall_s"] for j in run["jobs"]])
    print(f"cores busy per job (CPU s / wall s): {busy:.2f}; the projection uses the wall times as measured")
    print(f"snapshot on disk: {run['disk_bytes'] / 1e9:.3f} GB = {run['disk_bytes'] / n_part:.2f} bytes per particle "
          f"(positions {run['position_bytes']} B)")
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    rates = {}
    for label, widths, size in (("run", run_widths, run["chunk"]), ("paper", PAPER_WIDTHS, paper_chunk)):
        gen = make_generator(widths, device)
        r = bench_generator(gen, size, 1, False, device, args.repeats, run["n_lr"])
        if r.get("oom"):
            raise SrsimError(f"generator {widths} at chunk {size}: out of memory on {name}")
        rates[label] = r
        print(f"generator alone on {name}, widths {widths}, chunk {size}: {r['sr_voxels_per_s']:.3e} SR voxels/s"
              + (f", peak GPU {r['peak_gpu_gb']:.2f} GB" if cuda else
                 f" (activations ~{r['estimated_activation_gb']:.2f} GB, estimated)"))
    paper_pos = 12 if args.position_dtype == "f4" else 24
    print("projection of the paper's 640^3 -> 5120^3 job: T_job = (t_j - g_j) + (5120^3 / N) (tau_rest + 1 / v_paper),"
          " tau_rest = max(g_j / P_j - 1 / v_run, 0); disk = 5120^3 (D / P - b_pos + b_pos*); host memory = peak RSS"
          f" - buffers(chunk {run['chunk']}) + buffers(chunk {paper_chunk}); positions {args.position_dtype}")
    print(f"{'N jobs':>6} {'part/job':>10} {'job h':>8} {'1-device h':>10} {'disk TB':>8} {'host GB/job':>11}")
    projections = []
    for n in args.bigbox_jobs:
        p = project_paper_job(run, rates["run"]["sr_voxels_per_s"], rates["paper"]["sr_voxels_per_s"], paper_chunk,
                              paper_pos, n)
        projections.append(p)
        print(f"{n:>6} {p['particles_per_job']:>10.3e} {p['job_wall_h']:>8.2f} {p['one_device_wall_h']:>10.2f} "
              f"{p['disk_bytes'] / 1e12:>8.2f} {p['host_mem_bytes_per_job'] / 1e9:>11.2f}")
    t = projections[0]
    print(f"inputs: tau = {t['tau_s_per_particle']:.3e} s/particle, tau_rest = {t['tau_rest_s_per_particle']:.3e}, "
          f"job start-up {t['job_start_s']:.1f} s, host base {t['host_base_bytes'] / 1e9:.2f} GB; paper: ~16 h on 1 GPU")
    result = {"mode": "from_run", "run": run, "device": name, "run_widths": list(run_widths),
              "paper_widths": list(PAPER_WIDTHS), "paper_chunk": paper_chunk,
              "paper_position_dtype": args.position_dtype, "generator": rates, "projections": projections,
              "formula": "T_job = (t_j - g_j) + (5120^3/N)(max(g_j/P_j - 1/v_run, 0) + 1/v_paper); T_1dev = N T_job; "
                         "disk = 5120^3 (D/P - b_pos + b_pos*); M_job = M_j - S B c_run^3 + S B c*^3"}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


def main_profile(args, device, gen, name: str) -> int:
    n_lr = args.e2e_n_lr or (64 if device.type == "cuda" else 12)
    chunk = args.e2e_chunk or (16 if device.type == "cuda" else 6)
    shape = tuple(args.host_shape)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmpdir:
        tmp = Path(tmpdir)
        host = bench_host_side(shape, tmp, args.repeats, args.writers)
        prof = profile_generate(gen, n_lr, chunk, device, tmp, args.writers)
    print(f"\nstage profile: generate {n_lr}^3 -> {prof['n_hr']}^3, chunk {chunk} ({prof['n_chunks']} chunks), "
          f"{prof['writers']} writer threads, f4; loop {prof['loop_seconds']:.2f} s, "
          f"{prof['particles_per_s']:.3e} particles/s")
    print(f"{'stage':>11} {'s':>8} {'s/chunk':>9} {'particles/s':>12} {'share':>6}")
    for s in STAGES:
        r = prof["stages"][s]
        rate = f"{r['particles_per_s']:.3e}" if r["particles_per_s"] else "-"
        print(f"{s:>11} {r['seconds']:>8.3f} {r['seconds'] / prof['n_chunks']:>9.4f} {rate:>12} "
              f"{r['share_of_wall']:>6.1%}")
    print("(write and checksum run in the writer threads, beside the other stages)")
    r = host["particles_per_s"]
    print(f"\nhost side of a {'x'.join(map(str, shape))} chunk ({host['particles']} particles, f4 positions + u8 IDs, "
          f"{host['torch_threads']} torch threads), best of {args.repeats}:")
    print(f"{'':>24} {'before':>11} {'after':>11} {'after/before':>12}")
    for what, b, a in (("positions + IDs", "before_particles", "after_particles"),
                       ("writer (write + CRC)", "before_writer", "after_writer"),
                       (f"writer, {host['threads']} threads", "before_writer", "writer_threads"),
                       ("host side total", "before_host_side", "after_host_side")):
        print(f"{what:>24} {r[b]:>11.3e} {r[a]:>11.3e} {r[a] / r[b]:>12.2f}")
    print(f"{'bigfile own write':>24} {'':>11} {r['bigfile_write']:>11.3e}  (what write_stored replaced)")
    print(f"{'disk: numpy tofile':>24} {r['disk_tofile']:>11.3e} particles/s = {host['disk_gb_per_s']['disk_tofile']:.2f} "
          f"GB/s ({host['disk_gb_per_s']['disk_tofile_fsync']:.2f} GB/s with fsync)")
    best = max(r["after_writer"], r["writer_threads"])
    goals = [g for g, ok in (("5x the old writer", best >= 5 * r["before_writer"]),
                             ("within 2x of tofile", best >= 0.5 * r["disk_tofile"])) if ok]
    host["goals_met"] = goals
    host["limit"] = ("the disk (within 2x of tofile)" if best >= 0.5 * r["disk_tofile"]
                     else "the checksums (byte sum + CRC32) and pwrite on this CPU")
    print(f"writer after/before {host['writer_speedup']:.2f}x ({host['writer_threads_speedup']:.2f}x with "
          f"{host['threads']} threads); writer/tofile {best / r['disk_tofile']:.2f}; goals met: "
          f"{', '.join(goals) or 'none'}; limit: {host['limit']} (bigfile's own write / tofile = "
          f"{r['bigfile_write'] / r['disk_tofile']:.2f})")
    proj = project_bigbox(prof, host, args.jobs, args.gpu_voxels_per_s)
    print(f"\nprojected 640^3 -> 5120^3 on {name}, {args.jobs} jobs (generator: {proj['generator_rate_source']}):")
    print(f"{'stage':>22} {'hours':>10} {'rate (particles/s)':>19}")
    for k, rk in (("read", "lr_read"), ("generate", "generator"), ("write", "write_all_jobs"),
                  ("merge_verify", "merge_verify")):
        print(f"{k:>22} {proj['hours'][k]:>10.2f} {proj['rates'][rk]:>19.3e}")
    print(f"{'jobs wall (overlapped)':>22} {proj['hours']['jobs_wall_overlapped']:>10.2f}")
    result = {"device": name, "widths": list(gen.widths), "scale": gen.scale, "pad": gen.pad, "host_side": host,
              "profile": prof, "bigbox_projection": proj,
              "maxrss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--widths", type=int, nargs="+", help="generator widths (default: paper on CUDA, narrow on CPU)")
    ap.add_argument("--chunks", type=int, nargs="+", help="chunk sizes in LR cells")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--e2e-n-lr", type=int, help="LR cells per side of the end-to-end box")
    ap.add_argument("--e2e-chunk", type=int, help="chunk of the end-to-end run (default: fastest measured)")
    ap.add_argument("--position-dtype", default="f4", choices=("f4", "f8"), help="as the paper config (f4)")
    ap.add_argument("--writer-particles", type=int, default=2**22)
    ap.add_argument("--power-mesh", type=int, default=256)
    ap.add_argument("--tmp", help="scratch directory (default: system temp)")
    ap.add_argument("--json", help="output JSON path (default: results/generate.json, with --profile "
                    "results/generate_profile.json, with --from-run results/generate_projection.json)")
    ap.add_argument("--profile", action="store_true", help="stage profile, host side before/after, projection")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's; on a shared machine "
                    "1 avoids threads waiting for a busy core on every small operation)")
    ap.add_argument("--host-shape", type=int, nargs=3, default=[128, 128, 256],
                    help="SR cells of the --profile host-side chunk")
    ap.add_argument("--writers", type=int, default=2, help="writer threads of the --profile run")
    ap.add_argument("--jobs", type=int, default=8, help="parallel generation jobs of the projection (paper: 8)")
    ap.add_argument("--gpu-voxels-per-s", type=float,
                    help="generator rate measured on a GPU (SR voxels/s) for the projection")
    ap.add_argument("--from-run", help="project the paper's big-box job from this finished run's results folder")
    ap.add_argument("--z", help="with --from-run: the big-box redshift (default: the lowest-sorting one found)")
    ap.add_argument("--bigbox-jobs", type=int, nargs="+", default=[1, 8, 64], help="with --from-run: chunk jobs N")
    ap.add_argument("--paper-chunk", type=int, help="with --from-run: LR cells per chunk of the paper job "
                                                     "(default: the run's; generator throughput is measured there)")
    args = ap.parse_args(argv)
    results = Path(__file__).parent / "results"
    if args.from_run:
        args.json = args.json or str(results / "generate_projection.json")
        try:
            return from_run_main(args)
        except SrsimError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    args.json = args.json or str(results / ("generate_profile.json" if args.profile else "generate.json"))

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    widths = tuple(args.widths or (PAPER_WIDTHS if cuda else CPU_WIDTHS))
    chunks = args.chunks or ([8, 12, 16, 24, 32] if cuda else [2, 4, 6])
    n_e2e = args.e2e_n_lr or (64 if cuda else 12)
    if cuda:
        torch.backends.cudnn.benchmark = True
    gen = make_generator(widths, device)
    name = torch.cuda.get_device_name(device) if cuda else f"{cpu_model()} ({torch.get_num_threads()} threads)"
    print(f"# srsim generate benchmark on {name}; widths {widths}; scale {gen.scale}, pad {gen.pad}", flush=True)
    if args.profile:
        return main_profile(args, device, gen, name)

    rows = []
    print(f"{'chunk':>5} {'batch':>5} {'prec':>5} {'s/call':>9} {'SR vox/s':>11} {'GPU GB':>7} {'est GB':>7} "
          f"{'RSS GB':>7}")
    for size in chunks:
        for bf16 in (False, True):
            r = bench_generator(gen, size, args.batch, bf16, device, args.repeats, 640)
            rows.append(r)
            if r.get("oom"):
                print(f"{size:>5} {args.batch:>5} {'bf16' if bf16 else 'fp32':>5}  out of memory")
                continue
            print(f"{size:>5} {args.batch:>5} {'bf16' if bf16 else 'fp32':>5} {r['seconds_per_call']:>9.3f} "
                  f"{r['sr_voxels_per_s']:>11.3e} {r.get('peak_gpu_gb', float('nan')):>7.2f} "
                  f"{r['estimated_activation_gb']:>7.2f} {r['peak_cpu_rss_gb']:>7.2f}", flush=True)

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmpdir:
        tmp = Path(tmpdir)
        wr = bench_writer(args.writer_particles, args.position_dtype, tmp)
        print(f"writer: {wr['particles_per_s']:.3e} particles/s ({args.position_dtype}; write {wr['write_s']:.2f} s + "
              f"CRC read-back {wr['crc_readback_s']:.2f} s for {wr['particles']} particles)", flush=True)
        ok = [r for r in rows if not r.get("oom")]
        best = {p: max((r for r in ok if r["bf16"] == p), key=lambda r: r["sr_voxels_per_s"]) for p in (False, True)}
        e2e_chunk = args.e2e_chunk or min(best[False]["size"], n_e2e)
        e2e = bench_end_to_end(gen, n_e2e, e2e_chunk, args.batch, device, args.position_dtype, tmp, args.power_mesh)
    for key in ("fp32", "bf16"):
        e = e2e[key]
        print(f"end to end {n_e2e}^3 -> {gen.scale * n_e2e}^3 {key}: {e['seconds']:.1f} s, "
              f"{e['particles_per_s']:.3e} particles/s, peak RSS {e['peak_cpu_rss_gb']:.2f} GB"
              + (f", peak GPU {e['peak_gpu_gb']:.2f} GB" if cuda else ""))
    print(f"bf16 vs fp32 matter power spectrum (k <= {e2e['power_k_max']:.2f} h/Mpc): max |P_bf16/P_fp32 - 1| = "
          f"{e2e['bf16_over_fp32_power_max_dev']:.2e}")

    n_big = BIG_N_HR**3
    extrap = {}
    for key, p in (("fp32", False), ("bf16", True)):
        t_gen = n_big / best[p]["sr_voxels_per_s"]
        t_write = n_big / wr["particles_per_s"]
        t_e2e = n_big / e2e[key]["particles_per_s"]
        extrap[key] = {"generator_only_h": t_gen / 3600, "writer_only_h": t_write / 3600,
                       "end_to_end_h": t_e2e / 3600, "best_chunk": best[p]["size"]}
        print(f"640^3 -> 5120^3 ({key}): end to end {t_e2e / 3600:.2f} h; generator alone {t_gen / 3600:.2f} h "
              f"(chunk {best[p]['size']}), writer alone {t_write / 3600:.2f} h; paper: ~16 h; target 0.5 h on one H100")
    result = {"device": name, "widths": list(widths), "scale": gen.scale, "pad": gen.pad, "generator": rows,
              "writer": wr, "end_to_end": e2e, "bigbox_640_to_5120": extrap,
              "maxrss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
