"""The README's command sections run as written: the deletion request with its gold model (at a tiny size: digits,
one epoch) gives a gold model that matches the split, the mismatched gold of an ids request is refused, and the
"Your own model and data" example runs verbatim in a fresh folder."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from lotus_unlearn.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = {
    "--dataset fashion-mnist": "--dataset digits",
    "--train-size 10000": "--train-size 500",
}


def bash_blocks(section: str) -> list[str]:
    """The ```bash blocks of a README section (up to the next `## ` heading)."""
    text = README.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```bash\n(.*?)```", text[start : end if end > 0 else None], flags=re.S)


def commands(block: str) -> list[list[str]]:
    """The block's lotus-unlearn commands as argument lists (continuation lines joined, comments dropped)."""
    joined = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True)[1:] for line in joined.splitlines() if line.startswith("lotus-unlearn")]


def tiny(args: list[str]) -> list[str]:
    """The same command at test size: digits, one epoch, a small CNN, on the CPU."""
    text = " ".join(args)
    for old, new in TINY.items():
        text = text.replace(old, new)
    extra = {
        "train": ["--epochs", "1", "--model-arg", "width=8", "--model-arg", "hidden=32"],
        "unlearn": ["--hparam", "epochs=1"],
    }.get(args[0], [])
    return [*shlex.split(text), *extra, "--device", "cpu"]


def test_readme_request_sequence_gives_a_matching_gold(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    steps = commands(bash_blocks("Command line")[0])
    assert [s[0] for s in steps] == ["train", "train", "unlearn", "evaluate"]
    for args in steps:
        assert main(tiny(args)) == 0, capsys.readouterr().err
    capsys.readouterr()
    report = json.loads(Path("runs/request-1/report.json").read_text())
    assert report["gold_check"] == {"status": "match", "mismatches": []}
    assert json.loads(Path("runs/audit-1/report.json").read_text())["gold_check"]["status"] == "match"

    # observation 2: the same gold for a request by ids is refused, with one line naming the forget set
    assert main(["ids", "--checkpoint", "models/original.safetensors", "--sample", "20", "--seed", "1"]) == 0
    Path("ids.txt").write_text(capsys.readouterr().out)
    refused = ["unlearn", "--checkpoint", "models/original.safetensors", "--forget", "ids.txt",
               "--gold", "models/gold.safetensors", "--out", "runs/request-ids", "--device", "cpu"]  # fmt: skip
    assert main(refused) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not retrained for this request: forget set" in err
    assert not Path("runs/request-ids").exists()


@pytest.mark.slow
def test_readme_own_model_example_runs_as_written(tmp_path) -> None:
    block = bash_blocks("Your own model and data")[0]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONSAFEPATH", None)
    done = subprocess.run(["bash", "-ec", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "runs/mlp-forget-3/report.json").read_text())
    assert report["request"]["forget_kind"] == "class" and report["method"]["hparams"]["alpha"] == 32.0
