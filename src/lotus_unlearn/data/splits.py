"""Forget / retain splits as lists of stable sample ids; saved as JSON and loaded back identically."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lotus_unlearn.data.base import TensorData
from lotus_unlearn.errors import UserError
from lotus_unlearn.utils import sha256_bytes, write_json_atomic


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
        return sha256_bytes("\n".join(str(i) for i in sorted(self.forget_ids)).encode())

    def apply(self, train: TensorData) -> tuple[TensorData, TensorData]:
        """(forget, retain) subsets of `train`."""
        forget_mask = np.isin(train.ids.numpy(), np.asarray(self.forget_ids, dtype=np.int64))
        if forget_mask.sum() != len(self.forget_ids):
            missing = sorted(set(self.forget_ids) - set(train.ids.tolist()))[:5]
            raise UserError(f"forget ids {missing} are not training sample ids; use ids 0..{int(train.ids.max())}")
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


def class_split(train: TensorData, classes: list[int]) -> Split:
    """Forget every training sample of the given classes."""
    labels = train.labels.numpy()
    forget = train.ids.numpy()[np.isin(labels, classes)]
    if len(forget) == 0:
        raise UserError(f"no training samples of classes {classes}; check the class index or name")
    return Split(sorted(int(i) for i in forget), "class", sorted(classes), f"all samples of classes {classes}")


def ids_split(train: TensorData, ids: list[int]) -> Split:
    """A user's own forget list; checks it names existing, distinct samples and leaves something to retain."""
    if not ids:
        raise UserError("the forget list is empty; give at least one training sample id")
    seen: set[int] = set()
    dup = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
    if dup:
        raise UserError(f"the forget list repeats ids {sorted(set(dup))[:5]}; list each sample once")
    known = set(train.ids.tolist())
    bad = [i for i in ids if i not in known]
    if bad:
        raise UserError(f"forget ids {bad[:5]} are out of range; training sample ids are 0..{max(known)}")
    if len(ids) >= len(known):
        raise UserError("the forget list covers every training sample, so nothing is left to retain")
    return Split(sorted(ids), "instance", [], f"{len(ids)} ids from a user list")


def read_ids_file(path: str | Path) -> list[int]:
    """One integer id per line; blank lines and `#` comments are ignored."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"forget list {path} does not exist; pass a text file with one sample id per line")
    ids = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            ids.append(int(text))
        except ValueError:
            raise UserError(f"{path}:{n}: {text!r} is not an integer sample id; write one id per line") from None
    return ids


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
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise TypeError("forget_ids is not a list of integer sample ids")
        split = Split(list(ids), raw["kind"], list(raw.get("classes", [])), raw.get("description", ""))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read split file {path}: {exc}; {fix}") from exc
    if split.kind not in SPLIT_KINDS:
        raise UserError(f"split file {path} has kind {split.kind!r}, not one of {', '.join(SPLIT_KINDS)}; {fix}")
    if "sha256" in raw and raw["sha256"] != split.sha256:
        raise UserError(f"split file {path}: its sha256 does not match its forget_ids (edited or corrupt); {fix}")
    return split
