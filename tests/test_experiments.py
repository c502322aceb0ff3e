"""The experiment harness (``experiments/``) in its quick mode: tiny data, tiny models, a few
steps. The tests check that each experiment writes its files with every row, and one property
that cannot be noise: a trained Perceiver gives the same logits on permuted inputs (with
permuted positions) as on the unpermuted ones. They never assert on accuracy or time."""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # experiments/ is a top-level package of the repository
    sys.path.insert(0, str(ROOT))

from experiments import (  # noqa: E402
    ablations,
    common,
    curve,
    generation_stride,
    modalities,
    perceiver_ar,
    permutation,
    results_page,
)

pytest.importorskip("matplotlib")
pytest.importorskip("mlxtend")
pytest.importorskip("sklearn")

META_KEYS = {"command", "git_commit", "date", "cpu", "cpu_capability", "torch"}


def _check_files(paths: dict) -> dict:
    for path in paths.values():
        assert Path(path).is_file() and Path(path).stat().st_size > 0, path
    data = json.loads(Path(paths["json"]).read_text())
    assert META_KEYS <= set(data["meta"])
    for run in data["runs"]:
        assert 0.0 <= run["test_accuracy"] <= 1.0
        assert run["params"] > 0 and run["steps"] > 0
    return data


def test_permutation_quick(tmp_path):
    argv = ["--quick", "--threads", "1", "--out", str(tmp_path)]
    paths = permutation.main(argv)
    data = _check_files(paths)
    cells = {(r["model"], r["dataset"], r["permuted"], r["seed"]) for r in data["runs"]}
    assert cells == {(m, d, p, s) for m in permutation.MODELS for d in ("mnist", "digits")
                     for p in (False, True) for s in (0, 1)}
    markdown = Path(paths["markdown"]).read_text()
    for model in permutation.MODELS:
        for dataset in ("mnist", "digits"):
            assert f"| {model} | {dataset} |" in markdown
    # the property: same weights, permuted inputs with permuted positions -> same logits
    check = data["extra"]["logit_check"]
    assert check["max_abs_diff"] <= 1e-5
    # MNIST trains from the short-budget config, digits from its own
    assert data["meta"]["recipes"]["mnist"]["precision"] == common.recipe_from_config(
        common.main_job_config(), epochs=1).precision
    assert check["same_predictions"] == 1.0
    # --resume keeps the finished runs, trains nothing again and says where they came from
    resumed = permutation.main([*argv, "--resume"])
    again = json.loads(Path(resumed["json"]).read_text())
    assert len(again["runs"]) == len(data["runs"])
    assert again["meta"]["resumed_from"]["command"] == data["meta"]["command"]
    assert f"Resumed a run started by `{data['meta']['command']}`" in \
        Path(resumed["markdown"]).read_text()


def test_trained_perceiver_ignores_pixel_order():
    task = permutation.image_tasks(epochs=1, digits_epochs=1, quick=True,
                                   permutation_seed=3)[1]  # the 8x8 digits
    torch.manual_seed(0)
    model = permutation.build_perceiver(task, permuted=True)
    common.train_and_test(model, task.train, task.test, task.recipe, seed=0,
                          augment=task.augment, transform=task.permute)
    twin = permutation.build_perceiver(task, permuted=False)
    twin.load_state_dict(model.state_dict())
    images = task.test[0][:64]
    plain = common.predict(twin, images)
    shuffled = common.predict(model, images, transform=task.permute)
    assert not torch.equal(task.permute(images), images)
    torch.testing.assert_close(shuffled, plain, atol=1e-5, rtol=0)


def test_modalities_quick(tmp_path):
    paths = modalities.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    data = _check_files(paths)
    skipped = data["meta"]["skipped"]
    markdown = Path(paths["markdown"]).read_text()
    for name in modalities.TASKS:
        if name in skipped:
            assert f"{name}: skipped" in markdown
            continue
        models = data["meta"]["tasks"][name]["models"]
        assert {"perceiver", "baseline"} <= {m["kind"] for m in models.values()}
        for model in models:
            assert any(r["task"] == name and r["model"] == model for r in data["runs"])
            assert f"| {name} | {model} |" in markdown
    if "av" not in skipped:  # the two-modality models, also tested with each one missing
        assert "| task | model | both | without audio | without image |" in markdown


