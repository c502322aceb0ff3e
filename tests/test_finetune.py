"""Fine-tuning (``--model.pretrained``, ``ClassificationModule(pretrained=...)``): the weights
of the source are loaded, a head for other classes starts fresh, frozen parts do not change,
pretrained parts train at a fraction of the learning rate, the exported model predicts with
the new classes; sources from transformers, perceiver-pytorch and DeepMind start a fit."""

from __future__ import annotations

import json
import logging
import pickle
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")

import omniperceiver  # noqa: E402
from omniperceiver.cli import main  # noqa: E402
from omniperceiver.errors import ConfigError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
#: configs/digits.yaml's input adapter (8x8 greyscale digits as 2x2 patches), a tiny encoder.
DIGITS_SOURCE = dict(image_shape=[8, 8], input_channels=1, mode="patches", patch_size=2,
                     project_channels=8, num_bands=2,
                     encoder=dict(num_latents=8, latent_dim=16, num_blocks=1,
                                  self_attends_per_block=1, num_cross_attends=1,
                                  self_attend={"heads": 2}))
#: the source's classes; the digits' are "0".."9"
SOURCE_CLASSES = ["circle", "square", "star", "cross"]


def save_source(folder: Path, num_classes: int) -> Path:
    torch.manual_seed(1)
    model = omniperceiver.create_model("image-perceiver", num_classes=num_classes,
                                       **DIGITS_SOURCE)
    classes = SOURCE_CLASSES if num_classes == 4 else [str(i) for i in range(num_classes)]
    return omniperceiver.save_pretrained(model, folder, extra={"classes": classes})


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """An exported 4-class model whose inputs fit the digits."""
    return save_source(tmp_path_factory.mktemp("source") / "model", 4)


def fit_args(root: Path, pretrained: Path | str, *extra: str, steps: int = 2) -> list[str]:
    """Fine-tune on configs/digits.yaml for ``steps`` steps; the architecture is the source's
    (the config's model and model_args are switched off)."""
    return ["--config", str(CONFIGS / "digits.yaml"), "--model.pretrained", str(pretrained),
            "--model.model", "null", "--model.model_args", "null",
            "--trainer.default_root_dir", str(root), "--trainer.max_steps", str(steps),
            "--trainer.limit_test_batches", "1", "--data.init_args.batch_size", "8",
            *QUIET, *extra]


def head_names(model) -> set[str]:
    ids = {id(p) for p in model.decoder.head.parameters()}
    return {name for name, p in model.named_parameters() if id(p) in ids}


# --- loading ----------------------------------------------------------------------------------


def test_every_weight_but_a_new_head_is_loaded_and_the_log_says_so(source, tmp_path, caplog):
    from omniperceiver.training.lightning_cli import parse

    with caplog.at_level(logging.INFO):
        cli = parse(fit_args(tmp_path / "run", source))
    model, reference = cli.model.model, omniperceiver.from_pretrained(source)
    head = head_names(model)
    assert head == {"decoder.final.weight", "decoder.final.bias"}
    assert model.decoder.head.out_features == 10
    ours, theirs = model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    for name in ours.keys() - head:
        torch.testing.assert_close(ours[name], theirs[name], atol=0, rtol=0, msg=name)
    assert not torch.equal(ours["decoder.final.bias"][:4], theirs["decoder.final.bias"])
    assert "loaded 35 of 37 parameter tensors" in caplog.text
    assert "initialised fresh (new classification head, 10 classes): decoder.final.weight, " \
           "decoder.final.bias" in caplog.text
    # model and model_args now say what the module built (checkpoints and exports rebuild it)
    assert cli.model.hparams.model == "image-perceiver"
    assert cli.model.hparams.model_args["encoder"]["num_latents"] == 8


def test_a_head_for_the_same_classes_is_loaded_too(tmp_path):
    from omniperceiver.training import ClassificationModule

    folder = save_source(tmp_path / "ten", 10)
    module = ClassificationModule(pretrained=str(folder), num_classes=10)
    reference = omniperceiver.from_pretrained(folder).state_dict()
    for name, value in module.model.state_dict().items():
        torch.testing.assert_close(value, reference[name], atol=0, rtol=0, msg=name)


