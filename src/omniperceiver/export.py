"""Export a model for deployment: ``torch.export`` programs and ONNX, with a dynamic batch.

    omniperceiver export CHECKPOINT_DIR OUT.onnx [--opset 18] [--input-shape 224,224,3]
    omniperceiver export CHECKPOINT_DIR OUT.pt2                  # a torch.export program

The exported graph takes one input, the model's input tensor (e.g. images
(batch, H, W, C)), and returns its output (logits (batch, num_classes) for a classifier). The
batch axis is dynamic; the other axes are fixed at export time (``input_shape``, read from the
model's input adapter when it knows it). Input validation that depends on the data (the
finiteness check) is left out of the graph. ONNX needs ``onnx`` and ``onnxscript``
(``pip install omniperceiver[export]``); the exported file is checked against the PyTorch
model with onnxruntime when it is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

MIN_OPSET = 17


class _SingleInput(nn.Module):
    """``model(x)`` as a module with one tensor argument (what exporters trace)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


@contextlib.contextmanager
def _without_finite_checks(model: nn.Module) -> Iterator[None]:
    """Switch off the adapters' data-dependent NaN/Inf check while tracing (restored after)."""
    switched = [m for m in model.modules() if getattr(m, "check_finite", False) is True]
    for m in switched:
        m.check_finite = False
    try:
        yield
    finally:
        for m in switched:
            m.check_finite = True


def input_shape_of(model: nn.Module) -> tuple[int, ...] | None:
    """The shape of one input example (without the batch axis), when the input adapter knows
    it: an image adapter's (H, W, C), a grid adapter with a configured ``input_shape``."""
    adapter = getattr(model, "input_adapter", None)
    if adapter is None:
        return None
    channels = getattr(adapter, "input_channels", None)
    for name in ("image_shape", "video_shape"):
        shape = getattr(adapter, name, None)
        if shape is not None and channels is not None:
            return (*shape, channels) if getattr(adapter, "channels_last", True) \
                else (channels, *shape)
    config = getattr(model, "config", None)
    shape = getattr(config, "input_shape", None)
    if shape is not None and channels is not None:
        return (*shape, channels)
    return None


def example_input(model: nn.Module, input_shape: Sequence[int] | None = None, *,
                  batch: int = 2) -> Tensor:
    """A random input of ``(batch, *input_shape)`` in the model's dtype."""
    shape = tuple(input_shape) if input_shape is not None else input_shape_of(model)
    if shape is None:
        raise ValueError(f"the input shape of this {type(model).__name__} is not known: pass "
                         f"input_shape (without the batch axis), e.g. (224, 224, 3)")
    dtype = next(model.parameters()).dtype
    return torch.randn(batch, *shape, dtype=dtype)


def _dynamic_batch(dynamic_batch: bool):
    return ({0: torch.export.Dim("batch", min=1, max=65536)},) if dynamic_batch else None


def export_program(model: nn.Module, example: Tensor, *,
                   dynamic_batch: bool = True) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model(example)`` with a dynamic batch axis (eval mode)."""
    model = model.eval()
    with _without_finite_checks(model):
        return torch.export.export(_SingleInput(model).eval(), (example,),
                                   dynamic_shapes=_dynamic_batch(dynamic_batch))


def export_onnx(model: nn.Module, path: str | Path, *, example: Tensor | None = None,
                input_shape: Sequence[int] | None = None, opset: int = 18,
                dynamic_batch: bool = True, verify: bool = True, atol: float = 1e-4) -> Path:
    """Write ``model`` as ONNX (opset >= 17, dynamic batch) to ``path``.

    ``example`` (or ``input_shape``, or the adapter's own shape) fixes the non-batch axes.
    With ``verify`` and onnxruntime installed, the file's output on ``example`` must match the
    model's within ``atol`` (ValueError otherwise).
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be at least {MIN_OPSET}, got {opset}")
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            raise ImportError(f"ONNX export needs {module}: pip install 'omniperceiver[export]' "
                              "(onnx, onnxscript, onnxruntime)") from None
    model = model.eval()
    if example is None:
        example = example_input(model, input_shape)
    output_name = "logits" if type(getattr(model, "output_adapter", None)).__name__ \
        == "ClassificationOutput" else "outputs"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _without_finite_checks(model):
        program = torch.onnx.export(
            _SingleInput(model).eval(), (example,), dynamo=True, opset_version=opset,
            dynamic_shapes=_dynamic_batch(dynamic_batch), input_names=["inputs"],
            output_names=[output_name], verbose=False)
    program.save(str(path))
    if verify:
        max_diff = onnx_max_abs_diff(model, path, example)
        if max_diff is not None and not max_diff <= atol:
            raise ValueError(f"the ONNX model's outputs differ from PyTorch's by {max_diff:.3g} "
                             f"(more than atol={atol})")
    return path


def onnx_max_abs_diff(model: nn.Module, path: str | Path, example: Tensor) -> float | None:
    """Max abs difference between onnxruntime's and PyTorch's outputs on ``example`` (None
    when onnxruntime is not installed)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (theirs,) = session.run(None, {session.get_inputs()[0].name: example.cpu().numpy()})
    with torch.no_grad():
        ours = model(example)
    return float((torch.from_numpy(theirs) - ours.cpu()).abs().max())


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 224,224,3, got {text!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise argparse.ArgumentTypeError(f"expected positive sizes like 224,224,3, got {text!r}")
    return shape


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omniperceiver export",
        description="Export a saved model (config.json + model.safetensors) to ONNX (.onnx) or "
                    "a torch.export program (.pt2), with a dynamic batch axis.")
    parser.add_argument("checkpoint", help="folder written by save_pretrained / convert, or a "
                                           "Hugging Face Hub repository id user/name[@revision]")
    parser.add_argument("out", help="output file: .onnx or .pt2")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17; default 18)")
    parser.add_argument("--input-shape", type=_shape,
                        help="one example's shape without the batch axis, e.g. 224,224,3 "
                             "(default: the model's own, when it knows it)")
    parser.add_argument("--static-batch", action="store_true", help="fix the batch axis too")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the onnxruntime comparison with PyTorch")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .cli import report_user_errors
    from .hub import from_pretrained

    def run() -> int:
        model = from_pretrained(args.checkpoint)
        example = example_input(model, args.input_shape)
        out = Path(args.out)
        if out.suffix == ".pt2":
            program = export_program(model, example, dynamic_batch=not args.static_batch)
            out.parent.mkdir(parents=True, exist_ok=True)
            torch.export.save(program, str(out))
        else:
            export_onnx(model, out, example=example, opset=args.opset,
                        dynamic_batch=not args.static_batch, verify=not args.no_verify)
        shape = "x".join(str(s) for s in example.shape[1:])
        print(f"exported {args.checkpoint} -> {out} (inputs (batch, {shape}), "
              f"{math.prod(example.shape[1:]):,} values per example)")
        return 0

    # ValueError/TypeError: a model or shape torch.export cannot take; ImportError: onnx.
    return report_user_errors("omniperceiver export", run,
                              boundary=(ValueError, TypeError, FileNotFoundError, ImportError))



__all__ = ["export_program", "export_onnx", "example_input", "input_shape_of",
           "onnx_max_abs_diff", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