def test_ablations_quick(tmp_path):
    paths = ablations.main(["--quick", "--threads", "1", "--out", str(tmp_path),
                            "--num_latents", "4", "8"])
    data = _check_files(paths)
    markdown = Path(paths["markdown"]).read_text()
    assert list(data["meta"]["axes"]) == list(ablations.AXES)  # the record lists every axis
    measured = ablations.measured_axes(data["meta"]["axes"], data["runs"])
    assert list(measured) == list(ablations.AXES)  # --quick: a few values of each
    for axis, variants in measured.items():
        for label, _ in variants:
            assert f"| {axis} | {label} |" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "|---" not in line]
    assert len(rows) - 1 == sum(map(len, measured.values()))  # nothing else in the table
    assert {"Fourier (reference)", "learned", "none"} <= {
        label for label, _ in measured["position"]}
    assert [label for label, _ in measured["num_latents"]] == ["4", "8 (reference)"]
    assert data["meta"]["recipe"]["precision"] == common.recipe_from_config(
        common.main_job_config(), epochs=1).precision


def test_ablations_one_axis_lists_only_that_axis(tmp_path):
    """``--axes``: the table holds that axis (with its reference row), no other."""
    paths = ablations.main(["--quick", "--threads", "1", "--out", str(tmp_path),
                            "--axes", "sharing"])
    data = _check_files(paths)
    assert list(ablations.measured_axes(data["meta"]["axes"], data["runs"])) == ["sharing"]
    assert "| num_latents |" not in Path(paths["markdown"]).read_text()


def test_shared_run_logs_merge_into_one_record(tmp_path):
    """Two logs writing one record in turn (as two processes do): each save keeps the other's
    runs, none twice, and the record names both commands."""
    folder = tmp_path / "new" / "folder"  # made by the first save
    first = common.RunLog(folder, "study", {"command": "python -m a", "wall_seconds": 3},
                          shared=True, key=("variant",))
    second = common.RunLog(folder, "study", {"command": "python -m b", "wall_seconds": 2},
                           shared=True, key=("variant",))
    first.add({"variant": "x", "accuracy": 0.5, "shape": (1, 2)})
    second.add({"variant": "y", "accuracy": 0.25})
    first.add({"variant": "z", "accuracy": 0.75})
    second.save()
    record = json.loads((folder / "study.json").read_text())
    assert sorted(run["variant"] for run in record["runs"]) == ["x", "y", "z"]
    assert {c: j["wall_seconds"] for c, j in record["meta"]["jobs"].items()} == {
        "python -m a": 3, "python -m b": 2}
    again = common.RunLog(folder, "study", {"command": "python -m a"}, shared=True,
                          key=("variant",))
    again.add({"variant": "x", "accuracy": 0.9})  # the same run again replaces it
    runs = json.loads((folder / "study.json").read_text())["runs"]
    assert sorted((r["variant"], r["accuracy"]) for r in runs) == [
        ("x", 0.9), ("y", 0.25), ("z", 0.75)]
    unshared = common.RunLog(folder, "study", {"command": "python -m c"})
    unshared.add({"variant": "w"})  # without shared=True a log writes only its own runs
    assert [r["variant"] for r in json.loads((folder / "study.json").read_text())["runs"]] \
        == ["w"]


