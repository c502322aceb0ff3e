"""The benchmark suite's quick mode runs end to end and writes well-formed tables.
No timing is asserted: the numbers of a quick run mean nothing."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("perceiver_pytorch")
pytest.importorskip("transformers")


def _run(tmp_path, sections):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--repeats", "1",
         "--warmup", "0", "--sections", sections, "--out", str(tmp_path),
         "--plot", str(tmp_path / "scaling.png")],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (json_path,) = tmp_path.glob("*.json")
    (md_path,) = tmp_path.glob("*.md")
    return proc.stdout, json.loads(json_path.read_text()), md_path.read_text()


def _check_tables(results, markdown):
    assert results["meta"]["quick"] is True
    assert results["meta"]["torch"]
    for table in results["tables"]:
        assert table["rows"], table["name"]
        for row in table["rows"]:
            assert len(row) == len(table["columns"]), (table["name"], row)
            assert all(c is None or isinstance(c, (str, int, float)) for c in row)
        assert f"### {table['title']}" in markdown
        header = "| " + " | ".join(table["columns"]) + " |"
        assert header in markdown
    return {t["name"]: t for t in results["tables"]}


def test_quick_suite_writes_well_formed_tables(tmp_path):
    stdout, results, markdown = _run(tmp_path, "peak,forward,train,vpf,memory")
    tables = _check_tables(results, markdown)
    assert {"summary", "peak", "model_shapes", "forward", "train", "vpf", "memory"} <= set(tables)
    assert {row[2] for row in tables["model_shapes"]["rows"]} == {"fp32", "bf16"}
    summary = tables["summary"]
    speedup = summary["columns"].index("speed-up")
    assert all(isinstance(row[speedup], float) and row[speedup] > 0 for row in summary["rows"])
    comparisons = [row[0] for row in summary["rows"]]
    assert any("bf16" in c for c in comparisons) and any("train" in c for c in comparisons)
    memory = tables["memory"]
    assert all(isinstance(row[1], float) for row in memory["rows"]), memory["rows"]
    assert "### Speed-ups" in stdout


@pytest.mark.slow
def test_quick_scaling_and_chunked_sections(tmp_path):
    _, results, markdown = _run(tmp_path, "scaling,chunked")
    tables = _check_tables(results, markdown)
    assert (tmp_path / "scaling.png").stat().st_size > 0
    assert any("linearity" in note for note in tables["scaling"]["notes"])
    assert all("error" not in str(row) for row in tables["chunked"]["rows"])


def test_quick_raw_pixels_section(tmp_path):
    _, results, markdown = _run(tmp_path, "raw_pixels")
    tables = _check_tables(results, markdown)
    assert {"raw_pixels_kernel", "raw_pixels_seed_step", "raw_pixels_step"} <= set(tables)
    labels = [row[0] for row in tables["raw_pixels_step"]["rows"]]
    assert any("perceiver-pytorch" in label for label in labels)
    # each kernel row says which route attend takes by itself: the tiny scores are explicit
    assert {row[3] for row in tables["raw_pixels_kernel"]["rows"]} == {"fp32", "bf16"}
    assert {row[-1] for row in tables["raw_pixels_kernel"]["rows"]} == {"explicit"}
    assert len(tables["raw_pixels_seed_step"]["rows"]) == 3


def test_quick_perceiver_ar_benchmark(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "perceiver_ar.py"), "--quick", "--repeats",
         "1", "--warmup", "0", "--threads", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "cpu-perceiver_ar-quick.json").read_text())
    markdown = (tmp_path / "cpu-perceiver_ar-quick.md").read_text()
    tables = _check_tables(results, markdown)
    assert [row[0] for row in tables["train"]["rows"]] == [16, 32]
    assert all(row[1] > 0 and row[2] > 0 and row[4] is not None for row in tables["train"]["rows"])
    rows = tables["generate"]["rows"]
    assert [(row[0], row[2]) for row in rows] == [(16, "recomputed"), (16, 1), (16, 4),
                                                  (32, "recomputed"), (32, 1), (32, 4)]
    assert all(row[3] > 0 and row[4] > 0 and row[5] > 0 for row in rows)


@pytest.mark.parametrize("bf16", [True, False], ids=["bf16-native", "no-fast-bf16"])
def test_compile_section_covers_each_model_call_and_precision(tmp_path, monkeypatch, bf16):
    """The compile section's machinery, with torch.compile stubbed out (a real compile takes
    minutes): one row per model, call and precision; bf16 rows only where precision auto
    would train in bf16, and a note saying why they are missing."""
    import torch

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import run as bench

    monkeypatch.setattr(torch, "compile", lambda model: model)
    monkeypatch.setattr(bench.Run, "bf16_native", lambda self: bf16)
    run = bench.Run(device="cpu", quick=True, repeats=1, warmup=0, out=tmp_path,
                    plot=tmp_path / "scaling.png")
    (table,) = bench.section_compile(run)
    precisions = ["fp32", "bf16"] if bf16 else ["fp32"]
    assert [tuple(row[:3]) for row in table.rows] == [
        (label, call, precision) for label, _, _ in bench.COMPILE_CASES
        for call in ("forward", "train step") for precision in precisions]
    assert all(row[3] > 0 and row[4] > 0 for row in table.rows)
    assert any("bf16 left out" in note for note in table.notes) is not bf16


def test_optimizer_benchmark_writes_both_models(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "optimizer.py"), "--rounds", "1", "--steps",
         "1", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "cpu-optimizer.json").read_text())
    (table,) = _check_tables({**results, "meta": {**results["meta"], "quick": True}},
                             (tmp_path / "cpu-optimizer.md").read_text()).values()
    assert [row[0] for row in table["rows"]] == ["perceiver-seed",
                                                 "main job (configs/mnist.yaml)"]
    difference = table["columns"].index("max |difference| after 10 steps")
    assert all(float(row[difference]) < 1e-5 for row in table["rows"])
