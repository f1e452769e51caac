"""Small shared helpers: seeding, devices, hashing, atomic writes, provenance."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import platform
import random
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lotus_unlearn._version import __version__
from lotus_unlearn.errors import UserError


def is_int(value: Any, minimum: int | None = None) -> bool:
    """`value` is an int (a bool is not), at least `minimum` when given: the check for numbers read from files."""
    return isinstance(value, int) and not isinstance(value, bool) and (minimum is None or value >= minimum)


def is_number(value: Any) -> bool:
    """`value` is an int or a float (a bool is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def short_repr(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, for naming a bad value in a one-line error."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator seeded the same way for data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; anything else is passed to torch.device."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"device {device!r} is not a device name; pass auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} was asked for but CUDA is not available; pass --device cpu or auto")
    return dev


# Inference batch sizes: large batches feed an accelerator; on CPU the activations of 1024 images overflow the
# caches and every image costs 1.4-1.5x more than at 128 (benchmarks/eval_tuning.py, docs/performance.md).
CPU_EVAL_BATCH = 128
ACCELERATOR_EVAL_BATCH = 1024


def eval_batch_size(device: torch.device, requested: int | None = None) -> int:
    """`requested`, or the fastest inference batch size for the device type: 128 on CPU, 1024 on CUDA / MPS."""
    if requested is not None:
        if requested < 1:
            raise UserError(f"inference batch size must be >= 1, got {requested}; pass a positive batch size")
        return requested
    return CPU_EVAL_BATCH if device.type == "cpu" else ACCELERATOR_EVAL_BATCH


def use_bf16(device: torch.device, enabled: bool | None = None) -> bool:
    """The one rule for mixed precision in training, unlearning and inference: bf16 autocast when `enabled`
    is True; when it is None (auto), on CUDA only; never when False."""
    return device.type == "cuda" if enabled is None else bool(enabled)


def autocast(device: torch.device, enabled: bool | None = None) -> contextlib.AbstractContextManager:
    """bf16 autocast where `use_bf16` says so, else a no-op context."""
    if not use_bf16(device, enabled):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def has_conv2d(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def is_channels_last(model: torch.nn.Module) -> bool:
    """Whether the model's first 4-D weight is stored channels_last (NHWC) and not also plain contiguous."""
    for p in model.parameters():
        if p.dim() == 4:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


def speed_setup(
    model: torch.nn.Module, device: torch.device, *, channels_last: bool | None = None, compile: bool = False
) -> torch.nn.Module:
    """Speed settings for a model that training or a method owns (a private copy), changed in place.

    channels_last (NHWC) weights for conv models (`None`: on when the model has a Conv2d): convolutions and
    pooling then run in NHWC on CPU (oneDNN; 3x faster eval forwards for the small CNN, see docs/performance.md)
    and on CUDA (tensor cores). cudnn.benchmark on CUDA. `compile=True` compiles the module in place
    (`compile_in_place`, so state_dict keys are unchanged). Numerics differ from NCHW only in float rounding.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if has_conv2d(model) if channels_last is None else channels_last:
        model.to(memory_format=torch.channels_last)
    if compile:
        compile_in_place(model)
    return model


def compile_in_place(model: torch.nn.Module, **options: Any) -> torch.nn.Module:
    """`torch.compile` the module's calls in place, as `nn.Module.compile` does (state_dict keys unchanged; copies
    and pickles of the module are eager, torch drops the compiled call from their state), but entering through a
    frame of ours. `nn.Module.compile` alone captures nothing, silently, when the forward lives in torch itself
    (`nn.Sequential`, a bare `nn.Conv2d`): Dynamo skips frames that start in torch's files (pytorch issue 150915,
    still so in torch 2.13). `options` go to `torch.compile`."""
    call = model._call_impl

    def entry(*args: Any, **kwargs: Any) -> Any:
        return call(*args, **kwargs)

    model._compiled_call_impl = torch.compile(entry, **options)
    return model


_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)


def glibc() -> bool:
    """Whether this process runs on Linux with glibc (the C library whose allocator `tune_cpu_allocator` sets)."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def tune_cpu_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Keep freed tensor buffers in the process's heap instead of returning them to the OS after every step.

    glibc's allocator often hands the few-MiB activation buffers of a CPU training step back to the kernel when
    they are freed and page-faults them in again (zero-filled) at the next step: up to ~1M page faults per
    `benchmarks/allocator.py` child process, 4-13% of the median run time there (docs/performance.md). Fixed
    thresholds (buffers up to `mmap_threshold` come from the heap; the heap is trimmed only once `trim_threshold`
    bytes are free at its top) remove that churn, keeping up to `trim_threshold` bytes of freed memory resident.
    Process-wide, so the command line calls it and library users opt in. Does nothing (returns False) off glibc,
    when one of the MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_, MALLOC_MMAP_MAX_ variables is
    set, or with LOTUS_TUNE_MALLOC=0; returns True when applied.
    """
    if os.environ.get("LOTUS_TUNE_MALLOC", "1") == "0" or any(k in os.environ for k in _MALLOC_ENV):
        return False
    if not glibc():
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) and mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_tensor_into(h: Any, t: torch.Tensor) -> None:
    """Feed the shape, dtype and raw bytes of `t` to the hashlib object `h`, without copying a contiguous CPU
    tensor (0-dim tensors included). The one byte format of every tensor and weights hash in the package."""
    t = t.detach()
    h.update(f"{tuple(t.shape)}{t.dtype};".encode())
    if t.numel():
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


# Version of `state_dict_hash`'s byte format, recorded beside every weights hash: hashes of another format (those
# of lotus-unlearn 0.x sidecars hashed each tensor's hex digest) are not comparable and are treated as unknown.
WEIGHTS_HASH_FORMAT = 2


def state_dict_hash(model: torch.nn.Module | dict[str, torch.Tensor], salt: str = "") -> str:
    """Hash of a model's (or a state_dict's) weights and buffers, in key order; `salt` starts the stream."""
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    h = hashlib.sha256(salt.encode())
    for key, value in sorted(state.items()):
        h.update(key.encode())
        hash_tensor_into(h, value)
    return h.hexdigest()


def ids_sha256(ids: Any) -> str:
    """SHA-256 of a set of sample ids: sorted, one per line (identifies a forget set or a training subset)."""
    return sha256_bytes("\n".join(str(int(i)) for i in sorted(int(i) for i in ids)).encode())


def config_hash(obj: Any) -> str:
    """Short hash of a JSON-serialisable config, for cache keys."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, owned by someone else
        return True
    return True


