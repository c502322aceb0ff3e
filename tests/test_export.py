"""torch.export and ONNX export: a dynamic batch axis, and the same outputs as PyTorch
(onnxruntime within 1e-4)."""

import pytest
import torch

from omniperceiver import create_model, save_pretrained
from omniperceiver.export import example_input, export_onnx, export_program, main

SMALL = dict(num_latents=6, latent_dim=16, num_blocks=2, self_attends_per_block=1,
             self_attend={"heads": 2})


def conv_classifier():
    torch.manual_seed(0)
    return create_model("vision-perceiver-conv", num_classes=5, image_shape=20,
                        encoder=SMALL).eval()


def test_torch_export_has_a_dynamic_batch_and_survives_the_fourier_cache(tmp_path):
    model = conv_classifier()
    x = torch.randn(2, 20, 20, 3)
    with torch.no_grad():
        model(x)  # fills the Fourier-feature cache before tracing
        program = export_program(model, x)
        for batch in (1, 5):
            y = torch.randn(batch, 20, 20, 3)
            torch.testing.assert_close(program.module()(y), model(y), atol=1e-6, rtol=0)
    assert model.input_adapter.check_finite  # switched off for tracing only
    # The command line writes the same program (.pt2), the input shape read from the adapter.
    save_pretrained(model, tmp_path / "ckpt")
    assert main([str(tmp_path / "ckpt"), str(tmp_path / "model.pt2")]) == 0
    loaded = torch.export.load(str(tmp_path / "model.pt2"))
    with torch.no_grad():
        torch.testing.assert_close(loaded.module()(x), model(x), atol=1e-6, rtol=0)


def test_onnx_export_cli_matches_onnxruntime_for_every_batch_size(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = create_model("perceiver-pytorch", input_channels=3, input_axis=2, num_freq_bands=4,
                         max_freq=8.0, depth=2, num_latents=6, latent_dim=16, latent_heads=2,
                         cross_dim_head=8, latent_dim_head=8, num_classes=4,
                         weight_tie_layers=True).eval()
    save_pretrained(model, tmp_path / "ckpt")
    out = tmp_path / "model.onnx"
    assert main([str(tmp_path / "ckpt"), str(out)]) == 1  # the input shape is not known
    assert main([str(tmp_path / "ckpt"), str(out), "--input-shape", "9,11,3",
                 "--opset", "17"]) == 0
    assert max(o.version for o in onnx.load(str(out)).opset_import if o.domain == "") >= 17
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 4):
        x = torch.randn(batch, 9, 11, 3)
        (logits,) = session.run(None, {"inputs": x.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(logits), model(x), atol=1e-4, rtol=0)


def test_opset_below_17_is_refused(tmp_path):
    with pytest.raises(ValueError, match="opset"):
        export_onnx(conv_classifier(), tmp_path / "x.onnx", opset=16)


def test_example_input_needs_a_shape_when_the_model_does_not_know_it():
    model = create_model("perceiver-pytorch", num_freq_bands=2, depth=1, max_freq=4.0,
                         num_latents=2, latent_dim=8, latent_heads=1, latent_dim_head=8,
                         cross_dim_head=8, num_classes=2)
    with pytest.raises(ValueError, match="input_shape"):
        example_input(model)
    assert example_input(model, (5, 5, 3), batch=1).shape == (1, 5, 5, 3)


def test_onnx_export_without_onnxscript_says_what_to_install(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript -> ImportError
    model = create_model("mnist-perceiver", encoder={"num_latents": 2, "latent_dim": 8,
                                                     "num_blocks": 1, "self_attends_per_block": 1,
                                                     "num_cross_attends": 1,
                                                     "self_attend": {"heads": 1}})
    with pytest.raises(ImportError, match=r"pip install 'omniperceiver\[export\]'"):
        export_onnx(model, tmp_path / "m.onnx")
    save_pretrained(model, tmp_path / "model")
    assert main([str(tmp_path / "model"), str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert "omniperceiver[export]" in err and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()
