"""The audit report: rendered from a real (tiny) digits run, checked by parsing the HTML; re-rendering from
report.json; sequential requests linked into a deletion history."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import pytest
import torch

import lotus_unlearn as lu
from lotus_unlearn.checkpoint import read_meta, save_checkpoint
from lotus_unlearn.cli import main
from lotus_unlearn.data import instance_split, load_dataset
from lotus_unlearn.report import build_report, lineage_of, load_report, render_html, write_report
from lotus_unlearn.utils import state_dict_hash

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny digits run: original CNN, LoTUS for one epoch, evaluation with original and (for the gold columns)
    a gold model; its report written to a folder."""
    bundle = load_dataset("digits", seed=0)
    split = instance_split(bundle.train, 0.1, seed=0)
    forget, retain = split.apply(bundle.train)
    torch.manual_seed(0)
    net = lu.create_model("cnn", num_classes=10, in_channels=1, image_size=8, width=8, hidden=32)
    recipe = {"lr": 0.05, "batch_size": 64, "augment": False, "device": "cpu", "seed": 0}
    original = lu.train_model(net, bundle.train, epochs=4, **recipe).model
    gold = lu.train_model(net, retain, epochs=2, **recipe).model
    result = lu.unlearn(original, forget, retain, val=bundle.val, method="lotus", epochs=1, a_ref=0.0, device="cpu")
    splits = {"forget": forget, "retain": retain, "test": bundle.test, "val": bundle.val}
    metrics = lu.evaluate(result.model, splits, original=original, gold=gold, n_boot=50)
    report = build_report(
        request={"dataset": "digits", "seed": 0, "classes": bundle.classes, "checkpoint": "original.safetensors"},
        split=split,
        result=result,
        input_model=original,
        metrics=metrics,
        timings={"evaluate_seconds": 1.5},
    )
    out = tmp_path_factory.mktemp("report")
    write_report(report, out)
    ckpt = out.parent / "original.safetensors"
    save_checkpoint(original, ckpt, {"role": "original", "dataset": "digits"})
    return {"report": report, "out": out, "original": original, "checkpoint": ckpt}


