"""All-or-nothing output folders: one whole generation visible after a kill at any step or a full disk, earlier
generations kept, readers refusing a folder that does not match its manifest."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from lotus_unlearn.cli import main
from lotus_unlearn.errors import UserError
from lotus_unlearn.outputs import MANIFEST, check_output, generations_dir, new_generation, verify_output

FILES = ("model.safetensors", "split.json", "report.json", "report.html")


def write_run(folder: Path, tag: str) -> None:
    for name in FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(f"{tag}: {name}\n")


def generation_of(out: Path) -> str:
    """The one generation visible at `out`: every file checked against the manifest and from the same run."""
    assert verify_output(out) is not None
    tags = {(out / name).read_text().split(":")[0] for name in FILES}
    assert len(tags) == 1, tags
    return tags.pop()


def publish(out: Path, tag: str, overwrite: bool = False) -> None:
    with new_generation(out, overwrite) as gen:
        write_run(gen.path, tag)


def test_a_run_is_published_as_a_verified_generation(tmp_path: Path) -> None:
    out = tmp_path / "req"
    publish(out, "one")
    assert out.is_symlink() and generation_of(out) == "one"
    manifest = json.loads((out / MANIFEST).read_text())
    assert sorted(manifest["files"]) == sorted(FILES) and manifest["previous"] is None
    assert [p.name for p in generations_dir(out).iterdir()] == ["g0001"]


def test_an_existing_run_is_refused_then_kept_by_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "req"
    publish(out, "one")
    with pytest.raises(UserError, match="already holds a run; pass --overwrite"):
        publish(out, "two")
    assert generation_of(out) == "one" and len(list(generations_dir(out).iterdir())) == 1
    publish(out, "two", overwrite=True)
    assert generation_of(out) == "two"
    first = generations_dir(out) / "g0001"
    assert generation_of(first) == "one"  # never deleted
    previous = json.loads((out / MANIFEST).read_text())["previous"]
    assert previous["path"] == "g0001" and previous["manifest_sha256"] is not None


def test_a_legacy_folder_is_moved_into_the_history(tmp_path: Path) -> None:
    out = tmp_path / "req"
    out.mkdir()
    (out / "report.json").write_text("old\n")
    with pytest.raises(UserError, match="already holds a run"):
        check_output(out)
    publish(out, "new", overwrite=True)
    assert generation_of(out) == "new"
    assert (generations_dir(out) / "legacy-g0001" / "report.json").read_text() == "old\n"


def test_an_empty_folder_is_used(tmp_path: Path) -> None:
    (tmp_path / "req").mkdir()
    publish(tmp_path / "req", "one")
    assert generation_of(tmp_path / "req") == "one"


def test_a_folder_of_other_files_is_never_moved(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(UserError, match="holds files that no lotus-unlearn run wrote"):
            check_output(tmp_path / "project", overwrite)
    with pytest.raises(UserError, match="names no folder"):
        check_output(Path("."), overwrite=True)
    assert (tmp_path / "project" / "notes.txt").read_text() == "mine"


def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        check_output(tmp_path / "file", overwrite=True)
    with pytest.raises(UserError, match="is a file"):
        check_output(tmp_path / "file" / "req")


@pytest.mark.parametrize(
    "tamper, fragment",
    [
        (lambda out: (out / "split.json").write_text("other\n"), "split.json does not match"),
        (lambda out: (out / "report.json").unlink(), "report.json is missing"),
        (lambda out: (out / "extra.txt").write_text("x"), "extra.txt is not in its manifest"),
        (lambda out: (out / MANIFEST).write_text("{"), "unreadable manifest.json"),
    ],
)
def test_readers_refuse_a_folder_that_does_not_match(tmp_path: Path, tamper, fragment: str) -> None:
    out = tmp_path / "req"
    publish(out, "one")
    verify_output(out)  # verified once: a later change is still seen
    target = out.resolve()
    tamper(target)
    with pytest.raises(UserError, match=fragment) as info:
        verify_output(out)
    assert "\n" not in str(info.value)


# --- faults: a kill at every step, a full disk ----------------------------------------------------------------------

STEPS = ("rename", "replace", "symlink")


def fault_at_step(monkeypatch, k: int, fault, when: str = "before") -> None:
    """Call `fault()` at the k-th filesystem step of the writer (rename, replace or symlink), before or after it."""
    count = [0]
    for name in STEPS:
        real = getattr(os, name)

        def step(*args, _real=real, **kwargs):
            count[0] += 1
            if count[0] == k and when == "before":
                fault()
            result = _real(*args, **kwargs)
            if count[0] == k and when == "after":
                fault()
            return result

        monkeypatch.setattr(os, name, step)


def _kill() -> None:
    os._exit(9)  # as a kill -9: no cleanup, no exception handlers


def _enospc() -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked writer")
@pytest.mark.parametrize("legacy", [False, True], ids=["generation", "legacy folder"])
def test_a_kill_at_any_step_leaves_exactly_one_whole_generation(tmp_path: Path, monkeypatch, legacy: bool) -> None:
    seen = set()
    for k in range(1, 40):
        for when in ("before", "after"):
            out = tmp_path / f"req-{k}-{when}"
            if legacy:
                out.mkdir()
                write_run(out, "one")
            else:
                publish(out, "one")
            pid = os.fork()
            if pid == 0:  # the writer, killed at step k
                fault_at_step(monkeypatch, k, _kill, when)
                publish(out, "two", overwrite=True)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            if legacy and not out.exists():
                check_output(out, overwrite=True)  # the next access finishes the interrupted swap
            tag = generation_of(out) if not legacy or out.is_symlink() else _legacy_tag(out)
            assert tag in ("one", "two"), (k, when)
            seen.add(tag)
            publish(out, "three", overwrite=True)  # and the next writer works, sweeping the killed one's folder
            assert generation_of(out) == "three"
            assert not [p for p in generations_dir(out).iterdir() if p.name.startswith(".tmp-")]
            if code == 0:
                assert tag == "two"
                assert seen == {"one", "two"}
                return
    pytest.fail("the writer never finished")


def _legacy_tag(out: Path) -> str:
    """A legacy folder (no manifest) still in place: all its files from the one earlier run."""
    tags = {(out / name).read_text().split(":")[0] for name in FILES}
    assert len(tags) == 1 and not (out / MANIFEST).exists()
    return tags.pop()


@pytest.mark.parametrize("k", range(1, 7))
def test_a_full_disk_at_any_step_keeps_the_previous_generation(tmp_path: Path, monkeypatch, k: int) -> None:
    out = tmp_path / "req"
    publish(out, "one")
    fault_at_step(monkeypatch, k, _enospc)
    try:
        publish(out, "two", overwrite=True)
    except UserError as exc:
        assert "No space left on device" in str(exc)
    monkeypatch.undo()
    assert generation_of(out) in ("one", "two")
    assert not [p for p in generations_dir(out).iterdir() if p.name.startswith(".tmp-")]


def test_a_full_disk_while_writing_files_keeps_the_previous_generation(tmp_path: Path) -> None:
    out = tmp_path / "req"
    publish(out, "one")
    with pytest.raises(UserError, match="No space left"), new_generation(out, overwrite=True) as gen:
        write_run(gen.path, "two")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert generation_of(out) == "one"
    assert [p.name for p in generations_dir(out).iterdir()] == ["g0001"]


# --- the command line -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("outputs") / "m.safetensors"
    args = ["train", "--dataset", "digits", "--model-arg", "width=4", "--model-arg", "hidden=16", "--train-size",
            "300", "--epochs", "1", "--device", "cpu", "--out", str(path)]  # fmt: skip
    assert main(args) == 0
    return path


def unlearn(ckpt: Path, out: Path, *extra: str) -> list[str]:
    return ["unlearn", "--checkpoint", str(ckpt), "--dataset", "digits", "--device", "cpu", "--hparam", "epochs=1",
            "--forget-fraction", "0.1", "--out", str(out), *extra]  # fmt: skip


def last_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_cli_outputs_are_never_lost(ckpt: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "req"
    assert main(unlearn(ckpt, out)) == 0
    first = (out / "report.json").read_bytes()
    capsys.readouterr()
    assert main(unlearn(ckpt, out, "--seed", "1")) == 2
    assert "already holds a run; pass --overwrite" in last_line(capsys)
    assert (out / "report.json").read_bytes() == first
    assert main(unlearn(ckpt, out, "--seed", "1", "--overwrite")) == 0
    assert (out / "report.json").read_bytes() != first
    entry = json.loads((out / "model.json").read_text())["deletion_history"][-1]
    assert entry["report"] == str(out.resolve() / "report.json")  # the generation's own report, not the link
    assert (generations_dir(out) / "g0001" / "report.json").read_bytes() == first
    capsys.readouterr()
    assert main(["report", str(out)]) == 0  # a re-render is a new generation too
    assert verify_output(out)["generation"] == 3
    (out.resolve() / "split.json").write_text("{}")
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    assert "split.json does not match" in last_line(capsys)
    assert main(unlearn(out / "model.safetensors", tmp_path / "next")) == 2  # a follow-up request too
    assert "split.json does not match" in last_line(capsys)
    assert not (tmp_path / "next").exists()
    (tmp_path / "file").write_text("x")
    assert main(unlearn(ckpt, tmp_path / "file")) == 2
    assert "is a file" in last_line(capsys)


def test_python_readers_check_the_manifest(tmp_path: Path) -> None:
    import torch

    from lotus_unlearn.checkpoint import load_checkpoint, read_record, save_checkpoint

    model = torch.nn.Linear(3, 2)
    out = tmp_path / "req"
    with new_generation(out) as gen:
        save_checkpoint(model, gen.path / "model.safetensors")
        (gen.path / "report.json").write_text("{}")
    assert gen.final == out.resolve()
    load_checkpoint(out / "model.safetensors", torch.nn.Linear(3, 2))
    (out.resolve() / "report.json").write_text('{"changed": 1}')
    for read in (lambda p: load_checkpoint(p, torch.nn.Linear(3, 2)), read_record):
        with pytest.raises(UserError, match=r"report\.json does not match"):
            read(out / "model.safetensors")


def test_train_keeps_an_existing_checkpoint(ckpt: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.safetensors"
    weights, sidecar = ckpt.read_bytes(), ckpt.with_suffix(".json").read_bytes()
    out.write_bytes(weights)
    out.with_suffix(".json").write_bytes(sidecar)
    train = ["train", "--dataset", "digits", "--model-arg", "width=4", "--model-arg", "hidden=16", "--train-size",
             "300", "--epochs", "1", "--seed", "1", "--device", "cpu", "--out", str(out)]  # fmt: skip
    capsys.readouterr()
    assert main(train) == 2
    line = last_line(capsys)
    assert "m.safetensors already exists; pass --overwrite (the earlier file is kept as" in line
    assert "m.prev-1.safetensors) or choose another --out" in line
    assert out.read_bytes() == weights and sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    out.unlink()  # a sidecar alone is a checkpoint too: refused the same way
    assert main(train) == 2
    assert "m.json already exists; pass --overwrite (the earlier file is kept as" in (line := last_line(capsys))
    assert "m.prev-1.json) or choose another --out" in line
    out.write_bytes(weights)
    for n in (1, 2):
        assert main([*train, "--overwrite"]) == 0
        said = "".join(capsys.readouterr().out.split())  # the console wraps long paths
        assert f"keptas{tmp_path / f'm.prev-{n}.safetensors'}" in said
    assert (tmp_path / "m.prev-1.safetensors").read_bytes() == weights  # the first checkpoint, both files
    assert (tmp_path / "m.prev-1.json").read_bytes() == sidecar
    assert json.loads((tmp_path / "m.prev-2.json").read_text())["seed"] == 1
    assert main(unlearn(tmp_path / "m.prev-1.safetensors", tmp_path / "req")) == 0  # a kept checkpoint still loads
