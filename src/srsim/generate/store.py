"""The output side of generation: a `ChunkStore` owns everything written to disk.

That is the partial SR snapshot ``.<name>.partial`` (bigfile, MP-Gadget layout: ``Header`` with the SR
particle mass, ``1/Position`` kpc/h wrapped into the box, ``1/ID`` SR grid IDs, and for a 6-channel model
``1/Velocity`` peculiar km/s f4 in the same order; particles stored chunk after chunk; a 3-channel model
writes no ``1/Velocity`` block), the lock under which jobs set it up, this job's journal, the
verification of journaled chunks on a rerun, the background writer threads, the optional SR displacement
field (HDF5, streamed chunk-wise) and the final rename. `finalize` completes an output written by several
jobs (``srsim generate-merge``).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import sys
import threading
from pathlib import Path

import numpy as np

from srsim.errors import SrsimError
from srsim.generate.infer import LRInput, chunk_particles
from srsim.generate.journal import Journal, journals, output_paths, read_journal
from srsim.generate.memory import WRITERS, host_slots
from srsim.generate.plan import Chunk, Plan, plan_chunks
from srsim.generate.profile import StageTimer, stage
from srsim.io.atomic import crc32, replace_path
from srsim.io.displacement import DisplacementWriter
from srsim.lock import locked

__all__ = ["BIGFILE_LOCK", "ChunkStore", "finalize", "snapshot_attrs", "stored_crc", "read_stored"]

#: the bigfile library is not thread-safe (concurrent opens/reads fail even on separate File objects):
#: every bigfile call of this package holds this lock, the HDF5 writes and checksums run beside it
BIGFILE_LOCK = threading.Lock()


def snapshot_attrs(plan: Plan, lr: LRInput, *, seed: int, model: str, cosmology: dict, velocity: bool = False) -> dict:
    """Raw Header attributes of the SR snapshot (MP-Gadget units; MassTable = SR particle mass); `velocity`:
    the snapshot has a generated 1/Velocity block (6-channel model), which SRNote then describes."""
    from srsim.io.snapshot import make_header

    cosmo = dict(cosmology)
    for key in ("Omega_m", "Omega_L", "Omega_b", "h", "sigma8", "n_s"):
        cosmo.setdefault(key, float("nan"))  # unknown in the input: recorded as NaN, never guessed
    attrs = make_header(box_size=lr.box_size, redshift=lr.redshift, n_particles=plan.n_hr**3, cosmology=cosmo,
                        n_grid=plan.n_hr)
    attrs["TotNumPart"] = np.array([0, plan.n_particles, 0, 0, 0, 0], dtype=np.uint64)
    attrs["SRSeed"] = np.array([int(seed)], dtype=np.int64)
    attrs["SRScale"] = np.array([plan.scale], dtype=np.int64)
    attrs["SRRegionCells"] = np.array([*plan.origin, *plan.extent], dtype=np.int64)
    attrs["SRModel"] = str(model)
    if model == "TrivialPredictor":
        attrs["SRPredictor"] = "trivial: LR displacement trilinearly upsampled (vertex-aligned) onto the HR grid"
    attrs["SRInput"] = str(lr.path)
    if velocity:
        vel_note = ("1/Velocity = generated peculiar velocity in km/s (a dx/dt, UsePeculiarVelocity = 1): the "
                    "6-channel model's velocity channels times its recorded velocity scale disp_scale D 100 a E f, "
                    "from the LR velocities of the input")
    else:
        vel_note = "no Velocity block (the model predicts displacements only)"
    attrs["SRNote"] = (f"super-resolved snapshot: positions = SR grid + generated displacement; {vel_note}; "
                       "particles stored chunk by chunk, not in ID order; SRRegionCells = LR origin and extent of "
                       "the super-resolved region")
    if velocity:
        attrs["UsePeculiarVelocity"] = np.array([1], dtype=np.int32)
    return attrs


def read_stored(reader, start: int, count: int, velocity: bool = False) -> dict:
    """Raw stored Position and ID (and, with `velocity`, Velocity) arrays of particles [start, start+count)
    (caller holds BIGFILE_LOCK)."""
    raw = {"crc_position": reader["1/Position"][start:start + count], "crc_id": reader["1/ID"][start:start + count]}
    if velocity:
        raw["crc_velocity"] = reader["1/Velocity"][start:start + count]
    return raw


def stored_crc(reader, start: int, count: int, velocity: bool = False) -> dict:
    """CRC32 of the Position and ID (and Velocity) bytes of particles [start, start+count) as stored."""
    with BIGFILE_LOCK:
        raw = read_stored(reader, start, count, velocity)
    return {k: crc32(v) for k, v in raw.items()}


def verify_chunks(entries: dict[int, dict], chunks: list[Chunk], plan: Plan, reader, disp, progress: bool) -> set[int]:
    """Indices of journaled chunks whose bytes on disk still match their checksums.

    entries: journal entries by chunk index; chunks: those to check; reader: the partial snapshot (bigfile);
    disp: the SR displacement `DisplacementWriter`, or None to skip its checksums.
    """
    from tqdm import tqdm

    good = set()
    todo = [c for c in chunks if c.index in entries]
    for c in tqdm(todo, desc="verify", unit="chunk", disable=not progress or not todo, file=sys.stderr):
        e = entries[c.index]
        n = plan.particles(c)
        if e.get("start") != c.start or e.get("count") != n:
            continue
        # a velocity snapshot's entries carry crc_velocity (its fingerprint differs from a 3-channel run's)
        velocity = "crc_velocity" in e
        keys = ("crc_position", "crc_id") + (("crc_velocity",) if velocity else ())
        if {k: e.get(k) for k in keys} != stored_crc(reader, c.start, n, velocity):
            continue
        if disp is not None:
            shape = tuple(plan.scale * s for s in c.shape)
            if e.get("crc_disp") != disp.crc([plan.scale * l for l in c.local], shape):
                continue
        good.add(c.index)
    return good


def _alloc_slot(n_part: int, with_disp: bool, pin: bool, position_dtype: str, with_vel: bool = False) -> dict:
    """Host buffers for one chunk of up to n_part particles, as stored: pos (n, 3) kpc/h of `position_dtype`,
    ids (n,) i8 (viewed as u8 for writing), disp (3n,) f4 Mpc/h, vel (n, 3) f4 km/s."""
    import torch

    pos_dtype = torch.float32 if position_dtype == "f4" else torch.float64
    slot = {"pos": torch.empty((n_part, 3), dtype=pos_dtype, pin_memory=pin),
            "ids": torch.empty(n_part, dtype=torch.int64, pin_memory=pin)}
    if with_disp:
        slot["disp"] = torch.empty(3 * n_part, dtype=torch.float32, pin_memory=pin)
    if with_vel:
        slot["vel"] = torch.empty((n_part, 3), dtype=torch.float32, pin_memory=pin)
    return slot


class _Writer:
    """Background writers: threads take finished chunks from a queue, write, checksum and journal them.

    Host buffer slots circulate between the generator loop (`take_slot`) and the writers (returned after
    writing), so at most `host_slots` chunks are held on the host, whatever the box.
    """

    def __init__(self, snap, disp: DisplacementWriter | None, journal: Journal, plan: Plan, threads: int,
                 timer: StageTimer | None = None):
        self.snap, self.disp, self.journal, self.plan, self.timer = snap, disp, journal, plan, timer
        self.q: queue.Queue = queue.Queue()
        self.free: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.written = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, name=f"srsim-writer-{i}", daemon=True)
                         for i in range(max(1, threads))]
        for t in self._threads:
            t.start()

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def submit(self, item) -> None:
        self._check()
        self.q.put(item)

    def take_slot(self):
        """A free host buffer slot (blocks while the writers are behind: this bounds memory)."""
        with stage(self.timer, "queue_wait", sync=False):
            return self._take_slot()

    def _take_slot(self):
        while True:
            self._check()
            try:
                return self.free.get(timeout=0.2)
            except queue.Empty:
                continue

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is not None:
                continue
            try:
                self._write(*item)
            except BaseException as exc:  # handed to the main thread
                self.error = exc

    def _write(self, chunk: Chunk, slot: dict, event) -> None:
        if event is not None:
            event.synchronize()
        n = self.plan.particles(chunk)
        pos = slot["pos"][:n].numpy()
        ids = slot["ids"][:n].numpy().view(np.uint64)
        vel = slot["vel"][:n].numpy() if "vel" in slot else None
        with stage(self.timer, "write", n, sync=False):  # raw block writes: no bigfile call, no BIGFILE_LOCK
            self.snap.write_stored(chunk.start, pos, ids, vel)
        # the bytes just handed to bigfile are those on disk (it stores them raw): their checksum is the
        # one verify_chunks recomputes from the file on a rerun, without reading the chunk back here
        with stage(self.timer, "checksum", n, sync=False):
            entry = {"chunk": chunk.index, "start": chunk.start, "count": n,
                     "crc_position": crc32(pos), "crc_id": crc32(ids)}
            if vel is not None:
                entry["crc_velocity"] = crc32(vel)
        if self.disp is not None:
            shape = tuple(self.plan.scale * s for s in chunk.shape)
            block = slot["disp"][:3 * n].numpy().reshape(3, *shape)
            entry["crc_disp"] = self.disp.write([self.plan.scale * l for l in chunk.local], block)
        with self._lock:
            self.journal.append(entry)
            self.written += n
        self.free.put(slot)

    def close(self) -> None:
        for _ in self._threads:
            self.q.put(None)
        for t in self._threads:
            t.join()
        self._check()


class ChunkStore:
    """The partial SR snapshot of one job and everything that makes it resumable.

    Opening it (under the output's lock) creates the partial snapshot, or reopens one made with the same
    settings `fingerprint` (else discards it, or refuses when other jobs share it), verifies the chunks this
    job's journal lists against the bytes on disk and rewrites the journal with the good ones. `schedule`
    then names the chunks left to generate and starts the writer threads, `put` queues one chunk's SR
    displacement, and leaving the ``with`` block waits for the writers: a complete single job is renamed
    into place, a complete job of several is marked in its journal for `finalize`, an incomplete one stays
    resumable. On an exception the writers are stopped and the partial output is kept as it is.

    out: final snapshot path; plan: the chunking of the whole output; attrs: raw Header attributes
    (`snapshot_attrs`); fingerprint: JSON-able settings a resumed chunk must share; box_size: Mpc/h;
    disp_path, disp_attrs: the SR displacement file and its `DisplacementWriter` attributes (box_size,
    redshift, cosmology, source, ...), or None; writers: background threads (None: WRITERS); pin: page-locked
    host buffers (CUDA); timer: a StageTimer to charge the stages to (profiling), or None; velocity: the
    snapshot has a 1/Velocity block (6-channel models: `put` then takes (6, ...) blocks).
    """

    def __init__(self, out, plan: Plan, attrs: dict, fingerprint: dict, *, box_size: float, job: int = 0,
                 jobs: int = 1, resume: bool = True, position_dtype: str = "f8", disp_path=None,
                 disp_attrs: dict | None = None, writers: int | None = None, pin: bool = False,
                 progress: bool = True, timer: StageTimer | None = None, velocity: bool = False):
        import bigfile

        self.out, self.plan, self.box_size = Path(out), plan, float(box_size)
        self.job, self.jobs, self.pin, self.timer = job, jobs, pin, timer
        self.position_dtype = position_dtype
        self.velocity = bool(velocity)
        self.writers = int(writers or WRITERS)
        self.paths = output_paths(self.out, jobs, job)
        self.snap, entries = self._open_partial(attrs, fingerprint, resume, position_dtype)
        self.reader = bigfile.File(str(self.paths["partial"]))
        self.disp = None
        if disp_path is not None:
            self.disp = DisplacementWriter(disp_path, plan.n_hr, resume=bool(entries), **(disp_attrs or {}))
        self.chunks = plan.job_chunks(job, jobs)  #: this job's share
        self.done = verify_chunks(entries, self.chunks, plan, self.reader, self.disp, progress) if entries else set()
        # all verified: append; else keep only the verified entries (none: a fresh journal)
        keep = None if self.done and len(self.done) == len(entries) else [entries[i] for i in sorted(self.done)]
        self.journal = Journal(self.paths["journal"], fingerprint, keep)
        self.generated = 0  #: chunks put in this run
        self.complete = False  #: set on leaving the with block
        self._writer = None

    def _open_partial(self, attrs: dict, fingerprint: dict, resume: bool, position_dtype: str):
        """Create or reopen the partial snapshot (under the lock); returns (SnapshotWriter, this job's entries)."""
        from srsim.io.snapshot import SnapshotWriter

        p = self.paths
        with locked(p["lock"]):
            plan_ok = p["plan"].is_file() and json.loads(p["plan"].read_text() or "{}") == fingerprint
            blocks = ("1/Position", "1/ID") + (("1/Velocity",) if self.velocity else ())
            structure_ok = all((p["partial"] / b / "header").is_file() for b in blocks)
            if not p["partial"].exists():  # journals without their data are meaningless
                _drop_bookkeeping(self.out, p, lock=False)
            elif not (plan_ok and structure_ok and resume):
                if self.jobs > 1 and p["plan"].is_file() and not plan_ok:
                    raise SrsimError(f"{p['partial']}: a partial output with other settings exists "
                                     f"(see {p['plan']}); delete it and its journals to start again")
                shutil.rmtree(p["partial"])
                _drop_bookkeeping(self.out, p, lock=False)
            if not p["plan"].is_file():
                tmp = p["plan"].with_name(p["plan"].name + ".tmp")
                tmp.write_text(json.dumps(fingerprint, sort_keys=True, indent=1))
                os.replace(tmp, p["plan"])
            snap = SnapshotWriter(self.out, attrs, self.plan.n_particles, velocity=self.velocity,
                                  position_dtype=position_dtype, tmp_path=p["partial"])
        entries = read_journal(p["journal"], fingerprint) if resume else {}
        return snap, entries or {}

    def schedule(self, batch: int, max_chunks: int | None = None) -> list[Chunk]:
        """This job's chunks still to generate (the first `max_chunks` of them), in plan order.

        Allots the host buffers for them (`host_slots` of the largest chunk) and starts the writer threads.
        """
        todo = [c for c in self.chunks if c.index not in self.done]
        if max_chunks is not None:
            todo = todo[:max(0, int(max_chunks))]
        max_part = max((self.plan.particles(c) for c in todo), default=0)
        self._writer = _Writer(self.snap, self.disp, self.journal, self.plan, self.writers, self.timer)
        for _ in range(host_slots(self.writers, batch) if todo else 0):
            self._writer.free.put(_alloc_slot(max_part, self.disp is not None, self.pin, self.position_dtype,
                                              self.velocity))
        return todo

    def put(self, chunk: Chunk, disp) -> None:
        """Queue one chunk for writing.

        disp: (3, scale*a, scale*b, scale*c) float32 torch tensor of the chunk's kept SR cells, Mpc/h,
        minimum-image wrapped, on any device; (6, ...) for a velocity store, [3:] the peculiar velocity km/s
        (stored in the particle order of the positions). Positions and IDs are computed where `disp` lives; only the
        stored arrays are copied to the host. Blocks while every host buffer is in use (this bounds memory).
        """
        import torch

        scale = self.plan.scale
        hr_origin = [scale * (w + l) for w, l in zip(chunk.window, chunk.lo)]
        m = self.plan.particles(chunk)
        if disp.shape[0] != (6 if self.velocity else 3):
            raise SrsimError(f"{self.out}: chunk {chunk.index} has {disp.shape[0]} channels, the store takes "
                             f"{6 if self.velocity else 3}")
        vel = disp[3:] if self.velocity else None
        disp = disp[:3]
        with stage(self.timer, "particles", m):
            pos, ids = chunk_particles(disp, hr_origin, self.plan.n_hr, self.box_size, self.position_dtype)
        slot = self._writer.take_slot()
        with stage(self.timer, "d2h", m):
            slot["pos"][:m].copy_(pos, non_blocking=self.pin)
            slot["ids"][:m].copy_(ids, non_blocking=self.pin)
            if self.disp is not None:
                slot["disp"][:3 * m].copy_(disp.reshape(-1), non_blocking=self.pin)
            if vel is not None:  # (3, A, B, C) -> (A*B*C, 3): C order over the cells, as chunk_particles' positions
                slot["vel"][:m].copy_(vel.permute(1, 2, 3, 0).reshape(-1, 3), non_blocking=self.pin)
        event = None
        if self.pin:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(disp.device))  # the copies above are queued there
        self._writer.submit((chunk, slot, event))
        self.generated += 1

    @property
    def written(self) -> int:
        """SR particles written (and journaled) so far in this run."""
        return self._writer.written if self._writer is not None else 0

    def __enter__(self) -> ChunkStore:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self._abort()
            return False
        try:
            if self._writer is not None:
                self._writer.close()  # re-raises a writer thread's error
        except BaseException:
            self._abort()
            raise
        self.complete = len(self.done) + self.generated == len(self.chunks)
        if self.complete and self.jobs > 1:
            self.journal.append({"job_complete": self.job, "jobs": self.jobs})
        self.journal.close()
        if self.disp is not None:
            if self.complete and self.jobs == 1:
                self.disp.close()
            else:
                self.disp.suspend()
        self.snap.detach()  # closes the bigfile; the rename, if any, is _finish's
        if self.complete and self.jobs == 1:
            _finish(self.out, self.paths)
        return False

    def _abort(self) -> None:
        """Stop the writers and close the files, keeping the partial output resumable as it is on disk."""
        with contextlib.suppress(BaseException):
            if self._writer is not None:
                self._writer.close()
        self.journal.close()
        if self.disp is not None:
            self.disp.suspend()


def _drop_bookkeeping(out: Path, paths: dict, lock: bool) -> None:
    """Delete the journals and the plan of an output (and its lock file, once no job needs it)."""
    for j in journals(out):
        j.unlink()
    paths["plan"].unlink(missing_ok=True)
    if lock:
        paths["lock"].unlink(missing_ok=True)


def _finish(out: Path, paths: dict) -> None:
    """Rename the complete partial snapshot (its bigfile closed) into place and drop the bookkeeping files."""
    replace_path(paths["partial"], out)
    _drop_bookkeeping(out, paths, lock=True)


def finalize(out, jobs: int, *, verify: bool = False, progress: bool = True) -> Path:
    """Complete a snapshot generated by `jobs` jobs: check every job's journal covers its chunks, rename.

    verify: re-read every chunk and compare its checksums (reads the whole output once).
    """
    import bigfile

    out = Path(out)
    p = output_paths(out)
    if not p["plan"].is_file() or not p["partial"].is_dir():
        raise SrsimError(f"{out}: no partial output to merge (expected {p['partial']} and {p['plan']})")
    fingerprint = json.loads(p["plan"].read_text())
    d = fingerprint["plan"]
    plan = plan_chunks(d["n_lr"], d["size"], d["scale"], d["pad"], (d["origin"], d["extent"]))
    if plan.describe() != d:
        raise SrsimError(f"{p['plan']}: the recorded plan does not reproduce ({d})")
    reader = bigfile.File(str(p["partial"]))
    missing = []
    for job in range(jobs):
        jp = output_paths(out, jobs, job)["journal"]
        entries = read_journal(jp, fingerprint) or {}
        chunks = plan.job_chunks(job, jobs)
        if verify:
            good = verify_chunks(entries, chunks, plan, reader, None, progress)
        else:
            good = {c.index for c in chunks if c.index in entries
                    and entries[c.index].get("count") == plan.particles(c)
                    and entries[c.index].get("start") == c.start}
        lost = [c.index for c in chunks if c.index not in entries]
        bad = sorted(c.index for c in chunks if c.index in entries and c.index not in good)
        if lost or bad:
            what = [f"{len(lost)} of {len(chunks)} chunks not finished"] if lost else []
            if bad:
                check = "checksums" if verify else "particle slots"
                what.append(f"chunks {bad[:8]}{' ...' if len(bad) > 8 else ''} whose data disagree with the "
                            f"journal's {check}")
            missing.append(f"job {job}: {', '.join(what)} ({jp}; rerun that job)")
    if missing:
        raise SrsimError(f"{out}: cannot merge, incomplete jobs: " + "; ".join(missing))
    with BIGFILE_LOCK:
        reader.close()
    _finish(out, p)
    return out