def test_a_model_exported_by_0_3_0_fine_tunes():
    """A run's model/ exported by 0.3.0 (flat model_args: self_heads, dropout, pooling ...)
    is a source: every weight but a new head loads, the keywords become today's."""
    from omniperceiver.training.finetune import pretrained_classifier

    folder = Path(__file__).resolve().parent / "fixtures" / "run_folders" / "mnist-0.3.0"
    loaded = pretrained_classifier(folder / "model", 3)
    reference = omniperceiver.from_pretrained(folder / "model").state_dict()
    assert set(loaded.fresh) == head_names(loaded.model) and loaded.fresh
    for name in loaded.loaded:
        torch.testing.assert_close(loaded.model.state_dict()[name], reference[name], atol=0,
                                   rtol=0, msg=name)
    assert loaded.model_args["encoder"]["self_attend"]["heads"] == 2
    assert loaded.model_args["decoder"] == {"pooling": "query"}
    assert "self_heads" not in loaded.model_args


def test_config_model_args_that_disagree_with_the_source_stop_the_fit(source, tmp_path, capsys):
    args = fit_args(tmp_path / "run", source)
    args = [a for a in args if a not in ("--model.model", "--model.model_args", "null")]
    assert main(["fit", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "the architecture comes from pretrained" in err
    assert "model_args.encoder.num_latents 32, the source 8" in err
    assert "--model.model null --model.model_args null" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options, message", [
    ({"freeze": "decoder"}, "freeze must be one of none, input_adapter, encoder, all_but_head"),
    ({"pretrained_lr_ratio": 0.0}, "pretrained_lr_ratio must be a finite number > 0"),
    ({"pretrained": None, "freeze": "encoder"}, "are for fine-tuning: set pretrained"),
    ({"pretrained": "nowhere"}, "pretrained nowhere: no such file or folder"),
    ({"pretrained_kwargs": {"depth": 1}}, "an omniperceiver model folder, which needs none"),
])
def test_options_are_checked(source, options, message):
    from omniperceiver.training import ClassificationModule

    with pytest.raises(ConfigError, match=message):
        ClassificationModule(**{"pretrained": str(source), "num_classes": 10, **options})


def test_a_source_for_other_inputs_stops_before_training(tmp_path, capsys):
    rgb = omniperceiver.create_model("image-perceiver", **{**DIGITS_SOURCE, "input_channels": 3})
    omniperceiver.save_pretrained(rgb, tmp_path / "rgb")
    assert main(["fit", *fit_args(tmp_path / "run", tmp_path / "rgb")]) == 1
    err = capsys.readouterr().err
    assert f"the model 'image-perceiver' (pretrained {tmp_path / 'rgb'}) does not accept " \
           "the inputs of DigitsData (inputs of shape (8, 8, 1))" in err
    assert "Fine-tune from a model made for inputs like these." in err


def test_a_source_for_another_image_size_stops_before_training(tmp_path, capsys):
    # A 28x28 model reads 8x8 digits without complaint (its Fourier positions are computed
    # per grid), but its saved recipe would still say 28x28 for export and predict.
    mnist_sized = omniperceiver.create_model("image-perceiver",
                                             **{**DIGITS_SOURCE, "image_shape": [28, 28]})
    omniperceiver.save_pretrained(mnist_sized, tmp_path / "mnist")
    assert main(["fit", *fit_args(tmp_path / "run", tmp_path / "mnist")]) == 1
    err = capsys.readouterr().err.strip()
    assert f"pretrained {tmp_path / 'mnist'} reads inputs of image_shape [28, 28], but the " \
           "data's are [8, 8]" in err
    assert "--data.init_args.image_shape" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "model").exists()

    from omniperceiver.training.finetune import pretrained_classifier

    spec = {"modality": "image", "image_shape": [28, 28], "input_channels": 1}
    model = pretrained_classifier(tmp_path / "mnist", 10, input_spec=spec).model
    assert model.input_adapter.image_shape == (28, 28)  # the same shape: loaded


def test_a_misspelt_freeze_choice_on_the_command_line(source, tmp_path, capsys):
    assert main(["fit", *fit_args(tmp_path / "run", source, "--model.freeze", "head")]) == 1
    assert "--model.freeze: expected Literal['none', 'input_adapter', 'encoder', " \
           "'all_but_head'], got 'head'" in capsys.readouterr().err


# --- training ---------------------------------------------------------------------------------