def test_curve_peer_without_perceiver_pytorch_says_what_to_install(tmp_path, monkeypatch,
                                                                    capsys):
    """Without perceiver-pytorch, ``--peer-epochs`` above 0 stops before any training and
    names the extra to install or the option that leaves the peer out."""
    real = curve.importlib.util.find_spec
    monkeypatch.setattr(curve.importlib.util, "find_spec",
                        lambda name, *a: None if name == "perceiver_pytorch" else real(name, *a))
    with pytest.raises(SystemExit) as exit_:
        curve.main(["--quick", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "perceiver-pytorch is not installed" in error and "--peer-epochs 0" in error
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written


def test_curve_quick(tmp_path):
    pytest.importorskip("perceiver_pytorch")
    paths = curve.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    data = _check_files(paths)
    assert [r["model"] for r in data["runs"]] == ["omniperceiver (main job)",
                                                  "perceiver-pytorch 0.11"]
    # the main job's own config: its precision auto, resolved as the trainer resolves it
    from omniperceiver.training.precision import resolve_precision

    assert data["meta"]["recipe"]["precision"] == resolve_precision("auto", accelerator="cpu")
    for run in data["runs"]:
        epochs = [point[0] for point in run["curve"]]
        assert epochs == list(range(1, run["epochs"] + 1))
        assert run["curve"][-1][2] == run["test_accuracy"]


def test_results_page_has_every_study():
    """docs/results.md is assembled from the result files: every study has its section,
    with its table or the command that makes it."""
    page = results_page.build()
    for name, title in results_page.STUDIES:
        assert f"## {title}" in page
        assert f"python -m experiments.{name}" in page


def test_results_page_says_when_a_study_ran_with_another_main_job_model():
    config = common.main_job_config()
    current = dict(config["model"]["model_args"])
    assert results_page.model_change_note("curve", {"meta": {"perceiver": {
        "model_args": current}}}) == ""
    latents = current["encoder"]["num_latents"]
    older = {"meta": {"perceiver": {"model_args": {**current, "num_latents": latents + 1}}}}
    note = results_page.model_change_note("curve", older)
    assert f"`num_latents` {latents + 1} (now {latents})" in note
    assert results_page.model_change_note("modalities", older) == ""  # not the main job's
    lr = common.recipe_from_config(config, epochs=1).lr
    other_lr = {"meta": {"perceiver": {"model_args": current}, "recipe": {"lr": 2 * lr}}}
    assert f"`lr` {2 * lr} (now {lr})" in results_page.model_change_note("curve", other_lr)


def test_perceiver_ar_quick(tmp_path):
    paths = perceiver_ar.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    for path in paths.values():
        assert Path(path).is_file() and Path(path).stat().st_size > 0, path
    data = json.loads(Path(paths["json"]).read_text())
    assert META_KEYS <= set(data["meta"]) and data["meta"]["corpus"]["train"]["files"] > 0
    runs = {(r["model"], r["context"]) for r in data["runs"]}
    assert runs == {("transformer", 16), ("perceiver-ar", 16), ("perceiver-ar", 64),
                    ("perceiver-ar", 256)}
    params = {r["params"] for r in data["runs"]}
    assert max(params) / min(params) < 1.01  # the same size, whatever the context
    for run in data["runs"]:
        assert run["steps"] == 2 and run["test_bits_per_byte"] > 0
        assert isinstance(run["sample"], str)


def test_generation_stride_quick(tmp_path):
    paths = generation_stride.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    data = json.loads(Path(paths["json"]).read_text())
    assert META_KEYS <= set(data["meta"])
    assert [(r["stride"], r["fewest_latents"], r["most_latents"]) for r in data["runs"]] == [
        (1, 8, 8), (4, 5, 8), (4, 8, 11), (32, 1, 32), (32, 8, 32)]
    assert all(r["bytes"] == 256 and r["bits_per_byte"] > 0 for r in data["runs"])


@pytest.mark.parametrize("stride", [1, 3, 8])
@pytest.mark.parametrize("num_latents", [None, 8])
def test_stride_scoring_gives_the_logits_generate_draws_from(stride, num_latents):
    """The experiment scores S bytes with one forward of m + S - 1 latents; generate with
    stride S and m latents (by default M - S + 1) draws each of them from exactly those
    logits."""
    model = generation_stride.tiny_model().double()
    n = model.max_context
    # a prompt of N - S + 1 bytes: a window that has just moved; the first S tokens grow it to N
    prompt = torch.randint(6, 262, (1, n - stride + 1))
    ids, seen = model.generate(prompt, 3 * stride, temperature=0, stride=stride,
                               num_latents=num_latents, return_logits=True)
    windows, targets = generation_stride.stride_windows(ids[0], n, stride, 3 * stride)
    assert windows.shape[0] >= 2
    fewest = max(1, model.num_latents - stride + 1) if num_latents is None else num_latents
    want = generation_stride.stride_logits(model, windows, stride, fewest, batch_size=4)
    want = want.flatten(0, 1)
    torch.testing.assert_close(seen[0, :want.shape[0]], want, rtol=0, atol=1e-10)
    assert torch.equal(targets.flatten(), ids[0, prompt.shape[1]:][:want.shape[0]])


def test_recipe_resolves_auto_precision_as_the_trainer_does():
    """A config's ``precision: auto`` becomes what the trainer would run on this CPU, so a
    study records the precision it trained in."""
    from omniperceiver.training.precision import resolve_precision

    config = common.load_config("mnist")
    assert config["trainer"]["precision"] == "auto"
    recipe = common.recipe_from_config(config, epochs=1)
    assert recipe.precision == resolve_precision("auto", accelerator="cpu")
    assert recipe.precision in ("bf16-mixed", "32-true")
    fixed = {**config, "trainer": {**config["trainer"], "precision": "32-true"}}
    assert common.recipe_from_config(fixed, epochs=1).precision == "32-true"



def test_suite_quick_runs_every_study_and_the_page_reports_its_time(tmp_path, monkeypatch):
    """``python -m experiments.suite --quick``: every study's files, each job's exit status and
    time in suite.json, the ablations' two jobs merged into one record; the results page then
    takes the suite's wall time."""
    from experiments import ablations, suite

    result = suite.main(["--quick", "--out", str(tmp_path)])
    assert list(result["jobs"]) == [name for lane in (*suite.LANES, suite.ALONE)
                                    for name in lane]
    assert sorted(result["jobs"]) == sorted(suite.JOBS)
    for name, job in result["jobs"].items():
        assert job["returncode"] == 0, (tmp_path / f"{name}.log").read_text()
        assert (tmp_path / f"{name}.log").is_file()
    for name, _ in results_page.STUDIES:
        assert (tmp_path / f"{name}.json").is_file()
    record = json.loads((tmp_path / "ablations.json").read_text())
    variants = [run["variant"] for run in record["runs"]]
    assert len(variants) == len(set(variants))  # the reference trained once, nothing twice
    latents = {json.loads(v).get("encoder", {}).get("num_latents") for v in variants}
    assert set(ablations.LATENTS) - latents == {8}  # the latents job's runs (8: the reference)
    assert "{}" in variants and any('"num_bands"' in v for v in variants)  # the other job's
    assert len(record["meta"]["jobs"]) == 2 and all(
        job["wall_seconds"] > 0 for job in record["meta"]["jobs"].values())
    assert "Commands (side by side, writing one record)" in (tmp_path / "ablations.md").read_text()
    saved = json.loads((tmp_path / "suite.json").read_text())
    assert saved["meta"]["wall_seconds"] >= saved["meta"]["lanes_wall_seconds"] > 0
    assert saved["meta"]["wall_seconds"] >= max(r["wall_seconds"] for r in saved["jobs"].values())
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    assert "Not measured yet" in results_page.suite_time_section()  # quick: not a full run
    saved["meta"]["quick"] = False
    saved["meta"]["wall_seconds"] = 100 * 60
    (tmp_path / "suite.json").write_text(json.dumps(saved))
    section = results_page.suite_time_section()
    assert "**100 minutes in all**, within the budget of 120 minutes" in section
    assert "| lane 1 |" in section and "| lane 2 |" in section and "| alone |" in section
    saved["meta"]["wall_seconds"] = 130 * 60
    (tmp_path / "suite.json").write_text(json.dumps(saved))
    assert "**130 minutes in all**, over the budget" in results_page.suite_time_section()
    saved["meta"]["resume"] = True  # a resumed suite did only part of the work
    (tmp_path / "suite.json").write_text(json.dumps(saved))
    assert "Not measured yet" in results_page.suite_time_section()
    saved["meta"]["resume"] = False
    saved["jobs"]["modalities"]["returncode"] = 1  # nor did a suite with a failed job
    (tmp_path / "suite.json").write_text(json.dumps(saved))
    assert "Not measured yet" in results_page.suite_time_section()


def test_ablation_summary_names_isolated_dips_only():
    """A value far below both its neighbours is called a dip; a value at the end of an axis,
    or one on a slope (one neighbour as low), is not."""
    axes = {"num_latents": [["8", "a"], ["16 (reference)", "{}"], ["32", "b"], ["64", "c"]],
            "num_bands": [["4", "d"], ["8", "e"], ["16 (reference)", "{}"]]}
    accuracy = {"a": 0.80, "{}": 0.94, "b": 0.77, "c": 0.94, "d": 0.70, "e": 0.80}
    runs = {(v, 0): a for v, a in accuracy.items()}
    record = {"meta": {"axes": axes}, "runs": [{"variant": v} for v in accuracy]}
    dips = results_page.isolated_dips(record, runs)
    assert dips == ["num_latents 32: 77.0% between 94.0% and 94.0%"]
