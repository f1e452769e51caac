"""`lotus-unlearn bench run CONFIG --smoke` for every config in configs/ (recursively): the same config end to end at
toy size, on data generated in its own format, every method, the report written. Together they take far more than
the default suite's budget on 2 shared CPU cores (measured with the CLI at load average ~17: mufac_vit 76 s,
mufac_resnet18 143 s, imagenet_vit_rf 49 s; the 56-cell CIFAR ResNet18 grids several times the MUFAC one), so
they are `slow`, except the retrain-free ImageNet-1k grid, whose report must render in the paper's units."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lotus_unlearn.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))
REPRESENTATIVE = ROOT / "configs" / "paper" / "imagenet_vit_rf.yaml"


def _smoke(config: Path, folder: Path) -> str:
    assert main(["bench", "run", str(config), "--smoke", "--results", str(folder)]) == 0
    with sqlite3.connect(folder / "results.sqlite") as conn:
        status = dict(conn.execute("select status, count(*) from results group by status").fetchall())
    assert set(status) == {"ok"} and status["ok"] >= 3
    return (folder / "report" / "results.md").read_text()


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(
            c, id=str(c.relative_to(ROOT / "configs")), marks=[] if c == REPRESENTATIVE else [pytest.mark.slow]
        )
        for c in CONFIGS
    ],
)
def test_every_config_runs_end_to_end_at_toy_size(config, tmp_path, monkeypatch):
    monkeypatch.setenv("LOTUS_PROGRESS", "0")
    text = _smoke(config, tmp_path / "smoke")
    assert "JSD and RF-JSD are in the paper's units" in text
    if config == REPRESENTATIVE:  # retrain-free: the paper's ImageNet-1k layout, in its units, no gold row
        assert "| method | RF-JSD (×1e4) | time (min) | Acc_r | Acc_test | Acc_f | MIA |" in text
        assert "Retrain (gold)" not in text and "| LoTUS |" in text and "| UNSIR |" in text


def test_smoke_never_writes_into_real_results(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "results.sqlite").write_text("")
    code = main(["bench", "run", str(ROOT / "configs" / "quick.yaml"), "--smoke", "--results", str(real)])
    assert code == 2  # a folder with results that are not a smoke run's: one line, nothing touched
    assert (real / "results.sqlite").read_text() == ""


def test_smoke_config_is_the_config_at_toy_size():
    from lotus_unlearn.bench import load_config
    from lotus_unlearn.bench.config import parse_config
    from lotus_unlearn.bench.smoke import smoke_raw

    cfg = load_config(ROOT / "configs" / "paper" / "cifar10_vit.yaml")
    small = parse_config(smoke_raw(cfg, "/data"))
    assert small.seeds == cfg.seeds[:1] and small.data_root == "/data"
    assert small.data_args == {
        "size": 48,
        "normalize": "vit",
    }  # 224 -> 48 (CIFAR still resized), the same normalisation
    m = small.models[0]
    assert "weights" not in m.model_kwargs and m.model_kwargs["depth"] == 1 and m.train["epochs"] == 1
    assert [f.label for f in small.forget] == [f.label for f in cfg.forget]  # every forget setting
    assert set(small.methods) == set(cfg.methods) and all(
        hp.get("epochs") == 1 for k, hp in small.methods.items() if k != "ssd"
    )
    assert small.sweeps[0]["values"] == cfg.sweeps[0]["values"][:2]
    mufac = parse_config(smoke_raw(load_config(ROOT / "configs" / "paper" / "mufac_resnet18.yaml"), "/d"))
    assert mufac.forget[0].first == 30  # MUFAC's first 1,062 rows, scaled to the toy data
