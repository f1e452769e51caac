"""What a checkpoint carries about its data: the deletion history and the training subset.

Both live in the safetensors header's metadata (string to string), written in the same atomic write as the
weights, so a bare copy of the weights file keeps them. The JSON sidecar mirrors them for people; where the two
disagree the weights file wins and a `HistoryWarning` says so. A checkpoint without this metadata (pretrained or
plain torch weights, or written before it existed) has an empty history, unless a legacy sidecar lists ids.

The metadata key `lotus_unlearn` holds one JSON object (keys sorted, so the file's bytes are reproducible):
`format` ("1"); `forgotten_ids` (the sorted int64 ids, delta-encoded, zlib, base64), `forgotten_count`,
`forgotten_sha256`, `requests`, `parents` (the weights hash each request started from, oldest first);
`train_subset` (dataset, train_size, seed, n_train, ids_sha256) or null.
Reading is bounded: a header over `MAX_HEADER_BYTES` or more than `MAX_IDS` ids is refused with one line.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lotus_unlearn.errors import LotusWarning, UserError
from lotus_unlearn.utils import ids_sha256, is_int

KEY = "lotus_unlearn"
FORMAT = "1"
MAX_IDS = 10_000_000  # more than any training set the library loads (ImageNet-1k: 1.28 M)
MAX_HEADER_BYTES = 100 << 20  # the safetensors format's own limit
_SHA = re.compile(r"[0-9a-f]{64}")


class HistoryWarning(LotusWarning):
    """The sidecar's record disagrees with the weights file's; the weights file's is used."""


@dataclass(frozen=True)
class TrainSubset:
    """The training samples a checkpoint was trained on: `dataset`'s training file, or its seeded stratified
    subset of `train_size` samples (subset seed `seed`); `n_train` ids whose hash is `ids_sha256`."""

    dataset: str
    train_size: int | None
    seed: int
    n_train: int
    ids_sha256: str

    @classmethod
    def of(cls, dataset: str, ids: Iterable[int], train_size: int | None, seed: int) -> TrainSubset:
        ids = [int(i) for i in ids]
        return cls(dataset, train_size, int(seed), len(ids), ids_sha256(ids))

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "train_size": self.train_size,
            "seed": self.seed,
            "n_train": self.n_train,
            "ids_sha256": self.ids_sha256,
        }

    @classmethod
    def from_dict(cls, raw: Any, source: str) -> TrainSubset:
        """Validated: a malformed record is one line naming `source`."""
        if not isinstance(raw, dict):
            raise _bad(source, "train_subset is not an object")
        size = raw.get("train_size")
        if size is not None and not is_int(size, 1):
            raise _bad(source, f"train_size {size!r} is not a positive integer")
        if not isinstance(raw.get("dataset"), str) or not raw["dataset"]:
            raise _bad(source, "train_subset has no dataset name")
        for key in ("seed", "n_train"):
            if not is_int(raw.get(key), 0):
                raise _bad(source, f"train_subset {key} {raw.get(key)!r} is not a non-negative integer")
        if not isinstance(raw.get("ids_sha256"), str) or not _SHA.fullmatch(raw["ids_sha256"]):
            raise _bad(source, "train_subset ids_sha256 is not a SHA-256 hex digest")
        return cls(raw["dataset"], size, raw["seed"], raw["n_train"], raw["ids_sha256"])


