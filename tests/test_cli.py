"""The ``omniperceiver`` command: every config trains a few steps with a tiny model; predict,
test, export, plots; configuration and input errors are reported clearly before training."""

from __future__ import annotations

import json
import math
import re
import shlex
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("lightning")

import omniperceiver  # noqa: E402
from omniperceiver.cli import main  # noqa: E402
from omniperceiver.config import merge  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = {"encoder": dict(num_latents=8, latent_dim=16, num_blocks=1, self_attends_per_block=1,
                        num_cross_attends=1, self_attend={"heads": 2})}
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def tiny_args(config: str, root: Path, *, model_args: dict | None = None, steps: int = 2,
              extra: list[str] | None = None) -> list[str]:
    """``--config config`` with the model shrunk to TINY, ``steps`` training steps and one
    validation and test batch."""
    cfg = yaml.safe_load((CONFIGS / config).read_text())
    args = merge(merge(cfg["model"].get("model_args") or {}, TINY), model_args)
    return ["--config", str(CONFIGS / config), "--model.model_args", json.dumps(args),
            "--trainer.default_root_dir", str(root), "--trainer.max_steps", str(steps),
            "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
            "--trainer.log_every_n_steps", "1", "--data.init_args.batch_size", "8",
            *QUIET, *(extra or [])]


def write_off_folder(root: Path) -> Path:
    """A ModelNet-style folder: 2 classes x (train 4, test 2) .off meshes."""
    shapes = {
        "tetra": "OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n",
        "slab": "OFF\n8 4 0\n0 0 0\n2 0 0\n2 1 0\n0 1 0\n0 0 .1\n2 0 .1\n2 1 .1\n0 1 .1\n"
                "3 0 1 2\n3 0 2 3\n3 4 5 6\n3 4 6 7\n",
    }
    for name, text in shapes.items():
        for split, count in (("train", 4), ("test", 2)):
            folder = root / name / split
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{name}_{i}.off").write_text(text)
    return root


def write_image_folder(root: Path, size: int = 16) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(8):
            pixels = (rng.random((size, size, 3)) * 128 + 127 * c).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def write_wav(path: Path, rate: int = 16000) -> Path:
    t = np.arange(rate // 4) / rate
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.sin(2 * np.pi * 300 * t) * 20000).astype("<i2").tobytes())
    return path


def needs_espeak():
    data = pytest.importorskip("omniperceiver.data")
    if not data.espeak_available():
        pytest.skip("espeak-ng is needed to synthesise spoken digits")


# --- every config trains ----------------------------------------------------------------------


def _config_case(name: str, tmp_path: Path) -> list[str]:
    if name == "pointclouds.yaml":
        return ["--data.init_args.num_train", "48", "--data.init_args.num_test", "24",
                "--data.init_args.num_points", "64"]
    if name == "modelnet.yaml":
        return ["--data.init_args.root", str(write_off_folder(tmp_path / "modelnet")),
                "--data.init_args.num_points", "64", "--data.init_args.num_workers", "0",
                "--data.init_args.val_size", "2", "--data.init_args.batch_size", "4",
                "--model.model_args", json.dumps({**TINY, "num_bands": 4})]
    if name == "spoken_digits.yaml":
        needs_espeak()
        return ["--data.init_args.num_train", "40", "--data.init_args.num_test", "20"]
    if name == "moving_digits.yaml":
        return ["--data.init_args.num_train", "48", "--data.init_args.num_test", "24"]
    if name == "av_digits.yaml":
        needs_espeak()
        return ["--data.init_args.num_train", "48", "--data.init_args.num_test", "24",
                "--data.init_args.num_clips", "20"]
    if name == "imagenet_folder.yaml":
        # The recipe (LAMB, step schedule, crops, RandAugment, MixUp, CutMix) on a tiny folder;
        # the 44.9M-parameter perceiver-imagenet model is swapped for a tiny image model.
        folder = str(write_image_folder(tmp_path / "images"))
        return ["--data.init_args.root", folder, "--data.init_args.val_root", folder,
                "--data.init_args.image_shape", "16", "--data.init_args.num_workers", "0",
                "--trainer.accumulate_grad_batches", "1", "--model.model", "image-perceiver",
                "--model.model_args", json.dumps({**TINY, "image_shape": [16, 16],
                                                  "input_channels": 3, "num_bands": 4})]
    from test_own_data import WALK_THROUGHS  # the user-folder configs, shrunk

    if name in WALK_THROUGHS:
        write, data_args, model_args, _ = WALK_THROUGHS[name]
        return ["--data.init_args.root", str(write(tmp_path / "data")), *data_args,
                "--model.model_args", json.dumps(merge(TINY, model_args))]
    return []


