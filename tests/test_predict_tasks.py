"""``omniperceiver predict`` with a masked language model (fill in ``[MASK]`` bytes) and an
optical-flow model (flow between two image files, tiled over frames larger than the training
size), converted from tiny random transformers models and checked against transformers'
own outputs; the tiling against an independent NumPy computation."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from omniperceiver import create_model, save_pretrained
from omniperceiver.adapters import flow_patches
from omniperceiver.cli import main as cli_main
from omniperceiver.convert.cli import main as convert_main
from omniperceiver.renames import upgrade_input_spec
from omniperceiver.training.predict_tasks import masked_ids, tile_starts, tile_weights

transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

TINY = dict(num_latents=4, d_latents=16, num_blocks=1, num_self_attends_per_block=1,
            num_self_attention_heads=2, num_cross_attention_heads=1,
            attention_probs_dropout_prob=0.0)


def tiny_checkpoint(folder, architecture, **config):
    torch.manual_seed(0)
    model = getattr(transformers, architecture)(transformers.PerceiverConfig(**TINY, **config))
    with torch.no_grad():  # transformers initialises some weights to 0/1: make them all matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    model.eval().save_pretrained(folder)
    return model


def convert(tmp_path, architecture, **config):
    hf = tiny_checkpoint(tmp_path / "hf", architecture, **config)
    assert convert_main(["--from", "transformers", str(tmp_path / "hf"), str(tmp_path / "ours"),
                         "--semantics", "transformers"]) == 0
    return hf, tmp_path / "ours"


# --- masked bytes ------------------------------------------------------------------------------


def test_masked_bytes_are_transformers_most_likely_bytes(tmp_path, capsys):
    hf, folder = convert(tmp_path, "PerceiverForMaskedLM", d_model=16,
                         max_position_embeddings=40)
    text = "The quick [MASK][MASK]own fox, [MASK]é."
    path = tmp_path / "sentence.txt"
    path.write_text(text, encoding="utf-8")
    capsys.readouterr()
    assert cli_main(["predict", str(folder), str(path)]) == 0
    printed = capsys.readouterr().out

    # transformers' tokenizer reads "[MASK]" as its mask token and adds [CLS] ... [SEP].
    tokenizer = transformers.PerceiverTokenizer()
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert ids.tolist() == [masked_ids(text, 40).tolist()]
    with torch.no_grad():
        logits = hf(input_ids=ids).logits[0, :ids.shape[1]]  # it decodes all 40 positions
    best = logits[:, 6:].argmax(-1) + 6  # bytes only: ids 6.. are the 256 byte values
    filled = torch.where(ids[0] == tokenizer.mask_token_id, best, ids[0])
    expected = bytes(i - 6 for i in filled.tolist() if i >= 6).decode("utf-8", errors="replace")
    assert printed == f"{path}: {expected}\n"
    assert "[MASK]" not in printed and expected.endswith("é.")


def test_a_language_model_saved_without_input_spec_predicts(tmp_path, capsys):
    """The spec is told by the model's input adapter when the folder has none."""
    model = create_model("language-perceiver", max_length=16, num_channels=8,
                         encoder={"num_latents": 2, "latent_dim": 8, "num_blocks": 1,
                                  "self_attends_per_block": 1,
                                  "cross_attend": {"heads": 1}, "self_attend": {"heads": 1}})
    save_pretrained(model, tmp_path / "lm")
    (tmp_path / "a.txt").write_text("ab[MASK]d")
    assert cli_main(["predict", str(tmp_path / "lm"), str(tmp_path / "a.txt")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{tmp_path / 'a.txt'}: ab") and out.endswith("d\n")


@pytest.mark.parametrize("text, message", [
    ("no masks here", "no \\[MASK\\]"),
    ("x" * 20 + "[MASK]", "21 bytes .* at most 14"),
    (b"caf\xe9 [MASK]", "not UTF-8 text"),
])
def test_masked_text_errors_are_one_line(tmp_path, capsys, text, message):
    model = create_model("language-perceiver", max_length=16, num_channels=8,
                         encoder={"num_latents": 2, "latent_dim": 8, "num_blocks": 1,
                                  "self_attends_per_block": 1,
                                  "cross_attend": {"heads": 1}, "self_attend": {"heads": 1}})
    save_pretrained(model, tmp_path / "lm")
    path = tmp_path / "t.txt"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert cli_main(["predict", str(tmp_path / "lm"), str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err
    assert re.search(message, err)


# --- optical flow ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(tile=st.integers(2, 40), extra=st.integers(0, 200), overlap=st.integers(0, 39))
def test_tiles_cover_the_frame_with_the_overlap(tile, extra, overlap):
    overlap = min(overlap, tile - 1)
    size = tile + extra
    starts = tile_starts(size, tile, overlap)
    assert starts[0] == 0 and starts[-1] == size - tile
    assert starts == sorted(set(starts))
    steps = np.diff(starts)
    assert (steps <= tile - overlap).all()  # neighbours share at least the overlap
    covered = np.zeros(size, bool)
    for s in starts:
        covered[s:s + tile] = True
    assert covered.all()


def test_tile_weights_fall_towards_the_edges():
    w = tile_weights(4, 7).numpy()
    assert w.shape == (4, 7)
    assert w[0].tolist() == [1] * 7 and w[:, 0].tolist() == [1] * 4
    assert w[1, 1:6].tolist() == [2, 2, 2, 2, 2]
    assert (w == w[::-1]).all() and (w == w[:, ::-1]).all()


def frame_file(path, seed, size):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def reference_flow(hf, first, second, train_size, min_overlap=20):
    """transformers' model on each tile (patches of the tile), tiles every ``train_size -
    min_overlap`` pixels clamped to the border, blended with weights min(distance to the
    nearest edge + 1) as DeepMind's example, in NumPy."""
    frames = [np.asarray(Image.open(p).convert("RGB"), np.float64) / 255 * 2 - 1
              for p in (first, second)]
    x = torch.from_numpy(np.stack(frames))[None].float()  # (1, 2, H, W, 3)
    height, width = frames[0].shape[:2]
    th, tw = train_size
    ys = sorted({min(y, height - th) for y in range(0, height, th - min_overlap)})
    xs = sorted({min(x, width - tw) for x in range(0, width, tw - min_overlap)})
    flow, count = np.zeros((height, width, 2)), np.zeros((height, width, 1))
    wy = np.minimum(np.arange(th) + 1, th - np.arange(th))
    wx = np.minimum(np.arange(tw) + 1, tw - np.arange(tw))
    weights = np.minimum(wy[:, None], wx[None, :])[..., None]
    for y in ys:
        for x0 in xs:
            tile = flow_patches(x[:, :, y:y + th, x0:x0 + tw])  # (1, 2, th, tw, 27)
            with torch.no_grad():
                piece = hf(inputs=tile.permute(0, 1, 4, 2, 3)).logits[0].numpy()
            flow[y:y + th, x0:x0 + tw] += 20 * piece * weights
            count[y:y + th, x0:x0 + tw] += weights
    return flow / count


@pytest.mark.parametrize("size", [(24, 30), (63, 50)])
def test_flow_between_two_files_equals_tiled_transformers(tmp_path, capsys, size):
    train_size = (24, 30)
    hf, folder = convert(tmp_path, "PerceiverForOpticalFlow", train_size=list(train_size))
    first = frame_file(tmp_path / "frame1.png", 1, size)
    second = frame_file(tmp_path / "frame2.png", 2, size)
    capsys.readouterr()
    assert cli_main(["predict", str(folder), str(first), str(second),
                     "--out", str(tmp_path / "flows")]) == 0
    out = capsys.readouterr().out
    target = tmp_path / "flows" / "frame1_frame2.flow.npy"
    assert out.startswith(f"{first} -> {second}: flow {size[0]}x{size[1]}, mean length ")
    assert out.rstrip().endswith(str(target))
    flow = np.load(target)
    assert flow.shape == (*size, 2) and flow.dtype == np.float32
    np.testing.assert_allclose(flow, reference_flow(hf, first, second, train_size),
                               atol=1e-3)  # float32 on both sides; flows of a few pixels
    # Nothing is overwritten: the same command again stops before computing anything.
    before = target.read_bytes()
    assert cli_main(["predict", str(folder), str(first), str(second),
                     "--out", str(tmp_path / "flows")]) == 1
    assert "exists" in capsys.readouterr().err and target.read_bytes() == before


@pytest.mark.parametrize("files, message", [
    (["frame1.png"], "pairs of frames"),
    (["frame1.png", "small.png"], "differ in size"),
    (["small.png", "small.png"], "at least its training size 24x30"),
    (["frame1.png", "notes.txt"], "pairs of image files"),
    (["frame1.png", "missing.png"], "missing.png: no such file"),
    (["frame1.png", "broken.png"], "broken.png"),
])
def test_flow_errors_are_one_line(tmp_path, capsys, files, message):
    _, folder = convert(tmp_path, "PerceiverForOpticalFlow", train_size=[24, 30])
    frame_file(tmp_path / "frame1.png", 1, (24, 30))
    frame_file(tmp_path / "small.png", 2, (20, 30))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    capsys.readouterr()
    assert cli_main(["predict", str(folder), *[str(tmp_path / f) for f in files]]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_model_predict_cannot_read_files_for_says_what_predict_runs(tmp_path, capsys):
    model = create_model("perceiver-ar-bytes-small", max_context=16, num_latents=4, dim=16,
                         heads=2, num_self_attends=1)
    save_pretrained(model, tmp_path / "ar")
    (tmp_path / "a.txt").write_text("abc")
    assert cli_main(["predict", str(tmp_path / "ar"), str(tmp_path / "a.txt")]) == 1
    err = capsys.readouterr().err
    assert "(perceiver-ar-bytes-small) has no input_spec" in err
    assert "masked byte language models and optical-flow models" in err
    assert "omniperceiver generate" in err
    assert "Traceback" not in err


RUN_0_3_0 = Path(__file__).resolve().parent / "fixtures" / "run_folders" / "mnist-0.3.0"


def test_input_specs_of_0_3_0_are_read_in_todays_keys(tmp_path, capsys):
    """0.3.0 wrote ``image_size``/``channels``; its exported model and its checkpoint still
    predict, with the same output."""
    assert upgrade_input_spec({"modality": "multimodal", "image": {
        "modality": "image", "image_size": [28, 28], "channels": 1}}) == {
        "modality": "multimodal", "image": {"modality": "image", "image_shape": [28, 28],
                                            "input_channels": 1}}
    digit = tmp_path / "digit.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), np.uint8)).save(digit)
    outputs = []
    for model in (RUN_0_3_0 / "model", RUN_0_3_0 / "checkpoints" / "last.ckpt"):
        assert cli_main(["predict", str(model), str(digit), "--top_k", "10"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0].startswith(str(digit))


def test_a_language_model_with_nan_weights_is_reported_as_damaged(tmp_path, capsys):
    model = create_model("language-perceiver", max_length=16, num_channels=8,
                         encoder={"num_latents": 2, "latent_dim": 8, "num_blocks": 1,
                                  "self_attends_per_block": 1,
                                  "cross_attend": {"heads": 1}, "self_attend": {"heads": 1}})
    with torch.no_grad():
        model.input_adapter.embedding.weight.fill_(float("nan"))
    save_pretrained(model, tmp_path / "lm")
    (tmp_path / "a.txt").write_text("ab[MASK]d")
    assert cli_main(["predict", str(tmp_path / "lm"), str(tmp_path / "a.txt")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'a.txt'}: the model's output is NaN or infinite; its weights may be " \
        "damaged" in err and "Traceback" not in err
