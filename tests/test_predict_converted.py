"""``omniperceiver predict`` with a converted transformers image classifier: the folder
records the source's class names and image preparation, and predict reproduces transformers'
logits on an image prepared by transformers' own ``PerceiverImageProcessor``.

Tiny random models (no downloads). transformers' processor is used through its Pillow path
(``PerceiverImageProcessorPil``), the one it takes without torchvision.
"""

import json

import numpy as np
import pytest
import torch

from omniperceiver.cli import load_trained
from omniperceiver.cli import main as cli_main
from omniperceiver.convert.cli import main as convert_main
from omniperceiver.convert.transformers import class_names
from omniperceiver.data.preprocess import PERCEIVER_IMAGE_PROCESSOR, RESAMPLE
from omniperceiver.training.inputs import load_input_file

transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

NAMES = ["tabby cat", "goldfish", "teapot", "volcano"]
TINY = dict(num_latents=4, d_latents=16, num_blocks=1, num_self_attends_per_block=1,
            num_self_attention_heads=2, num_cross_attention_heads=1,
            attention_probs_dropout_prob=0.0)


def processor_class():
    return getattr(transformers, "PerceiverImageProcessorPil",
                   transformers.PerceiverImageProcessor)


def tiny_checkpoint(folder, architecture, processor=None, **config):
    """A random transformers model saved with save_pretrained (and its processor's config)."""
    torch.manual_seed(0)
    cfg = transformers.PerceiverConfig(
        **TINY, id2label=dict(enumerate(NAMES)),
        label2id={name: i for i, name in enumerate(NAMES)}, **config)
    model = getattr(transformers, architecture)(cfg).eval()
    with torch.no_grad():  # transformers initialises some weights to 0/1: make them all matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)
    return model


def photo(path, size):
    """A JPEG of ``size`` (width, height) with smooth colours and noise."""
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
    rgb = (rgb + rng.normal(0, 20, rgb.shape)).clip(0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(path, quality=90)
    return path


CASES = {  # architecture: (config, processor keywords or None for its defaults, image size)
    "PerceiverForImageClassificationLearned": (
        dict(image_size=6), dict(size={"height": 6, "width": 6},
                                 crop_size={"height": 8, "width": 8}), (13, 10)),
    "PerceiverForImageClassificationFourier": ({}, None, (300, 260)),
    "PerceiverForImageClassificationConvProcessing": ({}, None, (250, 290)),
}


@pytest.mark.parametrize("architecture", list(CASES))
def test_predict_matches_transformers_on_a_jpeg(tmp_path, capsys, architecture):
    config, processor_kwargs, image_size = CASES[architecture]
    processor = processor_class()(**(processor_kwargs or {}))
    hf = tiny_checkpoint(tmp_path / "hf", architecture,
                         processor if processor_kwargs else None, **config)
    out = tmp_path / "ours"
    assert convert_main(["--from", "transformers", "--semantics", "transformers",
                         str(tmp_path / "hf"), str(out)]) == 0
    image = photo(tmp_path / "photo.jpg", image_size)

    model, classes, spec = load_trained(out)
    assert classes == NAMES
    x = load_input_file(image, spec)
    with Image.open(image) as img:
        pixels = processor(images=img, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(x, pixels[0].permute(1, 2, 0), atol=1e-5, rtol=0)
    with torch.no_grad():
        expected = hf(pixel_values=pixels).logits
        torch.testing.assert_close(model(x[None]), expected, atol=1e-4, rtol=0)

    capsys.readouterr()
    assert cli_main(["predict", str(out), str(image), "--top_k", "2"]) == 0
    printed = capsys.readouterr().out
    top = expected[0].topk(2).indices.tolist()
    assert f"{NAMES[top[0]]} (" in printed and f"{NAMES[top[1]]} (" in printed


def test_the_folder_records_the_preparation(tmp_path):
    tiny_checkpoint(tmp_path / "hf", "PerceiverForImageClassificationLearned", image_size=6)
    convert_main(["--from", "transformers", str(tmp_path / "hf"), str(tmp_path / "ours")])
    spec = json.loads((tmp_path / "ours" / "config.json").read_text())["extra"]["input_spec"]
    assert spec == {"modality": "image", "image_shape": [6, 6], "input_channels": 3, "preprocess": {
        "channel_order": "RGB", "center_crop": {"fraction": [0.875, 0.875]},
        "resize": {"size": [6, 6], "resample": "bicubic"}, "rescale": 1 / 255,
        "normalize": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}}


def test_our_defaults_are_transformers_processor_defaults():
    p = processor_class()()
    ours = PERCEIVER_IMAGE_PROCESSOR
    assert tuple(ours["size"]) == (p.size["height"], p.size["width"])
    assert tuple(ours["crop_size"]) == (p.crop_size["height"], p.crop_size["width"])
    assert RESAMPLE[ours["resample"]] == int(p.resample)
    assert ours["rescale_factor"] == pytest.approx(p.rescale_factor)
    assert list(ours["image_mean"]) == pytest.approx(list(p.image_mean))
    assert list(ours["image_std"]) == pytest.approx(list(p.image_std))
    assert p.do_center_crop and p.do_resize and p.do_rescale and p.do_normalize


def test_a_source_without_names_gets_numbers(tmp_path, capsys):
    hf = tiny_checkpoint(tmp_path / "hf", "PerceiverForImageClassificationLearned", image_size=6)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    del config["id2label"], config["label2id"]
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    assert class_names(config, 4) == ["0", "1", "2", "3"]
    assert class_names({"id2label": {"0": "a"}}, 2) == ["0", "1"]
    convert_main(["--from", "transformers", str(tmp_path / "hf"), str(tmp_path / "ours")])
    image = photo(tmp_path / "photo.png", (8, 8))
    capsys.readouterr()
    assert cli_main(["predict", str(tmp_path / "ours"), str(image), "--top_k", "4"]) == 0
    printed = capsys.readouterr().out
    assert all(f"{i} (" in printed for i in range(hf.config.num_labels))