#: The classification configs (the language-modelling ones: tests/test_language.py).
CLASSIFICATION_CONFIGS = sorted(p.name for p in CONFIGS.glob("*.yaml")
                                if "class_path" not in yaml.safe_load(p.read_text())["model"])


@pytest.mark.parametrize("config", CLASSIFICATION_CONFIGS)
def test_every_config_trains_tests_and_reports(config, tmp_path):
    root = tmp_path / "run"
    args = tiny_args(config, root, extra=_config_case(config, tmp_path))
    assert main(["fit", *args]) == 0
    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["steps"] == 2 and 0 <= metrics["test_accuracy"] <= 1
    assert (root / "checkpoints" / "last.ckpt").is_file()
    assert (root / "model" / "model.safetensors").is_file()
    assert (root / "config.yaml").is_file()
    for plot in ("learning_curves", "confusion_matrix", "attention"):
        assert (root / "plots" / f"{plot}.png").stat().st_size > 1000, plot
    assert list((root / "csv").glob("version_*/metrics.csv"))
    assert list((root / "tensorboard").glob("version_*/events.out.tfevents.*"))


def test_default_fit_is_the_mnist_config():
    """`omniperceiver fit` without --config trains exactly what configs/mnist.yaml describes."""
    from omniperceiver.training.lightning_cli import parse

    default = parse(["--trainer.default_root_dir", "x"])
    explicit = parse(["--config", str(CONFIGS / "mnist.yaml"),
                      "--trainer.default_root_dir", "x"])

    def summary(cli):
        model = cli.model
        h = {k: v for k, v in model.hparams.items() if k != "model_args"}
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        data = {k: v for k, v in vars(cli.datamodule).items() if not k.startswith("_")
                and isinstance(v, (int, float, str, bool, type(None), list, tuple))}
        trainer = {k: v for k, v in cli.config.trainer.items()
                   if k not in ("callbacks", "logger", "plugins")}
        encoder = model.model.encoder  # shared weights hide the schedule from the shapes
        return h, shapes, encoder.cross_schedule, encoder.block_schedule, \
            type(cli.datamodule), data, trainer, cli.config.checkpoint, \
            cli.config.seed_everything, cli.config.test_after_fit

    assert summary(default) == summary(explicit)


SMALLER = {"encoder": {"num_blocks": 1, "num_cross_attends": 1}}


@pytest.mark.parametrize("override, changes", [
    (["--model.model_args", "{encoder: {num_latents: 8}}"], {"encoder": {"num_latents": 8}}),
    (["--model.model_args.encoder.num_latents", "8",
      "--model.model_args={encoder: {latent_dim: 16}}"],
     {"encoder": {"num_latents": 8, "latent_dim": 16}}),
    (["--config", "SECOND_CONFIG"], SMALLER),
    (["--config", "SECOND_CONFIG", "--model.model_args", "{encoder: {num_latents: 8}}"],
     merge(SMALLER, {"encoder": {"num_latents": 8}})),
    (["--model.model_args.num_bands", "4"], {"num_bands": 4}),
], ids=["mapping", "entry-then-mapping", "second-config", "second-config-then-mapping",
        "top-level-entry"])