def _tmp_prefix(path: Path) -> str:
    host = "".join(c for c in platform.node() if c.isalnum() or c == "-")[:32] or "host"
    return f".{path.name}.{host}.{os.getpid()}."


def _sweep_stale(path: Path) -> None:
    """Delete temporary files that a killed writer (SIGKILL, power loss) of `path` on this host left behind."""
    if os.name != "posix":
        return
    own = _tmp_prefix(path)
    host_prefix = own[: own.rindex(".", 0, -1) + 1]  # ".NAME.HOST."
    for stale in path.parent.glob(glob.escape(host_prefix) + "*.tmp"):
        pid = stale.name[len(host_prefix) :].split(".", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    The file is fsynced before the rename and gets the usual umask permissions. Temporary files of writers of
    `path` that were killed (so could not clean up) are removed first.
    """
    path = Path(path)
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise UserError(f"cannot write {path}: its parent {parent} is a file; choose another output path")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise UserError(f"cannot write {path}: a parent folder is a file; choose another output path") from exc
    except OSError as exc:
        raise UserError(f"cannot create folder {parent}: {exc.strerror}; choose another output path") from exc
    _sweep_stale(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=parent)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}; free space or choose another path") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp (and some writers' own temp files) make 0600
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}; free space or choose another path") from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict[str, Any]:
    """Versions and machine facts recorded with every result."""
    import sklearn

    return {
        "lotus_unlearn": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
    }
