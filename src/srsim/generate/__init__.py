"""Chunked, periodic, streaming super-resolution of an LR box of any size (paper: "Application to a large volume").

Per chunk: read a cubic window of the LR displacement plus ``pad`` LR cells of periodic context (sliced
from HDF5, never the whole box), run the generator, keep the chunk's own cells, turn SR displacements into
particle positions and grid IDs, and hand them to a background thread that writes them at the chunk's
slot of the output snapshot. Memory is bounded by a few chunks, whatever the box.

Geometry (`plan`). The LR grid has ``n`` cells per side; the SR grid ``n_hr = scale * n``. A *region* (the
whole box by default) is a periodic box of LR cells ``origin + [0, extent)``, tiled by cubic windows of
``size`` LR cells of one shape. A window is passed to the generator with its padding, and the generator's
noise is keyed by global voxel indices, so the result does not depend on the chunking (DESIGN.md
invariant 3).

Output (`store`). A bigfile snapshot in MP-Gadget's layout: ``Header`` (BoxSize, Time, MassTable with the
SR particle mass, TotNumPart, ...), ``1/Position`` (kpc/h, wrapped into the box) and ``1/ID`` (SR grid IDs
``i*n_hr^2 + j*n_hr + k + 1``). Particles are stored chunk after chunk (not in ID order). A 3-channel
model (the paper's) writes no ``1/Velocity`` block: it predicts displacements only (an LR snapshot's
velocities are ignored; an LR displacement file with ``vel``, made for a 6-channel model, is refused before
any output, except by the trivial predictor). A 6-channel model (``model.channels: 6``) needs the LR velocities (an LR file's
``vel``, or an LR snapshot's ``1/Velocity``; refused before any output otherwise) and writes its
generated ``1/Velocity`` (peculiar km/s, f4, in the particle order of ``1/Position``; ``Header.SRNote``
says how it was made), journaled and checksummed like the positions. Optionally the SR displacement field
(HDF5, streamed chunk-wise) for the whole box (displacements only, whatever the channels).

Resume (`journal`, `store`). Output goes to ``.<name>.partial`` next to the final path; a journal
``.<name>.journal*.jsonl`` lists every finished chunk with CRC32 checksums of the bytes on disk. A rerun
verifies those chunks, skips them, generates the rest, and renames the partial output into place only
when every chunk is done. Several jobs (``job, jobs``) may fill the same partial snapshot concurrently,
each with its own journal; ``finalize`` (``srsim generate-merge``) then checks the journals and renames.

Modules: `plan` (chunks), `infer` (LR input, generator, particles), `memory` (chunk size from free
memory), `journal` (bookkeeping paths and journal), `store` (ChunkStore: everything written), `run` (the
`generate` driver and its GenerateSettings), `profile` (time per stage, for benchmarks).
"""

from srsim.generate.infer import (LRInput, Model, check_model_input, check_scaling, chunk_ids, chunk_particles,
                                  load_model, minimum_image_, model_digest, super_resolve, trivial_generator,
                                  trivial_predictor)
from srsim.generate.journal import Journal, output_paths, read_journal
from srsim.generate.memory import (HOST_BYTES_PER_PARTICLE, WRITERS, auto_chunk_size, estimate_generator_bytes,
                                   host_slots)
from srsim.generate.plan import (Chunk, Plan, axis_windows, plan_chunks, region_from_cells, region_from_centre,
                                 region_from_mpc)
from srsim.generate.profile import STAGES, StageTimer
from srsim.generate.run import GenerateResult, GenerateSettings, generate
from srsim.generate.store import BIGFILE_LOCK, ChunkStore, finalize, read_stored, snapshot_attrs, stored_crc

__all__ = ["LRInput", "Model", "check_model_input", "check_scaling", "chunk_ids", "chunk_particles", "load_model",
           "minimum_image_", "model_digest", "super_resolve", "trivial_generator", "trivial_predictor", "Journal",
           "output_paths", "read_journal", "HOST_BYTES_PER_PARTICLE", "WRITERS", "auto_chunk_size",
           "estimate_generator_bytes", "host_slots", "Chunk", "Plan", "axis_windows", "plan_chunks",
           "region_from_cells", "region_from_centre", "region_from_mpc", "STAGES", "StageTimer", "GenerateResult",
           "GenerateSettings", "generate", "BIGFILE_LOCK", "ChunkStore", "finalize", "read_stored", "snapshot_attrs",
           "stored_crc"]
