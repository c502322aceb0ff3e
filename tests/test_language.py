"""Byte-level language modelling: the corpus split by file, its windows, ``omniperceiver fit``
with configs/perceiver_ar_bytes.yaml (shrunk), and ``omniperceiver generate``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning")

import omniperceiver  # noqa: E402
from omniperceiver.adapters import ByteTokenizer  # noqa: E402
from omniperceiver.cli import main  # noqa: E402
from omniperceiver.training.language import (  # noqa: E402
    ByteCorpus,
    ByteWindows,
    TextBytesData,
    file_split,
)

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "perceiver_ar_bytes.yaml"
TINY = {"max_context": 32, "num_latents": 8, "dim": 16, "heads": 2, "num_self_attends": 1}


def write_text_folder(root: Path, count: int = 40) -> Path:
    for i in range(count):
        folder = root / f"package{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"module{i}.py").write_text(f"def f{i}(x):\n    return x * {i}\n" * 20)
    (root / "tests").mkdir()
    (root / "tests" / "test_skipped.py").write_text("left out\n")
    (root / "notes.txt").write_text("not a .py file\n")
    return root


def test_corpus_splits_by_file_hash_deterministically(tmp_path):
    root = write_text_folder(tmp_path / "text")
    corpus = ByteCorpus(root)
    names = [p.relative_to(root).as_posix() for p in root.rglob("module*.py")]
    expected = {split: sum(file_split(n, (0.05, 0.05)) == split for n in names)
                for split in ("train", "val", "test")}
    assert corpus.files == expected and sum(expected.values()) == 40
    total = sum(len(p.read_bytes()) for p in root.rglob("module*.py"))
    assert sum(len(b) for b in corpus.splits.values()) == total  # no test folder, no .txt
    again = ByteCorpus(root)
    assert all((again.splits[s] == corpus.splits[s]).all() for s in corpus.splits)
    description = corpus.description
    assert description["train"] == {"files": corpus.files["train"],
                                    "bytes": len(corpus.splits["train"])}
    assert description["python"] and description["root"] == str(root)
    capped = ByteCorpus(root, max_bytes=100)
    assert len(capped.splits["train"]) == 100


def test_the_default_corpus_is_the_standard_library():
    corpus = ByteCorpus(max_bytes=10_000)
    assert corpus.description["corpus"] == "the Python standard library"
    assert corpus.files["train"] > 0 and len(corpus.splits["train"]) == 10_000


def test_windows_are_inputs_and_next_tokens():
    tokens = torch.arange(100) + ByteTokenizer.NUM_SPECIAL
    train = ByteWindows(tokens, 10, 5, random=True, seed=1)
    ids, targets = train[3]
    assert ids.shape == targets.shape == (10,)
    assert torch.equal(ids[1:], targets[:-1]) and targets[-1] == ids[-1] + 1
    assert torch.equal(train[3][0], ByteWindows(tokens, 10, 5, random=True, seed=1)[3][0])
    evaluation = ByteWindows(tokens, 10, 4, random=False)
    assert [evaluation.start(i) for i in range(4)] == [0, 29, 59, 89]


def test_bad_options_are_reported(tmp_path):
    with pytest.raises(omniperceiver.errors.DatasetError, match="does not exist"):
        TextBytesData(root=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(omniperceiver.errors.DatasetError, match="no .py files"):
        TextBytesData(root=str(tmp_path / "empty"))
    text = str(write_text_folder(tmp_path / "text"))
    for option, value in (("context", 0), ("batch_size", 0), ("max_bytes", -5),
                          ("eval_windows", 0)):
        with pytest.raises(omniperceiver.errors.ConfigError,
                           match=f"TextBytesData options: {option} must"):
            TextBytesData(root=text, **{option: value})
    data = TextBytesData(root=str(write_text_folder(tmp_path / "small", count=2)), context=8)
    with pytest.raises(omniperceiver.errors.DatasetError, match="the val split .* has 0 bytes"):
        data.dataset("val")


def fit_args(root: Path, run: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(CONFIG), "--trainer.default_root_dir", str(run),
            "--model.model_args", json.dumps(TINY), "--data.init_args.root", str(root),
            "--data.init_args.context", "32", "--data.init_args.batch_size", "4",
            "--data.init_args.eval_windows", "4", "--trainer.max_steps", "3",
            "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("language")
    root, run = write_text_folder(tmp / "text", count=120), tmp / "run"
    assert main(fit_args(root, run)) == 0
    return run


def test_fit_reports_bits_per_byte_and_exports_the_model(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["steps"] == 3
    assert math.isclose(metrics["test_bits_per_byte"], metrics["test_loss"] / math.log(2),
                        rel_tol=1e-4)
    assert metrics["data"]["train"]["files"] > 0 and metrics["data"]["context"] == 32
    model = omniperceiver.from_pretrained(trained / "model")
    assert isinstance(model, omniperceiver.PerceiverAR) and model.max_context == 32
    assert (trained / "checkpoints" / "last.ckpt").is_file()
    assert (trained / "plots" / "learning_curves.png").is_file()


def test_context_longer_than_the_model_is_an_error(tmp_path, capsys):
    root = write_text_folder(tmp_path / "text", count=120)
    args = fit_args(root, tmp_path / "run", "--data.init_args.context", "64")
    assert main(args) == 1
    assert "longer than the model's max_context" in capsys.readouterr().err


def test_generate_streams_the_sampled_bytes(trained, capsys):
    args = ["generate", str(trained / "model"), "--prompt", "def ", "--max-new-tokens", "12",
            "--seed", "3", "--top-k", "5"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    model = omniperceiver.from_pretrained(trained / "model")
    ids, _ = ByteTokenizer().encode("def ", add_special_tokens=False)
    out = model.generate(ids, 12, 0.8, 5, None, 3)
    expected = bytes(t - ByteTokenizer.NUM_SPECIAL for t in out[0, 4:].tolist()
                     if t >= ByteTokenizer.NUM_SPECIAL).decode("utf-8", errors="replace")
    assert printed == expected + "\n"
    prompt = trained / "prompt.py"
    prompt.write_bytes(b"import \xff")  # not UTF-8: read as bytes
    assert main(["generate", str(trained / "model"), "--prompt-file", str(prompt),
                 "--max-new-tokens", "3", "--temperature", "0"]) == 0


def test_generate_with_a_stride_streams_what_the_model_generates(trained, capsys):
    text = "def main():\n    return parse(sys.argv)\n"  # longer than the context of 32
    args = ["generate", str(trained / "model"), "--prompt", text, "--max-new-tokens", "20",
            "--temperature", "0", "--stride", "8"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    model = omniperceiver.from_pretrained(trained / "model")
    ids, _ = ByteTokenizer().encode(text, add_special_tokens=False)
    out = model.generate(ids, 20, 0, stride=8)
    expected = bytes(t - ByteTokenizer.NUM_SPECIAL for t in out[0, len(text):].tolist()
                     if t >= ByteTokenizer.NUM_SPECIAL).decode("utf-8", errors="replace")
    assert printed == expected + "\n"


@pytest.mark.parametrize("args, message", [
    (["--prompt", "x", "--stride", "0"], "--stride: expected an integer >= 1, got '0'"),
    (["--prompt", "x", "--stride", "33"], "--stride: expected at most the model's context (32)"),
    (["--prompt", ""], "the prompt is empty"),
    (["--prompt", "x", "--max-new-tokens", "-1"], "--max-new-tokens: expected an integer"),
    (["--prompt", "x", "--temperature", "hot"], "--temperature: expected a number"),
    (["--prompt", "x", "--top-p", "1.5"], "--top-p: expected a number in (0, 1]"),
    ([], "--prompt TEXT or --prompt-file FILE"),
])
def test_generate_errors_are_one_line(trained, args, message, capsys):
    assert main(["generate", str(trained / "model"), *args]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_generate_refuses_what_is_not_a_perceiver_ar(tmp_path, capsys):
    classifier = omniperceiver.create_model("mnist-perceiver", encoder=dict(
        num_latents=4, latent_dim=8, num_blocks=1, self_attends_per_block=1,
        num_cross_attends=1))
    omniperceiver.save_pretrained(classifier, tmp_path / "classifier")
    for folder, message in ((tmp_path / "classifier", "not a Perceiver AR model"),
                            (tmp_path, "not a model saved by save_pretrained"),
                            (tmp_path / "missing", "no such model folder")):
        assert main(["generate", str(folder), "--prompt", "x"]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_stream_yields_what_generate_returns():
    torch.manual_seed(0)
    model = omniperceiver.PerceiverAR(max_context=16, num_latents=4, dim=16, heads=2,
                                      num_self_attends=1).eval()
    prompt = torch.randint(6, 262, (2, 7))
    out, logits = model.generate(prompt, 20, 1.0, None, 0.9, 5, return_logits=True)
    steps = list(model.stream(prompt, 20, 1.0, None, 0.9, 5))
    assert torch.equal(out[:, 7:], torch.stack([t for t, _ in steps], dim=1))
    assert torch.equal(logits, torch.stack([s for _, s in steps], dim=1))