def test_fine_tune_export_and_predict_with_the_new_classes(source, tmp_path, capsys):
    """The documented command, shrunk: fine-tune, export, predict a file."""
    root = tmp_path / "run"
    assert main(["fit", *fit_args(root, source, "--model.freeze", "encoder",
                                  "--model.pretrained_lr_ratio", "0.1")]) == 0
    saved = json.loads((root / "model" / "config.json").read_text())
    assert saved["extra"]["classes"] == [str(i) for i in range(10)]
    assert saved["extra"]["input_spec"] == {"modality": "image", "image_shape": [8, 8],
                                            "input_channels": 1}
    assert saved["model"]["overrides"]["num_classes"] == 10
    tuned, reference = (omniperceiver.from_pretrained(folder).state_dict()
                        for folder in (root / "model", source))
    for name, value in tuned.items():  # the frozen input adapter and encoder did not change
        if name.startswith(("input_adapter.", "encoder.")):
            torch.testing.assert_close(value, reference[name], atol=0, rtol=0, msg=name)
    assert not torch.equal(tuned["decoder.norm.weight"], reference["decoder.norm.weight"])

    image = tmp_path / "digit.npy"
    np.save(image, np.random.default_rng(0).random((8, 8, 1), dtype=np.float32))
    capsys.readouterr()
    assert main(["predict", str(root / "model"), str(image)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(image)) and "%" in line
    assert not any(name in line for name in SOURCE_CLASSES)
    assert main(["predict", str(root / "checkpoints" / "last.ckpt"), str(image)]) == 0
    assert capsys.readouterr().out.strip() == line  # the checkpoint rebuilds the same model

    # the run resumes from its own config.yaml (its checkpoint holds the same model)
    resume = ["--config", str(root / "config.yaml"), "--ckpt_path", "last",
              "--trainer.max_steps", "3", *QUIET]
    assert main(["fit", *resume]) == 0


def test_python_fine_tuning_freezes_and_lowers_the_pretrained_learning_rate(source):
    import lightning

    from omniperceiver.training import ClassificationModule, DigitsData

    data = DigitsData(batch_size=8)
    module = ClassificationModule(pretrained=str(source), num_classes=data.num_classes,
                                  class_names=data.classes, input_spec=data.input_spec,
                                  freeze="input_adapter", pretrained_lr_ratio=0.1, lr=1e-3,
                                  warmup=0)
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer = lightning.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=data)

    head = head_names(module.model)
    groups = trainer.optimizers[0].param_groups
    ratio_of = {id(p): g["lr_ratio"] for g in groups for p in g["params"]}
    for name, p in module.model.named_parameters():
        if name.startswith("input_adapter."):
            assert not p.requires_grad and id(p) not in ratio_of, name
            torch.testing.assert_close(p.detach(), before[name], atol=0, rtol=0, msg=name)
        else:
            assert ratio_of[id(p)] == (1.0 if name in head else 0.1), name
    for group in groups:  # the schedule scales each group's own learning rate
        assert group["initial_lr"] == pytest.approx(1e-3 * group["lr_ratio"])
    assert {g["weight_decay"] for g in groups} == {0.05, 0.0}  # decay groups split by ratio
    changed = [name for name in ("encoder.latents", "decoder.final.weight")
               if not torch.equal(module.model.state_dict()[name], before[name])]
    assert changed == ["encoder.latents", "decoder.final.weight"]


def test_only_the_head_trains_with_all_but_head(source, tmp_path):
    from omniperceiver.training.lightning_cli import parse

    cli = parse(fit_args(tmp_path / "run", source, "--model.freeze", "all_but_head"))
    trainable = {n for n, p in cli.model.model.named_parameters() if p.requires_grad}
    assert trainable == head_names(cli.model.model)


def test_the_documented_digits_commands_run(tmp_path, monkeypatch, capsys):
    """The digits commands of docs/training.md's Fine-tuning section run as written, 2 steps
    each: train a model, fine-tune it, predict a file (the image-folder, perceiver-pytorch and
    DeepMind forms run shrunk in the tests below)."""
    from PIL import Image

    text = (CONFIGS.parent / "docs" / "training.md").read_text()
    section = text[text.index("## Fine-tuning"):text.index("## Plots")]
    commands = [shlex.split(c.replace("\\\n", " "), comments=True) for c in
                re.findall(r"^    (omniperceiver (?:.*\\\n)*.*)$", section, flags=re.M)]
    commands = [c for c in commands if "configs/digits.yaml" in c or c[1] == "predict"]
    assert [c[1] for c in commands] == ["fit", "fit", "predict"]
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).save("digit.png")
    shrink = ["--trainer.max_steps", "2", "--trainer.limit_test_batches", "1",
              "--data.init_args.batch_size", "8", *QUIET]
    for command in commands:
        args = [str(CONFIGS / "digits.yaml") if a == "configs/digits.yaml" else a
                for a in command[1:]]
        assert main([*args, *shrink] if args[0] == "fit" else args) == 0, command
    assert Path("runs/digits-finetuned/model/model.safetensors").is_file()
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("digit.png  ")


# --- other libraries' checkpoints -------------------------------------------------------------


