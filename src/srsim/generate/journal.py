"""Bookkeeping of a resumable generation: the hidden sibling paths of an output and the journal of
finished chunks.

An output ``<name>`` is written to ``.<name>.partial``; ``.<name>.plan.json`` holds the settings
fingerprint shared by all jobs, ``.<name>.lock`` serialises their setup, and each job appends the chunks
it finished, with CRC32 checksums of the bytes on disk, to its own ``.<name>.journal[-jobJofN].jsonl``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["output_paths", "journals", "read_journal", "Journal"]


def output_paths(out, jobs: int = 1, job: int = 0) -> dict:
    """The hidden sibling paths of a generation: partial snapshot, plan, lock and this job's journal."""
    out = Path(out)
    tag = "" if jobs == 1 else f"-job{job}of{jobs}"
    return {"partial": out.with_name(f".{out.name}.partial"), "plan": out.with_name(f".{out.name}.plan.json"),
            "lock": out.with_name(f".{out.name}.lock"),
            "journal": out.with_name(f".{out.name}.journal{tag}.jsonl")}


def journals(out) -> list[Path]:
    """Every job's journal of the output `out` (single-job and -jobJofN names)."""
    out = Path(out)
    return sorted(out.parent.glob(f".{out.name}.journal*.jsonl"))


def read_journal(path: Path, fingerprint: dict) -> dict[int, dict] | None:
    """Finished-chunk entries {index: entry} of a journal, or None if it belongs to other settings.

    A torn last line (interrupted append) is ignored.
    """
    if not path.is_file():
        return {}
    entries = {}
    with open(path) as f:
        lines = f.read().splitlines()
    if not lines:
        return {}
    try:
        head = json.loads(lines[0])
    except json.JSONDecodeError:
        return None
    if head.get("fingerprint") != fingerprint:
        return None
    for line in lines[1:]:
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "chunk" in e:
            entries[int(e["chunk"])] = e
    return entries


class Journal:
    """Append-only JSON-lines record of finished chunks; the first line is the settings fingerprint.

    keep: None appends to the existing journal (every entry in it still holds); a list rewrites the
    journal atomically with only these entries (an empty list starts afresh), e.g. those that passed
    verification. Every line is flushed and fsynced, so a killed job loses at most a torn last line.
    """

    def __init__(self, path: Path, fingerprint: dict, keep: list[dict] | None):
        self.path = Path(path)
        if keep is not None or not self.path.is_file() or self.path.stat().st_size == 0:
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "w") as f:
                for line in [{"fingerprint": fingerprint}, *(keep or [])]:
                    f.write(json.dumps(line, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        self._f = open(self.path, "a")

    def append(self, entry: dict) -> None:
        self._f.write(json.dumps(entry, sort_keys=True) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()
