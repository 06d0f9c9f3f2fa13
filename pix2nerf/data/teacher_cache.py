"""An on-disk cache of generator-teacher samples, so a slow teacher is rendered once and its samples reused.

Rendering fresh latents of the teacher generator every step is the slowest part of teacher training when the
teacher is large (e.g. an imported EG3D). :class:`TeacherCache` keeps up to ``capacity`` samples (rows) as
safetensors shards in a folder, and in memory for sampling; a later run on the same folder reads them back. Cached
samples go stale as soon as the teacher changes, so the system only allows the cache with a frozen generator, and
every shard records a ``fingerprint`` of the teacher and the sampling settings that a reader must match.

A sample is a row of: a batch dict of tensors (B, ...), the latents ws (B, num_ws, w_dim) and the teacher's field
parameters (B, ...) (tri-planes (B, 3, C, H, W), or ws for the hash grid).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

FORMAT = "pix2nerf-teacher-cache"
"""The ``format`` metadata of every shard."""
FORMAT_VERSION = "1"
"""The ``version`` metadata of every shard; bumped when the shard layout changes."""
SHARD_PATTERN = re.compile(r"shard-(\d+)\.safetensors")
"""Names of complete shards; anything else in the folder (such as an interrupted write's temp file) is ignored."""
SHARD_NAME = "shard-{index:06d}.safetensors"
TEMP_SUFFIX = ".tmp"
"""Suffix of a shard being written, before it is renamed into place."""
BATCH_PREFIX = "batch."
"""Prefix of the batch dict's keys in a shard (next to ``ws`` and ``params``)."""
WS_KEY = "ws"
PARAMS_KEY = "params"


class TeacherCache:
    """Up to ``capacity`` teacher samples in shards ``shard-NNNNNN.safetensors`` of ``folder`` (created if missing).

    Existing shards are read on construction. They must carry ``fingerprint`` (a string identifying the teacher and
    the sampling settings); a shard of another fingerprint, or an unreadable one, raises :class:`ValueError`.
    """

    def __init__(self, folder: str | Path, capacity: int, fingerprint: str) -> None:
        if capacity < 1:
            raise ValueError(f"teacher cache capacity must be at least 1, got {capacity}")
        self.folder = Path(folder)
        self.capacity = capacity
        self.fingerprint = fingerprint
        self._rows: dict[str, Tensor] = {}  # flat key -> (capacity, ...) buffer; the first _count rows are filled
        self._count = 0
        self._next_index = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        for index, path in self._shards():
            self._next_index = index + 1
            self._store(self._read(path))

    def __len__(self) -> int:
        return self._count

    @property
    def full(self) -> bool:
        return self._count >= self.capacity

    def add(self, batch: dict[str, Tensor], ws: Tensor, params: Tensor) -> None:
        """Write the first ``min(B, capacity - len(self))`` rows of ``batch`` (tensors (B, ...)), ``ws`` (B, ...)
        and ``params`` (B, ...) as one new shard; nothing when the cache is full."""
        rows = self._flatten(batch, ws, params)
        self._check(rows, "the added samples")
        keep = min(next(iter(rows.values())).shape[0], self.capacity - self._count)
        if keep <= 0:
            return
        rows = {
            key: value[:keep].detach().cpu().clone(memory_format=torch.contiguous_format) for key, value in rows.items()
        }
        path = self.folder / SHARD_NAME.format(index=self._next_index)
        metadata = {"format": FORMAT, "version": FORMAT_VERSION, "fingerprint": self.fingerprint}
        temp = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
        try:
            save_file(rows, str(temp), metadata=metadata)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self._next_index += 1
        self._store(rows)

    def sample(
        self, batch_size: int, rng: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """``batch_size`` random rows as (batch dict of (batch_size, ...), ws, params), on ``device`` (CPU if None).

        Rows are distinct when ``batch_size <= len(self)``, drawn with replacement otherwise. ``rng`` is a CPU
        generator.
        """
        if self._count == 0:
            raise ValueError(f"teacher cache {self.folder} is empty: add samples before sampling")
        if batch_size <= self._count:
            index = torch.randperm(self._count, generator=rng)[:batch_size]
        else:
            index = torch.randint(self._count, (batch_size,), generator=rng)
        rows = {key: value.index_select(0, index).to(device) for key, value in self._rows.items()}
        batch = {key.removeprefix(BATCH_PREFIX): value for key, value in rows.items() if key.startswith(BATCH_PREFIX)}
        return batch, rows[WS_KEY], rows[PARAMS_KEY]

    def _shards(self) -> list[tuple[int, Path]]:
        """The complete shards of the folder, in write order."""
        shards = []
        for path in self.folder.iterdir():
            match = SHARD_PATTERN.fullmatch(path.name)
            if match:
                shards.append((int(match.group(1)), path))
        return sorted(shards)

    def _read(self, path: Path) -> dict[str, Tensor]:
        """A shard's tensors, after checking its format and fingerprint."""
        fix = f"delete it (or the folder {self.folder}) to rebuild the cache"
        try:
            with safe_open(str(path), framework="pt") as shard:
                metadata = shard.metadata() or {}
                rows = {key: shard.get_tensor(key) for key in shard.keys()}
        except (SafetensorError, OSError) as error:
            raise ValueError(f"teacher cache shard {path} is corrupt or unreadable ({error}); {fix}") from error
        if metadata.get("format") != FORMAT or metadata.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"teacher cache shard {path} is not a version {FORMAT_VERSION} teacher cache shard "
                f"(metadata {metadata}); {fix}"
            )
        if metadata.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"teacher cache {self.folder} was made by a different teacher or settings (fingerprint "
                f"{metadata.get('fingerprint')!r} in {path.name}, expected {self.fingerprint!r}); delete the folder "
                "or choose another teacher_cache folder"
            )
        if WS_KEY not in rows or PARAMS_KEY not in rows:
            raise ValueError(f"teacher cache shard {path} lacks {WS_KEY!r} or {PARAMS_KEY!r}; {fix}")
        self._check(rows, f"teacher cache shard {path}")
        return rows

    def _store(self, rows: dict[str, Tensor]) -> None:
        """Copy rows (already checked) into the in-memory buffers, up to capacity."""
        if not self._rows:
            self._rows = {
                key: torch.empty((self.capacity, *value.shape[1:]), dtype=value.dtype) for key, value in rows.items()
            }
        keep = min(next(iter(rows.values())).shape[0], self.capacity - self._count)
        for key, value in rows.items():
            self._rows[key][self._count : self._count + keep] = value[:keep]
        self._count += keep

    def _check(self, rows: dict[str, Tensor], what: str) -> None:
        """Raise unless all tensors share the sample count B and match the cache's keys, shapes and dtypes."""
        counts = {key: value.shape[0] if value.dim() else None for key, value in rows.items()}
        if None in counts.values() or len(set(counts.values())) != 1:
            raise ValueError(f"{what}: all tensors need the same sample count as their first dimension, got {counts}")
        if not self._rows:
            return
        expected = {key: (tuple(value.shape[1:]), value.dtype) for key, value in self._rows.items()}
        got = {key: (tuple(value.shape[1:]), value.dtype) for key, value in rows.items()}
        if got != expected:
            raise ValueError(
                f"{what}: keys, shapes or dtypes (after the sample dimension) {got} differ from the cache's {expected}"
            )

    @staticmethod
    def _flatten(batch: dict[str, Tensor], ws: Tensor, params: Tensor) -> dict[str, Tensor]:
        return {**{BATCH_PREFIX + key: value for key, value in batch.items()}, WS_KEY: ws, PARAMS_KEY: params}