def image_folder_args(tmp_path: Path, pretrained: Path, *extra: str) -> list[str]:
    """Fine-tune with configs/imagenet_folder.yaml (the architecture from the source) for 2
    steps on a folder of 8x8 RGB images of 2 classes: the documented command, shrunk."""
    from test_cli import write_image_folder

    images = str(write_image_folder(tmp_path / "images", size=8))
    return ["--config", str(CONFIGS / "imagenet_folder.yaml"), "--model.model", "null",
            "--model.model_args", "null", "--model.pretrained", str(pretrained),
            "--data.init_args.root", images, "--data.init_args.val_root", images,
            "--data.init_args.image_shape", "8", "--data.init_args.batch_size", "4",
            "--data.init_args.num_workers", "0", "--trainer.accumulate_grad_batches", "1",
            "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.max_steps", "2",
            "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
            *QUIET, *extra]


def test_fine_tune_a_transformers_checkpoint_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    hf = transformers.PerceiverForImageClassificationLearned(transformers.PerceiverConfig(
        num_latents=4, d_latents=8, num_blocks=1, num_self_attends_per_block=1,
        num_self_attention_heads=2, num_cross_attention_heads=1, num_labels=3, image_size=8))
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(hf.config.to_json_string(use_diff=True))
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()},
              str(folder / "model.safetensors"))
    assert main(["fit", *image_folder_args(tmp_path, folder,
                                           "--model.pretrained_lr_ratio", "0.1")]) == 0
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["model"]["preset"] == "vision-perceiver-learned"
    assert saved["extra"]["classes"] == ["cat", "dog"]
    assert saved["model"]["overrides"]["num_classes"] == 2


def test_fine_tune_a_perceiver_pytorch_state_dict(tmp_path, capsys):
    perceiver_pytorch = pytest.importorskip("perceiver_pytorch")
    kwargs = dict(input_channels=1, input_axis=2, num_freq_bands=2, max_freq=4.0, depth=1,
                  num_latents=4, latent_dim=8, cross_heads=1, latent_heads=2, cross_dim_head=4,
                  latent_dim_head=4, num_classes=3)
    torch.manual_seed(0)
    theirs = perceiver_pytorch.Perceiver(**kwargs)
    torch.save(theirs.state_dict(), tmp_path / "perceiver.pt")

    assert main(["fit", *fit_args(tmp_path / "no-kwargs", tmp_path / "perceiver.pt")]) == 1
    assert "pass the constructor keywords that made it as --model.pretrained_kwargs" in \
        capsys.readouterr().err
    root = tmp_path / "run"
    assert main(["fit", *fit_args(root, tmp_path / "perceiver.pt",
                                  "--model.pretrained_kwargs", json.dumps(kwargs))]) == 0
    tuned = omniperceiver.from_pretrained(root / "model")
    assert tuned.recipe["preset"] == "perceiver-pytorch"
    assert tuned.decoder.head.out_features == 10


def write_deepmind_pickle(tmp_path: Path) -> Path:
    """A tiny DeepMind Fourier-features ImageNet checkpoint (2 bands), as the release's
    pickles hold their parameters."""
    from test_convert_deepmind import _classifier, _encoder

    params = {}
    _encoder(params, "perceiver_encoder", input_channels=3 + 2 * (2 * 2 + 1), self_attends=1)
    _classifier(params, num_classes=5)
    params = {m: {k: v.astype(np.float32) for k, v in d.items()} for m, d in params.items()}
    path = tmp_path / "imagenet_fourier_position_encoding.pystate"
    path.write_bytes(pickle.dumps({"params": params, "state": {}}))
    return path


@pytest.mark.filterwarnings("ignore:unpickling")
def test_a_deepmind_pickle_needs_trust_pickle(tmp_path, capsys):
    path = write_deepmind_pickle(tmp_path)
    kwargs = {"num_bands": 2, "max_resolution": [8, 8],
              "encoder": {"num_blocks": 1, "self_attend": {"heads": 2}}}
    args = image_folder_args(tmp_path, path, "--model.pretrained_kwargs", json.dumps(kwargs))
    assert main(["fit", *args]) == 1
    err = capsys.readouterr().err
    assert "a Python pickle (a DeepMind checkpoint)" in err
    assert "--model.trust_pickle true" in err
    assert not (tmp_path / "run").exists()

    assert main(["fit", *args, "--model.trust_pickle", "true"]) == 0
    tuned = omniperceiver.from_pretrained(tmp_path / "run" / "model")
    assert tuned.recipe["preset"] == "vision-perceiver-fourier"
    assert tuned.decoder.head.out_features == 2
