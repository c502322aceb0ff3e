"""One user-error hierarchy, one command-line handler, one atomic writer; the command line
reports each mistake in one line naming the file or option at fault, without a traceback,
and leaves the files it was given as they were."""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from omniperceiver import create_model, errors, save_pretrained
from omniperceiver.cli import main, report_user_errors
from omniperceiver.files import write_atomically


@pytest.mark.parametrize("kind", [errors.ConfigError, errors.UnknownModelError,
                                  errors.CommandError, errors.ModelFileError,
                                  errors.InputFileError, errors.DatasetError,
                                  errors.MissingProgramError, errors.NonFiniteLossError])
def test_every_user_error_is_one_catchable_value_error(kind):
    assert issubclass(kind, errors.OmniPerceiverError) and issubclass(kind, ValueError)


def test_a_user_error_anywhere_in_the_chain_is_printed_without_a_traceback(capsys):
    def run():
        try:
            raise errors.DatasetError("data/x.png: cannot decode image")
        except errors.DatasetError as error:
            raise RuntimeError("wrapped by a framework") from error

    assert report_user_errors("omniperceiver fit", run) == 1
    err = capsys.readouterr().err
    assert err == "omniperceiver fit: error: data/x.png: cannot decode image\n"


def test_other_errors_keep_their_traceback():
    def run():
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        report_user_errors("omniperceiver fit", run)


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomically(path, fail)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    write_atomically(path, lambda f: f.write(b"new"))
    assert path.read_text() == "new"


# --- the command line: one line naming the file or option, exit status 1, nothing changed ---

SPEC = {"modality": "image", "image_shape": [4, 4], "input_channels": 1}


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def work(tmp_path):
    """A tiny saved image model (``model/``) and a valid input (``x.npy``)."""
    model = create_model("mnist-perceiver", image_shape=(4, 4), num_bands=2, encoder=dict(
        num_latents=4, latent_dim=8, num_blocks=1, self_attends_per_block=1,
        num_cross_attends=1, self_attend={"heads": 2}))
    save_pretrained(model, tmp_path / "model", extra={"input_spec": SPEC})
    np.save(tmp_path / "x.npy", np.zeros((4, 4), dtype=np.float32))
    return tmp_path


def fails(args: list[str], capsys, root: Path, *named: str) -> str:
    """``omniperceiver args`` returns 1 (an exception would carry its traceback) after one
    line ``omniperceiver <command>: error: ...`` (the last, after Lightning's log lines if
    any) that contains each of ``named``, and changes nothing under ``root``."""
    before = snapshot(root)
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    errors_printed = [line for line in err if line.startswith(f"omniperceiver {args[0]}: ")]
    assert errors_printed == err[-1:] and err[-1].startswith(f"omniperceiver {args[0]}: error: ")
    for name in named:
        assert name in err[-1], (name, err[-1])
    assert snapshot(root) == before
    return err[-1]


@pytest.mark.parametrize("name, damage", [
    ("model.safetensors", lambda b: b[:100]), ("model.safetensors", lambda b: b""),
    ("config.json", lambda b: b[:10]), ("config.json", lambda b: b"\xff\xfe"),
    ("config.json", lambda b: b"[1, 2]"),
])
def test_predict_with_a_damaged_model_names_the_file(work, capsys, name, damage):
    file = work / "model" / name
    file.write_bytes(damage(file.read_bytes()))
    fails(["predict", str(work / "model"), str(work / "x.npy")], capsys, work, str(file))


def test_predict_with_a_missing_model_file_names_it(work, capsys):
    (work / "model" / "model.safetensors").unlink()
    fails(["predict", str(work / "model"), str(work / "x.npy")], capsys, work,
          str(work / "model" / "model.safetensors"), "no such file")


def test_predict_given_the_weights_file_asks_for_the_folder(work, capsys):
    fails(["predict", str(work / "model" / "model.safetensors"), str(work / "x.npy")], capsys,
          work, "model.safetensors: is one file of a saved model; pass its folder")


def test_predict_given_a_folder_for_an_input_file(work, capsys):
    fails(["predict", str(work / "model"), str(work)], capsys, work,
          f"{work}: is a folder; this model takes files of images 4x4x1")


@pytest.mark.parametrize("top_k", ["0", "-2"])
def test_predict_refuses_a_top_k_below_one(work, capsys, top_k):
    fails(["predict", str(work / "model"), str(work / "x.npy"), "--top_k", top_k], capsys, work,
          f"--top_k must be >= 1 (the number of classes to print), got {top_k}")


