"""Forget / retain splits as lists of stable sample ids; saved as JSON and loaded back identically."""

from __future__ import annotations

import io
import json
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lotus_unlearn.data.base import TensorData
from lotus_unlearn.errors import UserError
from lotus_unlearn.utils import ids_sha256, is_int, write_json_atomic


@dataclass
class Split:
    """Which training samples to forget. `kind` is "instance" or "class"; retain = train minus forget."""

    forget_ids: list[int]
    kind: str = "instance"
    classes: list[int] = field(default_factory=list)
    description: str = ""

    @property
    def sha256(self) -> str:
        """SHA-256 of the sorted forget ids, one per line: identifies the deletion request."""
        return ids_sha256(self.forget_ids)

    def apply(self, train: TensorData) -> tuple[TensorData, TensorData]:
        """(forget, retain) subsets of `train`."""
        forget_mask = np.isin(train.ids.numpy(), np.asarray(self.forget_ids, dtype=np.int64))
        if forget_mask.sum() != len(self.forget_ids):
            missing = sorted(set(self.forget_ids) - set(train.ids.tolist()))[:5]
            raise UserError(f"forget ids {missing} are not in the training set ({describe_ids(train.ids.tolist())})")
        if forget_mask.all():
            raise UserError("the forget set covers every training sample, so nothing is left to retain")
        return train.subset(np.flatnonzero(forget_mask)), train.subset(np.flatnonzero(~forget_mask))


def instance_split(train: TensorData, fraction: float, seed: int, mode: str = "random") -> Split:
    """Forget `fraction` of each class: a seeded random sample (default) or the first ids (`first_k`, as the
    reference code does, independent of the seed)."""
    if not 0.0 < fraction < 1.0:
        raise UserError(f"forget fraction must be in (0, 1), got {fraction}")
    if mode not in ("random", "first_k"):
        raise UserError(f"split mode {mode!r} is unknown; pass random or first_k")
    rng = np.random.default_rng(seed)
    labels, ids = train.labels.numpy(), train.ids.numpy()
    forget: list[int] = []
    for c in np.unique(labels):
        members = ids[labels == c]
        k = max(1, round(fraction * len(members)))
        chosen = np.sort(members)[:k] if mode == "first_k" else rng.choice(members, size=k, replace=False)
        forget.extend(int(i) for i in chosen)
    desc = f"{fraction:.0%} of each class ({mode}, seed {seed})"
    return Split(sorted(forget), "instance", [], desc)