@dataclass(frozen=True)
class DeletionHistory:
    """Every sample id forgotten by the requests that led to a checkpoint (sorted, distinct), how many requests
    there were, and the weights hash each request started from (oldest first; a model retrained without the ids
    has none)."""

    forgotten_ids: tuple[int, ...] = ()
    requests: int = 0
    parents: tuple[str, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return not self.forgotten_ids and self.requests == 0

    @property
    def sha256(self) -> str:
        return ids_sha256(self.forgotten_ids)

    @classmethod
    def of_retraining(cls, train_ids: Iterable[int], trained_ids: Iterable[int]) -> DeletionHistory:
        """A model trained from scratch on `trained_ids` out of the training set `train_ids`: the ids left out
        count as forgotten by one request with no parent weights (empty when none was left out)."""
        left_out = set(int(i) for i in train_ids) - set(int(i) for i in trained_ids)
        return cls().add(left_out, None) if left_out else cls()

    def add(self, forget_ids: Iterable[int], parent_sha256: str | None) -> DeletionHistory:
        """The history after one more request that forgot `forget_ids` from weights with hash `parent_sha256`
        (None for a model retrained without them)."""
        ids = tuple(sorted(set(self.forgotten_ids) | {int(i) for i in forget_ids}))
        return DeletionHistory(ids, self.requests + 1, (*self.parents, *([parent_sha256] if parent_sha256 else [])))

    def to_metadata(self) -> dict[str, Any]:
        return {
            "forgotten_ids": encode_ids(self.forgotten_ids),
            "forgotten_count": len(self.forgotten_ids),
            "forgotten_sha256": self.sha256,
            "requests": self.requests,
            "parents": list(self.parents),
        }

    @classmethod
    def from_metadata(cls, md: dict[str, Any], source: str) -> DeletionHistory:
        count, requests = md.get("forgotten_count"), md.get("requests")
        if not is_int(count, 0) or count > MAX_IDS:
            raise _bad(source, f"forgotten_count {count!r} is not an integer in 0..{MAX_IDS:,}")
        if not is_int(requests, 0):
            raise _bad(source, f"requests {requests!r} is not a non-negative integer")
        if not isinstance(md.get("forgotten_ids"), str):
            raise _bad(source, "forgotten_ids is not encoded text")
        ids = decode_ids(md["forgotten_ids"], count, source)
        if ids_sha256(ids) != md.get("forgotten_sha256"):
            raise _bad(source, "the forgotten ids do not match their recorded SHA-256")
        return cls(ids, requests, _parents(md.get("parents"), source))

    def to_dict(self) -> dict[str, Any]:
        """The sidecar's mirror (readable ids)."""
        return {
            "forgotten_ids": list(self.forgotten_ids),
            "forgotten_ids_sha256": self.sha256,
            "requests": self.requests,
            "parents": list(self.parents),
        }

    @classmethod
    def from_sidecar(cls, meta: dict[str, Any], source: str) -> DeletionHistory:
        """A sidecar's `forgotten_ids` (a list of integer ids; anything else is one line) and request count."""
        raw = meta.get("forgotten_ids")
        if raw is None:
            return cls()
        ids = _id_list(raw, source, "forgotten_ids")
        entries = meta.get("deletion_history")
        requests = meta.get("requests", (len(entries) if isinstance(entries, list) else 0) or (1 if ids else 0))
        if not is_int(requests, 0):
            raise _bad(source, f"requests {requests!r} is not a non-negative integer")
        return cls(tuple(sorted(set(ids))), requests, _parents(meta.get("parents", []), source))


@dataclass(frozen=True)
class CheckpointRecord:
    """A checkpoint's deletion history and training subset, and where they were read from ("weights",
    "sidecar" for a checkpoint written before the weights carried them, or "none")."""

    history: DeletionHistory
    train_subset: TrainSubset | None
    source: str


def report_record(history: DeletionHistory, train_subset: TrainSubset | None, input_source: str) -> dict[str, Any]:
    """What a report mirrors: the output's deletion history and training subset, and where the input
    checkpoint's history came from ("weights", "sidecar", or "none": the input carried no history)."""
    return {
        "deletion_record": {**history.to_dict(), "input_source": input_source},
        "train_subset": train_subset.to_dict() if train_subset is not None else None,
    }


def record_metadata(history: DeletionHistory, train_subset: TrainSubset | None) -> dict[str, str]:
    """The safetensors header metadata for `history` and `train_subset`."""
    record = {"format": FORMAT, **history.to_metadata()}
    record["train_subset"] = train_subset.to_dict() if train_subset is not None else None
    return {KEY: json.dumps(record, sort_keys=True, separators=(",", ":"))}


def record_from(md: dict[str, str], sidecar: dict[str, Any], path: str | Path) -> CheckpointRecord:
    """The record of the checkpoint at `path` from its header metadata `md` and its sidecar; warns when they
    disagree (the weights file wins)."""
    source = f"checkpoint {path}"
    if KEY in md:
        try:
            record = json.loads(md[KEY])
        except ValueError as exc:
            raise _bad(source, f"it is not valid JSON ({exc})") from exc
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            found = record.get("format") if isinstance(record, dict) else None
            raise _bad(source, f"its record format {found!r} is not {FORMAT!r}; upgrade lotus-unlearn")
        history = DeletionHistory.from_metadata(record, source)
        raw = record.get("train_subset")
        subset = TrainSubset.from_dict(raw, source) if raw is not None else None
        _compare(history, subset, sidecar, path)
        return CheckpointRecord(history, subset, "weights")
    history = DeletionHistory.from_sidecar(sidecar, f"{source}'s sidecar")
    raw_subset = sidecar.get("train_subset")
    subset = TrainSubset.from_dict(raw_subset, f"{source}'s sidecar") if raw_subset is not None else None
    found = not history.empty or subset is not None
    return CheckpointRecord(history, subset, "sidecar" if found else "none")


def _compare(history: DeletionHistory, subset: TrainSubset | None, sidecar: dict[str, Any], path: str | Path) -> None:
    """Warn (one line) where the sidecar's mirror differs from the weights file's record."""
    differs = []
    if sidecar.get("forgotten_ids") is not None:
        try:
            mirrored = set(_id_list(sidecar["forgotten_ids"], "", "forgotten_ids"))
        except UserError:
            mirrored = None
        if mirrored != set(history.forgotten_ids):
            n = "unreadable" if mirrored is None else len(mirrored)
            differs.append(f"forgotten ids ({n} in the sidecar, {len(history.forgotten_ids)} in the weights)")
    if sidecar.get("train_subset") is not None and subset is not None and sidecar["train_subset"] != subset.to_dict():
        differs.append("training subset")
    if differs:
        warnings.warn(
            f"checkpoint {path}: the sidecar's {' and '.join(differs)} disagree with the weights file; "
            "using the weights file's record",
            HistoryWarning,
            stacklevel=3,
        )


def encode_ids(ids: Iterable[int]) -> str:
    """Sorted distinct int64 ids as text: deltas, zlib, base64 (about 1-2 bytes per id for dense sets)."""
    arr = np.unique(np.asarray(list(ids), dtype=np.int64))
    deltas = np.diff(arr, prepend=np.int64(0)).astype("<i8")
    return base64.b64encode(zlib.compress(deltas.tobytes(), 9)).decode("ascii")


def decode_ids(text: str, count: int, source: str) -> tuple[int, ...]:
    """Inverse of `encode_ids` for exactly `count` ids; never inflates beyond `count` ids' bytes."""
    try:
        packed = base64.b64decode(text.encode("ascii"), validate=True)
        inflate = zlib.decompressobj()
        raw = inflate.decompress(packed, 8 * count + 1)
    except (binascii.Error, zlib.error, UnicodeEncodeError, ValueError) as exc:
        raise _bad(source, f"the forgotten ids cannot be decoded ({exc})") from exc
    if len(raw) != 8 * count or inflate.unconsumed_tail or not inflate.eof:
        raise _bad(source, f"the forgotten ids do not hold the recorded {count} ids")
    deltas = np.frombuffer(raw, dtype="<i8")
    if count and (deltas[0] < 0 or (deltas[1:] <= 0).any()):
        raise _bad(source, "the forgotten ids are not sorted distinct non-negative ids")
    return tuple(int(i) for i in np.cumsum(deltas))


def _id_list(raw: Any, source: str, what: str) -> list[int]:
    if not isinstance(raw, list) or not all(is_int(i, 0) for i in raw):
        raise _bad(source, f"{what} is not a list of non-negative integer sample ids")
    if len(raw) > MAX_IDS:
        raise _bad(source, f"{what} lists more than {MAX_IDS:,} ids")
    return list(raw)


def _parents(raw: Any, source: str) -> tuple[str, ...]:
    if (
        not isinstance(raw, list)
        or len(raw) > 1 << 20
        or not all(isinstance(p, str) and _SHA.fullmatch(p) for p in raw)
    ):
        raise _bad(source, "parents is not a list of SHA-256 weights hashes")
    return tuple(raw)


def _bad(source: str, what: str) -> UserError:
    return UserError(f"{source} has a malformed deletion record: {what}; restore the file written by lotus-unlearn")