@pytest.mark.parametrize("latents", ["4", "-1"])
def test_plot_attention_refuses_latents_out_of_range(work, capsys, latents):
    fails(["plot-attention", str(work / "model"), str(work / "x.npy"), "--latents", "0",
           latents, "--output", str(work / "a.png")], capsys, work,
          f"latent indices must lie in [0, 3], got values in [{min(0, int(latents))}, "
          f"{max(0, int(latents))}]")


@pytest.mark.parametrize("source, make, expected", [
    ("lucidrains", lambda p: p.write_bytes(b"not a checkpoint"), "not a PyTorch state dict"),
    ("lucidrains", lambda p: p.mkdir(), "is a folder; expected a file"),
    ("deepmind", lambda p: p.write_bytes(b"not a pickle"), "not a DeepMind Perceiver checkpoint"),
    ("transformers", lambda p: p.write_bytes(b"{}"), "is a file; expected a transformers "
                                                     "checkpoint folder"),
])
def test_convert_refuses_inputs_of_the_wrong_kind(tmp_path, capsys, source, make, expected):
    src = tmp_path / "input"
    make(src)
    args = ["convert", "--from", source, str(src), str(tmp_path / "out")]
    args += {"lucidrains": ["--kwargs", '{"num_freq_bands": 2, "depth": 1, "max_freq": 4.0}'],
             "deepmind": ["--trust-pickle"]}.get(source, [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unpickling warning of --trust-pickle
        fails(args, capsys, tmp_path, str(src), expected)


def test_convert_names_the_option_with_bad_json(tmp_path, capsys):
    (tmp_path / "sd.pt").write_bytes(b"")
    fails(["convert", "--from", "lucidrains", str(tmp_path / "sd.pt"), str(tmp_path / "out"),
           "--kwargs", "{depth: 1"], capsys, tmp_path, "--kwargs: not valid JSON")


def test_a_file_system_error_about_a_chosen_location_is_one_line(capsys):
    def run():
        raise PermissionError(13, "Permission denied", "/read-only/model")

    assert report_user_errors("omniperceiver export", run) == 1
    assert capsys.readouterr().err == ("omniperceiver export: error: /read-only/model: "
                                       "Permission denied\n")


def training_args(root: Path, *extra: str) -> list[str]:
    pytest.importorskip("lightning")
    from test_cli import tiny_args

    return tiny_args("mnist.yaml", root, extra=["--report.plots", "false", *extra])


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
def test_a_malformed_yaml_config_names_the_file_and_line(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  lr: [0.1\n  model: mnist-perceiver\n")
    fails(["fit", "--config", str(config)], capsys, tmp_path, f"{config}: not a YAML config",
          "line 3")
    fails(["fit", "--config", str(tmp_path / "missing.yaml")], capsys, tmp_path,
          "missing.yaml: no such file")


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
def test_an_accelerator_the_machine_lacks_is_one_line(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    fails(["fit", *training_args(tmp_path / "run", "--trainer.accelerator", "gpu")], capsys,
          tmp_path, "trainer options (accelerator='gpu'", "No supported gpu backend found")


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
def test_an_output_folder_that_cannot_be_written_stops_fit_before_it_starts(tmp_path, capsys,
                                                                           monkeypatch):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    fails(["fit", *training_args(tmp_path / "notes.txt" / "run")], capsys, tmp_path,
          f"--trainer.default_root_dir {tmp_path / 'notes.txt' / 'run'}: "
          f"{tmp_path / 'notes.txt'} is a file, not a folder")
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        False if Path(path) == read_only else real_access(path, mode, **kw)))
    fails(["fit", *training_args(read_only / "run")], capsys, tmp_path,
          f"cannot write to {read_only} (read-only or no permission)")


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
def test_validate_without_a_validation_split_says_how_to_get_one(tmp_path, capsys):
    fails(["validate", *training_args(tmp_path / "run", "--data.init_args.val_size", "0")],
          capsys, tmp_path, "validate: MNISTData has no validation split (val_size=0",
          "--data.init_args.val_size 0.1")


def test_predict_gives_no_answer_when_the_model_computes_nan(tmp_path, capsys):
    import torch

    model = create_model("mnist-perceiver", image_shape=(4, 4), num_bands=2, encoder=dict(
        num_latents=4, latent_dim=8, num_blocks=1, self_attends_per_block=1,
        num_cross_attends=1, self_attend={"heads": 2}))
    with torch.no_grad():
        model.encoder.latents.fill_(float("nan"))
    save_pretrained(model, tmp_path / "model", extra={"input_spec": SPEC})
    np.save(tmp_path / "x.npy", np.zeros((4, 4), dtype=np.float32))
    fails(["predict", str(tmp_path / "model"), str(tmp_path / "x.npy")], capsys, tmp_path,
          f"the model's output for {tmp_path / 'x.npy'} is NaN or infinite")