def first_split(train: TensorData, count: int) -> Split:
    """Forget the `count` training samples with the smallest ids, whatever their class: the LoTUS code's MUFAC
    rule (the first 1,062 rows of the training CSV). Independent of the seed."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UserError(f"forget count must be a whole number >= 1, got {count!r}")
    if count >= len(train):
        raise UserError(
            f"forget count {count} leaves nothing to retain: the training set has {len(train)} samples; "
            "pass a smaller count"
        )
    forget = np.sort(train.ids.numpy())[:count]
    return Split([int(i) for i in forget], "instance", [], f"the first {count} training ids")


def class_split(train: TensorData, classes: list[int]) -> Split:
    """Forget every training sample of the given classes."""
    labels = train.labels.numpy()
    forget = train.ids.numpy()[np.isin(labels, classes)]
    if len(forget) == 0:
        raise UserError(f"no training samples of classes {classes}; check the class index or name")
    return Split(sorted(int(i) for i in forget), "class", sorted(classes), f"all samples of classes {classes}")


def describe_ids(ids: list[int]) -> str:
    """Which ids a training set holds, in words: a range when contiguous, else its size and bounds."""
    if not ids:
        return "no samples"
    low, high = min(ids), max(ids)
    if high - low + 1 == len(ids):
        return f"{len(ids)} samples, ids {low}..{high}"
    return f"{len(ids)} samples, ids between {low} and {high} with gaps"


def ids_split(train: TensorData, ids: list[int], listing: str | None = None) -> Split:
    """A user's own forget list; checks it names existing, distinct samples and leaves something to retain.
    `listing`: the command that lists the valid ids, named when an id is not a training sample."""
    if not ids:
        raise UserError("the forget list is empty; give at least one training sample id")
    seen: set[int] = set()
    dup = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
    if dup:
        raise UserError(f"the forget list repeats ids {sorted(set(dup))[:5]}; list each sample once")
    train_ids = train.ids.tolist()
    known = set(train_ids)
    bad = [i for i in ids if i not in known]
    if bad:
        where = f"; list them with `{listing}`" if listing else ""
        raise UserError(
            f"forget ids {bad[:5]} are not in the training set ({describe_ids(train_ids)}; ids are positions in "
            f"the dataset's full training file){where}"
        )
    if len(ids) >= len(known):
        raise UserError("the forget list covers every training sample, so nothing is left to retain")
    return Split(sorted(ids), "instance", [], f"{len(ids)} ids from a user list")


MAX_IDS_FILE_BYTES = 64 << 20
MAX_FORGET_IDS = 2_000_000  # more than any training set the library loads (ImageNet-1k: 1.28 M)


def read_ids_file(path: str | Path) -> list[int]:
    """One integer id per line; blank lines and `#` comments are ignored. Bounded: a file over
    `MAX_IDS_FILE_BYTES` or `MAX_FORGET_IDS` lines, a binary file or one without ids is one line, read in at most
    about 8 bytes per id."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"forget list {path} does not exist; pass a text file with one sample id per line")
    with open(path, "rb") as f:
        data = f.read(MAX_IDS_FILE_BYTES + 1)
    if len(data) > MAX_IDS_FILE_BYTES:
        raise UserError(
            f"forget list {path} is over {MAX_IDS_FILE_BYTES >> 20} MiB; an ids file holds at most "
            f"{MAX_FORGET_IDS:,} ids, one per line"
        )
    if data.count(b"\n") > MAX_FORGET_IDS:
        raise UserError(f"forget list {path} has over {MAX_FORGET_IDS:,} lines; forget at most that many ids at once")
    if b"\0" in data:
        raise UserError(f"forget list {path} is a binary file; write one sample id per line as text")
    ids = array("q")
    for n, raw in enumerate(io.BytesIO(data), 1):
        try:
            text = raw.decode("utf-8").split("#", 1)[0].strip()
        except UnicodeDecodeError:
            raise UserError(f"{path}:{n}: not UTF-8 text; write one sample id per line as text") from None
        if not text:
            continue
        try:
            ids.append(int(text))
        except (ValueError, OverflowError):
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise UserError(f"{path}:{n}: {shown!r} is not an integer sample id; write one id per line") from None
    if not ids:
        raise UserError(f"forget list {path} holds no ids; write one training sample id per line")
    return ids.tolist()


def save_split(split: Split, path: str | Path) -> None:
    write_json_atomic(path, {**asdict(split), "sha256": split.sha256})


SPLIT_KINDS = ("instance", "class")


def load_split(path: str | Path) -> Split:
    """A split file written by `save_split`: its kind known, its ids a list of sample ids, and its recorded
    SHA-256 (when present) that of those ids; anything else is one line."""
    fix = "write it with lotus_unlearn.data.save_split (or use the split.json of `unlearn`)"
    try:
        raw = json.loads(Path(path).read_text())
        ids = raw["forget_ids"]
        if not isinstance(ids, list) or not all(is_int(i) for i in ids):
            raise TypeError("forget_ids is not a list of integer sample ids")
        split = Split(list(ids), raw["kind"], list(raw.get("classes", [])), raw.get("description", ""))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read split file {path}: {exc}; {fix}") from exc
    if split.kind not in SPLIT_KINDS:
        raise UserError(f"split file {path} has kind {split.kind!r}, not one of {', '.join(SPLIT_KINDS)}; {fix}")
    if "sha256" in raw and raw["sha256"] != split.sha256:
        raise UserError(f"split file {path}: its sha256 does not match its forget_ids (edited or corrupt); {fix}")
    return split