class Page(HTMLParser):
    """What a reader sees: text, images, links, scripts, element ids, table rows."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.text: list[str] = []
        self.imgs: list[dict[str, str]] = []
        self.refs: list[str] = []
        self.tags: list[str] = []
        self.ids: set[str] = set()
        self.title = ""
        self._in_title = False
        self.feed(html)
        self.body = " ".join(" ".join(self.text).split())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.imgs.append(a)
        for key in ("src", "href"):
            if key in a and not (tag == "img" and a[key].startswith("data:")):
                self.refs.append(a[key])
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        self.text.append(data)


def page(out: Path) -> Page:
    return Page((out / "report.html").read_text(encoding="utf-8"))


def test_report_files_are_written(run) -> None:
    for name in ("report.json", "report.md", "report.html"):
        assert (run["out"] / name).stat().st_size > 0
    assert json.loads((run["out"] / "report.json").read_text())["verdict"] == run["report"]["verdict"]


def test_html_is_self_contained_with_three_plots(run) -> None:
    p = page(run["out"])
    assert p.refs == []  # no link, stylesheet, script or image outside the file: it opens offline
    assert "script" not in p.tags
    assert len(p.imgs) == 3
    for img in p.imgs:
        head, _, data = img["src"].partition(",")
        assert head == "data:image/png;base64"
        png = base64.b64decode(data, validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000
        assert img["alt"]
    assert {"plot-entropy", "plot-confidence", "plot-per_class"} <= p.ids


def test_html_shows_the_audit_facts(run) -> None:
    r, p = run["report"], page(run["out"])
    m, diag = r["metrics"], r["metrics"]["diagnostics"]
    assert "Deletion audit" in p.title and "lotus" in p.title
    for needle in (
        r["request"]["forget_ids_sha256"],
        r["weights"]["input_sha256"],
        r["weights"]["output_sha256"],
        f"{r['request']['forget_size']} samples",
        "10% of each class",
        r["versions"]["torch"],
        "retain_fraction",
        "evaluate time",
        f"Verdict: {r['verdict']['status']}",
        r["verdict"]["headline"],
        "evidence, not proof",
        "RF-JSD vs noise floor",
        "MIA vs test member rate",
        f"{diag['rf_jsd_floor']['high']:.5f}",
        f"{m['original_acc_forget']:.4f}",
        f"{m['acc_forget']:.4f}",
        f"{diag['attack']['entropy_auc']:.4f}",
        f"{diag['original_attack']['entropy_auc']:.4f}",
        "TPR @ 1% FPR",
        f"Avg Gap {m['avg_gap']:.4f}",
        "gold (retrained)",
        "No earlier deletion requests",
    ):
        assert needle in p.body, needle
    assert r["run"]["device"] == "cpu" and "device cpu" in p.body


def test_per_class_table_has_every_class(run) -> None:
    html = (run["out"] / "report.html").read_text()
    table = html[html.index('id="per-class"') :]
    table = table[: table.index("</table>")]
    assert table.count("<tr") == 1 + 10


def test_markdown_has_the_same_verdict(run) -> None:
    md = (run["out"] / "report.md").read_text()
    r = run["report"]
    assert f"## Verdict: {r['verdict']['status']}" in md
    assert r["request"]["forget_ids_sha256"] in md and r["weights"]["output_sha256"] in md
    assert "| RF-JSD vs noise floor |" in md and "evidence, not proof" in md


def test_report_command_rerenders_from_json(run, tmp_path, capsys) -> None:
    for name in ("report.json", "report.md", "report.html"):
        (tmp_path / name).write_bytes((run["out"] / name).read_bytes())
    (tmp_path / "report.md").unlink()
    (tmp_path / "report.html").write_text("stale")
    assert main(["report", str(tmp_path)]) == 0
    assert "re-rendered" in capsys.readouterr().out
    # rendering is a pure function of report.json (the plots included)
    assert (tmp_path / "report.md").read_bytes() == (run["out"] / "report.md").read_bytes()
    assert (tmp_path / "report.html").read_bytes() == (run["out"] / "report.html").read_bytes()


def test_class_wise_report_explains_rf_jsd_is_not_used(run) -> None:
    report = json.loads(json.dumps(run["report"]))
    report["request"].update(forget_kind="class", forget_classes=[3])
    del report["verdict"]  # an older report without a stored verdict: computed on rendering
    p = Page(render_html(report))
    assert "forget accuracy vs chance" in p.body
    assert "RF-JSD is not used" in p.body
    assert "3 (forgotten)" in p.body


def test_templates_ship_inside_the_package() -> None:
    templates = resources.files("lotus_unlearn.report").joinpath("templates")
    assert templates.joinpath("report.html.j2").is_file()
    assert templates.joinpath("report.md.j2").is_file()


def test_lineage_of_a_first_request_has_no_history(run) -> None:
    meta = read_meta(run["checkpoint"])
    sha = state_dict_hash(run["original"])
    lin = lineage_of(run["checkpoint"], meta, sha)
    assert lin["parent_weights_sha256"] == sha and lin["sidecar_weights_match"] is True
    assert lin["previous_report"] is None and lin["history"] == []
    assert lineage_of(run["checkpoint"], {**meta, "weights_sha256": "0" * 64}, sha)["sidecar_weights_match"] is False


def test_sequential_requests_are_linked(run, tmp_path, capsys) -> None:
    common = ["--dataset", "digits", "--device", "cpu", "--hparam", "epochs=1", "--hparam", "a_ref=0"]
    first, second = tmp_path / "req-1", tmp_path / "req-2"
    assert (
        main(["unlearn", "--checkpoint", str(run["checkpoint"]), "--forget-class", "3", "--out", str(first), *common])
        == 0
    )
    ckpt = first / "model.safetensors"
    assert main(["unlearn", "--checkpoint", str(ckpt), "--forget-class", "5", "--out", str(second), *common]) == 0
    capsys.readouterr()
    r1, r2 = load_report(first), load_report(second)
    lin = r2["lineage"]
    assert lin["previous_report"] == str((first / "report.json").resolve())
    assert lin["previous_output_matches"] is True and lin["sidecar_weights_match"] is True
    assert lin["parent_weights_sha256"] == r1["weights"]["output_sha256"] == r2["weights"]["input_sha256"]
    assert [h["forget_ids_sha256"] for h in lin["history"]] == [r1["request"]["forget_ids_sha256"]]
    # the second request never trains on (nor measures retain accuracy on) the samples deleted by the first
    n3, n5 = r1["request"]["forget_size"], r2["request"]["forget_size"]
    sizes = r2["metrics"]["diagnostics"]["sizes"]
    assert lin["previously_forgotten"] == n3
    assert sizes["retain"] == 1078 - n3 - n5
    # the new checkpoint's sidecar carries the whole history and every forgotten id
    meta = read_meta(second / "model.safetensors")
    assert [h["output_sha256"] for h in meta["deletion_history"]] == [
        r1["weights"]["output_sha256"],
        r2["weights"]["output_sha256"],
    ]
    assert len(meta["forgotten_ids"]) == n3 + n5
    p = page(second)
    assert "previous report" in p.body and str((first / "report.json").resolve()) in p.body
    history = (second / "report.html").read_text()
    history = history[history.index('id="history"') : history.index("</table>", history.index('id="history"'))]
    assert history.count("<tr") == 1 + 2  # header, the first request, this one
