"""Exact (sha256 of the downloaded bytes) and perceptual (imagehash pHash, Hamming distance)
duplicate detection across buckets and runs."""
from __future__ import annotations

import threading
from typing import Optional

DEFAULT_PHASH_DISTANCE = 6   # of 64 bits; re-encodes/resizes land at 0-4, different photos ~20-40


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


class DedupeIndex:
    def __init__(self, max_distance: int = DEFAULT_PHASH_DISTANCE):
        self.max_distance = max_distance
        self._sha: dict[str, str] = {}
        self._phash: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def add(self, key: str, sha256: str, phash: str) -> None:
        with self._lock:
            self._sha.setdefault(sha256, key)
            if phash:
                self._phash.append((int(phash, 16), key))

    def find(self, sha256: str, phash: str) -> Optional[tuple[str, str, int]]:
        """(kind, key of the image it duplicates, distance) or None."""
        with self._lock:
            if sha256 in self._sha:
                return "sha256", self._sha[sha256], 0
            if not phash or self.max_distance < 0:
                return None
            h = int(phash, 16)
            best = None
            for other, key in self._phash:
                d = bin(h ^ other).count("1")
                if d <= self.max_distance and (best is None or d < best[2]):
                    best = ("phash", key, d)
            return best