def test_model_args_change_only_the_keys_they_name(tmp_path, override, changes):
    """model_args on the command line or in a second config merge key by key into the
    config's: the model is the config's model with only those keys changed."""
    from omniperceiver.training.lightning_cli import parse

    second = tmp_path / "second.yaml"
    second.write_text(yaml.safe_dump({"model": {"model_args": SMALLER}}))
    override = [str(second) if a == "SECOND_CONFIG" else a for a in override]
    cli = parse(["--config", str(CONFIGS / "mnist.yaml"), *override,
                 "--trainer.default_root_dir", str(tmp_path / "run")])
    expected = merge(yaml.safe_load((CONFIGS / "mnist.yaml").read_text())["model"]["model_args"],
                     changes)
    assert cli.model.hparams.model_args == expected
    reference = omniperceiver.create_model("mnist-perceiver", num_classes=10, **expected)
    assert {k: v.shape for k, v in cli.model.model.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}


def test_model_args_null_goes_back_to_the_preset(tmp_path):
    from omniperceiver.training.lightning_cli import parse

    cli = parse(["--config", str(CONFIGS / "mnist.yaml"), "--model.model_args", "null",
                 "--trainer.default_root_dir", str(tmp_path)])
    assert cli.model.hparams.model_args is None


def test_the_documented_smoke_test_runs(tmp_path):
    """The smoke-test command of docs/training.md trains as written (2 steps instead of 20,
    one test batch)."""
    text = (CONFIGS.parent / "docs" / "training.md").read_text()
    commands = re.findall(r"^    (omniperceiver fit (?:.*\\\n)*.*)$", text, flags=re.M)
    args = shlex.split(next(c for c in commands if "runs/smoke" in c).replace("\\\n", " "))
    assert args[:2] == ["omniperceiver", "fit"]
    root = tmp_path / "smoke"
    for option, value in (("--trainer.max_steps", "2"), ("--trainer.default_root_dir", root)):
        args[args.index(option) + 1] = str(value)
    assert main([*args[1:], "--trainer.limit_test_batches", "1", *QUIET]) == 0
    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["steps"] == 2 and "test_accuracy" in metrics


# --- after training: test, predict, export, plots ---------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny MNIST model trained for 3 steps: its run folder."""
    root = tmp_path_factory.mktemp("mnist") / "run"
    assert main(["fit", *tiny_args("mnist.yaml", root, steps=3)]) == 0
    return root


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    from PIL import Image

    from omniperceiver.data import MNIST

    folder = tmp_path_factory.mktemp("files")
    test = MNIST("test")
    Image.fromarray((test.images[0, ..., 0].numpy() * 255).astype(np.uint8)).save(
        folder / "digit.png")
    np.save(folder / "digit.npy", test.images[1].numpy())
    write_wav(folder / "clip.wav")
    np.save(folder / "wrong.npy", np.zeros((5, 7), dtype=np.float32))
    return folder


def test_test_subcommand_reads_the_checkpoint(trained, tmp_path):
    root = tmp_path / "eval"
    args = ["test", "--config", str(CONFIGS / "mnist.yaml"), "--ckpt_path",
            str(trained / "checkpoints" / "last.ckpt"), "--trainer.default_root_dir", str(root),
            "--trainer.limit_test_batches", "2", *QUIET]
    assert main(args) == 0
    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["test_examples"] == 2 * 64 and "test_accuracy" in metrics


