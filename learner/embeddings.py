"""The embedding cache a round leaves beside its model: every training-side document's pooled
vector, as the round's model (or, for the cold start, the base encoder) reads it.

The fast refresh fits its head on these vectors, the batch selection measures diversity and
near-duplicates with them, and the cold start clusters them. One home for the format: files
in the round's artifact folder, rows in ascending document id, float16 (half the disk of
float32; a linear head does not notice), written chunk by chunk through a memory map so
memory stays bounded by a chunk whatever the pool's size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EMBEDDINGS_FILE = "embeddings.npy"
EMBEDDING_IDS_FILE = "embedding_ids.npy"
EMBEDDINGS_META_FILE = "embeddings.json"
EMBEDDING_DTYPE = np.float16


class CacheWriter:
    """Writes up to `total` rows, chunk by chunk, into `folder`; `close()` records how many
    were written (rows past that are unused)."""

    def __init__(self, folder: Path, total: int) -> None:
        self.folder = folder
        self.total = total
        self.rows = 0
        folder.mkdir(parents=True, exist_ok=True)
        self._ids = np.lib.format.open_memmap(
            folder / EMBEDDING_IDS_FILE, mode="w+", dtype=np.int64, shape=(max(total, 1),)
        ) if total else None
        if self._ids is not None:
            self._ids[:] = -1
        self._embeddings: np.ndarray | None = None

    def append(self, ids: list[int] | np.ndarray, embeddings: np.ndarray) -> None:
        if self._ids is None:
            raise ValueError("this cache was opened for 0 rows")
        if self._embeddings is None:
            self._embeddings = np.lib.format.open_memmap(
                self.folder / EMBEDDINGS_FILE, mode="w+", dtype=EMBEDDING_DTYPE,
                shape=(self.total, embeddings.shape[1]),
            )
        end = self.rows + len(ids)
        self._embeddings[self.rows:end] = embeddings
        self._ids[self.rows:end] = ids
        self.rows = end

    def close(self) -> None:
        for memmap in (self._ids, self._embeddings):
            if memmap is not None:
                memmap.flush()
        self._ids = self._embeddings = None
        (self.folder / EMBEDDINGS_META_FILE).write_text(json.dumps({
            "rows": self.rows, "allocated": self.total,
            "dtype": np.dtype(EMBEDDING_DTYPE).name, "order": "document id ascending",
        }))


@dataclass(frozen=True)
class EmbeddingCache:
    """A round's cached embeddings: `ids` (n,) int64 ascending document ids and
    `embeddings` (n, h) (a read-only memory map; rows are read only when indexed)."""

    ids: np.ndarray
    embeddings: np.ndarray

    def rows_of(self, doc_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in `doc_ids` that are cached, their rows in `embeddings`)."""
        doc_ids = np.asarray(doc_ids, dtype=np.int64)
        if len(self.ids) == 0 or len(doc_ids) == 0:
            empty = np.array([], dtype=np.int64)
            return empty, empty
        pos = np.minimum(np.searchsorted(self.ids, doc_ids), len(self.ids) - 1)
        found = np.flatnonzero(self.ids[pos] == doc_ids)
        return found, pos[found]

    def take(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), h) float32 (fancy indexing a memmap reads just those rows)."""
        return np.asarray(self.embeddings[rows], dtype=np.float32)


def cache_read(folder: str | Path | None) -> EmbeddingCache | None:
    """The cache in a round's artifact folder, or None (no folder, a round from before the
    cache existed, or nothing written)."""
    if not folder:
        return None
    root = Path(folder)
    try:
        meta = json.loads((root / EMBEDDINGS_META_FILE).read_text())
        rows = int(meta["rows"])
        if rows == 0:
            return None
        ids = np.load(root / EMBEDDING_IDS_FILE, mmap_mode="r")[:rows]
        embeddings = np.load(root / EMBEDDINGS_FILE, mmap_mode="r")[:rows]
    except (OSError, ValueError, KeyError):
        return None
    return EmbeddingCache(ids=np.asarray(ids), embeddings=embeddings)