def test_predict_prints_top_classes(trained, digit_files, capsys):
    ckpt = trained / "checkpoints" / "last.ckpt"
    files = [str(digit_files / "digit.png"), str(digit_files / "digit.npy")]
    assert main(["predict", str(ckpt), *files, "--top_k", "2"]) == 0
    from_checkpoint = capsys.readouterr().out.strip().splitlines()
    assert len(from_checkpoint) == 2 and from_checkpoint[0].startswith(files[0])
    assert from_checkpoint[0].count("%") == 2
    assert main(["predict", str(trained / "model"), *files, "--top_k", "2"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == from_checkpoint


def test_predict_through_lightning_cli(trained, digit_files, capsys):
    args = ["predict", "--config", str(CONFIGS / "mnist.yaml"), "--ckpt_path",
            str(trained / "checkpoints" / "last.ckpt"), "--data.init_args.predict_files",
            json.dumps([str(digit_files / "digit.png")]), *QUIET]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "digit.png" in out and "%" in out


def test_predict_rejects_a_wrong_file_by_name(trained, digit_files, capsys):
    ckpt = str(trained / "checkpoints" / "last.ckpt")
    assert main(["predict", ckpt, str(digit_files / "clip.wav")]) == 1
    err = capsys.readouterr().err
    assert "clip.wav: this model takes images 28x28x1" in err and "WAV" in err
    assert main(["predict", ckpt, str(digit_files / "wrong.npy")]) == 1
    assert "wrong.npy" in capsys.readouterr().err
    assert main(["predict", str(trained / "nothing.ckpt"), str(digit_files / "digit.png")]) == 1


def test_exported_model_loads_without_pickle_and_matches(trained):
    from omniperceiver.cli import load_trained

    exported = omniperceiver.from_pretrained(trained / "model")
    from_ckpt, classes, spec = load_trained(trained / "checkpoints" / "last.ckpt")
    x = torch.rand(4, 28, 28, 1)
    with torch.no_grad():
        assert torch.allclose(exported(x), from_ckpt(x), atol=1e-6)
    config = json.loads((trained / "model" / "config.json").read_text())
    assert config["model"]["preset"] == "mnist-perceiver"
    assert config["extra"]["classes"] == classes and config["extra"]["input_spec"] == spec


def test_plot_attention_command(trained, digit_files, tmp_path, capsys):
    out = tmp_path / "attention.png"
    assert main(["plot-attention", str(trained / "model"), str(digit_files / "digit.png"),
                 "--latents", "0", "3", "--output", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert main(["plot-attention", str(trained / "model"), str(digit_files / "digit.png"),
                 "--latents", "99", "--output", str(out)]) == 1
    assert "latent indices must lie in [0, 7], got values in [99, 99]" in capsys.readouterr().err


# --- errors before training -------------------------------------------------------------------


def assert_one_line_error(capsys, *parts: str) -> str:
    """The parser's error: one line ``omniperceiver fit: error: ...`` naming ``parts``."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("omniperceiver fit: error: "), err
    assert "usage:" not in err and "Traceback" not in err
    for part in parts:
        assert part in err, err
    return err


@pytest.mark.parametrize("bad, parts", [
    (["--model.lr", "abc"], ["--model.lr: expected float, got 'abc'"]),
    (["--trainer.max_epoch", "3"], ["--trainer.max_epoch: unknown option, got '3'",
                                    "did you mean --trainer.max_epochs?"]),
    (["--data.init_args.batch_size", "many"], ["batch_size: expected int, got 'many'"]),
    (["--model.optimizer", "sgd"], ["--model.optimizer: expected Literal['adamw', 'lamb']",
                                    "got 'sgd'"]),
])
def test_config_errors_stop_before_training(bad, parts, tmp_path, capsys):
    assert main(["fit", "--config", str(CONFIGS / "mnist.yaml"),
                 "--trainer.default_root_dir", str(tmp_path), *bad]) == 1
    assert_one_line_error(capsys, *parts)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("section, key, typo, suggestion", [
    ("trainer", "max_epochs", "max_epoch", "trainer.max_epochs"),
    ("model", "lr", "lrr", "model.lr"),
])
def test_unknown_key_in_a_config_file(section, key, typo, suggestion, tmp_path, capsys):
    config = yaml.safe_load((CONFIGS / "mnist.yaml").read_text())
    config[section][typo] = config[section].pop(key)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(CONFIGS / "mnist.yaml"), "--config", str(path),
                 "--trainer.default_root_dir", str(tmp_path)]) == 1
    assert_one_line_error(capsys, f"{section}.{typo} (from --config {path}): unknown option, "
                                  f"got {config[section][typo]}; did you mean {suggestion}?")
    assert not (tmp_path / "checkpoints").exists()


def test_help_still_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--trainer.max_epochs" in out and "--best_checkpoint.monitor" in out


def test_missing_dataset_folder(tmp_path, capsys):
    missing = tmp_path / "no_such_folder"
    code = main(["fit", "--config", str(CONFIGS / "modelnet.yaml"), "--data.init_args.root",
                 str(missing), "--trainer.default_root_dir", str(tmp_path / "run")])
    assert code == 1
    assert f"ModelNet root {missing} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_image_folder_without_a_test_split_stops_before_training(tmp_path, capsys):
    folder = str(write_image_folder(tmp_path / "images"))
    args = ["--config", str(CONFIGS / "imagenet_folder.yaml"), "--data.init_args.root", folder,
            "--data.init_args.image_shape", "16", "--model.model", "image-perceiver",
            "--model.model_args", json.dumps({**TINY, "image_shape": [16, 16],
                                              "input_channels": 3}),
            "--data.init_args.test_size", "0", "--trainer.default_root_dir",
            str(tmp_path / "run"), *QUIET]
    assert main(["fit", *args]) == 1
    err = capsys.readouterr().err
    assert "ImageFolderData needs test_root, val_root or test_size > 0 to test" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
    # without testing after fit, the same folder trains
    assert main(["fit", *args, "--test_after_fit", "false", "--trainer.max_steps", "1",
                 "--trainer.accumulate_grad_batches", "1", "--data.init_args.num_workers",
                 "0", "--data.init_args.batch_size", "4", "--overwrite", "true"]) == 0


def test_model_that_does_not_fit_the_data(tmp_path, capsys):
    args = tiny_args("digits.yaml", tmp_path / "run", model_args={"input_channels": 3})
    assert main(["fit", *args]) == 1
    err = capsys.readouterr().err
    assert "does not accept the inputs of DigitsData" in err and "(8, 8, 1)" in err


def test_nan_loss_names_the_step(tmp_path, capsys):
    args = tiny_args("mnist.yaml", tmp_path / "run", steps=20,
                     extra=["--model.lr", "1e30", "--model.warmup", "0",
                            "--trainer.gradient_clip_val", "0", "--trainer.precision", "32-true"])
    assert main(["fit", *args]) == 1
    err = capsys.readouterr().err
    assert "training loss is nan at step" in err and "learning rate is too high" in err


# --- the other commands -----------------------------------------------------------------------


def test_help_and_list_models(capsys):
    assert main([]) == 0
    assert "plot-attention" in capsys.readouterr().out
    assert main(["list-models"]) == 0
    out = capsys.readouterr().out
    for name in ("mnist-perceiver", "pointcloud-perceiver", "audio-perceiver",
                 "video-perceiver", "av-perceiver", "perceiver-imagenet"):
        assert name in out
    assert main(["no-such-command"]) == 2


def test_convert_and_export_are_dispatched(monkeypatch, capsys):
    import omniperceiver.cli as cli

    calls = []

    class Fake:
        @staticmethod
        def main(argv):
            calls.append(argv)
            return 0

    monkeypatch.setattr(cli.importlib, "import_module",
                        lambda name: Fake if name in cli.DISPATCH.values() else None)
    assert main(["convert", "--from", "x"]) == 0 and main(["export", "y"]) == 0
    assert calls == [["--from", "x"], ["y"]]
    monkeypatch.undo()
    monkeypatch.setitem(cli.DISPATCH, "convert", "omniperceiver.no_such_module")
    assert main(["convert"]) == 1
    assert "needs the module omniperceiver.no_such_module" in capsys.readouterr().err


def test_top_classes_table(capsys):
    from omniperceiver.training.lightning_cli import print_predictions

    probs = torch.tensor([[0.1, 0.7, 0.2]])
    print_predictions(["a.png"], probs, ["x", "y", "z"], top_k=2)
    assert capsys.readouterr().out.split() == ["a.png", "y", "(70.0%)", "z", "(20.0%)"]
    assert math.isclose(float(probs.sum()), 1.0)
