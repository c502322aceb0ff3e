"""``omniperceiver convert``: another library's checkpoint -> our format (config.json +
model.safetensors, loadable with :func:`omniperceiver.from_pretrained`).

    omniperceiver convert --from transformers DIR OUT [--semantics deepmind]
    omniperceiver convert --from deepmind FILE.pickle OUT --trust-pickle [--family NAME]
    omniperceiver convert --from lucidrains FILE.pt OUT --kwargs '{"depth": 6, ...}'

``DIR`` is a transformers checkpoint folder (``config.json`` and ``model.safetensors`` or
``pytorch_model.bin``, read with ``torch.load(weights_only=True)``) or a Hugging Face Hub
repository id (``deepmind/vision-perceiver-conv``, pinned with ``@revision``); ``FILE.pt`` a
perceiver-pytorch or perceiver-ar-pytorch state dict (read the same way) with the constructor
keywords in ``--kwargs`` (JSON text or a .json file). DeepMind's pickles are read only with
``--trust-pickle``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..cli import report_user_errors
from ..errors import ConfigError
from ..hub import save_pretrained
from ._common import read_torch_state_dict

SOURCES = ("transformers", "deepmind", "lucidrains")


def _json(text: str | None, option: str) -> dict | None:
    """JSON text, or the path of a JSON file, given to ``option``: a JSON object."""
    if text is None:
        return None
    path = Path(text)
    try:
        value = json.loads(path.read_text() if path.suffix == ".json" and path.exists() else text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{option}: not valid JSON ({error}): {text!r}") from error
    if not isinstance(value, dict):
        raise ConfigError(f"{option}: expected a JSON object, got {text!r}")
    return value


def _add_image_spec(extra: dict, model: torch.nn.Module, config: dict,
                    processor: dict | None) -> None:
    """An image classifier's ``input_spec`` and ``classes`` (see
    :func:`~omniperceiver.convert.transformers.image_input_spec`), for ``predict``."""
    from .transformers import class_names, image_input_spec

    spec = image_input_spec(model, processor)
    if spec is not None:
        extra["input_spec"] = spec
        extra["classes"] = class_names(config, model.recipe["overrides"]["num_classes"])


def convert(source: str, src: str | Path, *, semantics: str = "deepmind",
            trust_pickle: bool = False, family: str | None = None, kwargs: dict | None = None,
            encoder: dict | None = None, decoder: dict | None = None,
            overrides: dict | None = None,
            flow_scale: float | None = None) -> tuple[torch.nn.Module, dict]:
    """The converted model and the ``extra`` entries saved with it: where it came from and,
    for an image classifier, how ``predict`` prepares images (``input_spec``) and the class
    names (``classes``: the source config's ``id2label``, else "0".."N-1").
    ``flow_scale``: an optical-flow model's output scale (default: the preset's, 20)."""
    extra = {"converted_from": source, "source": str(src)}
    if source == "transformers":
        from .transformers import from_transformers, locate_checkpoint, read_checkpoint

        folder = locate_checkpoint(src)
        state, config = read_checkpoint(folder)
        model = from_transformers(state, config, semantics=semantics, flow_scale=flow_scale)
        extra["semantics"] = semantics
        processor = folder / "preprocessor_config.json"
        _add_image_spec(extra, model, config,
                        _json(str(processor), processor.name) if processor.exists() else None)
    elif source == "deepmind":
        from .deepmind import from_deepmind

        if flow_scale is not None:
            overrides = {**(overrides or {}), "flow_scale": flow_scale}
        model = from_deepmind(src, family, trust_pickle=trust_pickle, encoder=encoder,
                              decoder=decoder, **(overrides or {}))
        # DeepMind's ImageNet example prepares images as transformers' processor does.
        _add_image_spec(extra, model, {}, None)
    elif source == "lucidrains":
        from .lucidrains import from_lucidrains

        if kwargs is None:
            raise ConfigError("--from lucidrains needs --kwargs: the constructor keywords that "
                              "made the checkpoint")
        model = from_lucidrains(read_torch_state_dict(Path(src)), **kwargs)
    else:
        raise ConfigError(f"--from must be one of {SOURCES}, got {source!r}")
    return model, extra


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omniperceiver convert",
        description="Convert a transformers, DeepMind, perceiver-pytorch or perceiver-ar-pytorch "
                    "checkpoint to omniperceiver's format (config.json + model.safetensors).")
    parser.add_argument("--from", dest="source", required=True, choices=SOURCES,
                        help="the library that made the checkpoint")
    parser.add_argument("src", help="transformers: checkpoint folder or Hugging Face Hub "
                                    "repository id (user/name[@revision]); deepmind: the pickle; "
                                    "lucidrains: a state dict saved with torch.save")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--semantics", choices=("transformers", "deepmind"),
                        default="deepmind",
                        help="deepmind (default): what the weights were trained with where "
                             "transformers deviates from DeepMind's code (tanh GELU, SAME-padded "
                             "conv stem, no learned-decoder residual); transformers: reproduce "
                             "transformers' outputs exactly")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow reading a DeepMind pickle (a pickle can run arbitrary code: "
                             "only for files from a source you trust)")
    parser.add_argument("--family", help="deepmind: the model (a preset name such as "
                                         "optical-flow-perceiver, or a release file name); "
                                         "default: told by the parameter names")
    parser.add_argument("--flow-scale", type=float, default=None,
                        help="optical flow: multiply the decoder's output by this (default 20: "
                             "flow in pixels, as DeepMind's examples compute it; 1: "
                             "transformers' raw output)")
    parser.add_argument("--kwargs", help="lucidrains: constructor keywords, JSON text or file")
    parser.add_argument("--encoder", help="deepmind: encoder overrides as JSON, e.g. "
                                          "'{\"self_attend\": {\"heads\": 4}}'")
    parser.add_argument("--decoder", help="deepmind: decoder cross-attend overrides as JSON")
    parser.add_argument("--overrides", help="deepmind: preset overrides as JSON, e.g. "
                                            "'{\"image_shape\": [368, 496]}'")
    return parser


#: What the converters raise for a checkpoint they cannot read (a foreign library's file).
CHECKPOINT_ERRORS = (ValueError, TypeError, FileNotFoundError, KeyError, NotImplementedError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        model, extra = convert(
            args.source, args.src, semantics=args.semantics, trust_pickle=args.trust_pickle,
            family=args.family, kwargs=_json(args.kwargs, "--kwargs"),
            encoder=_json(args.encoder, "--encoder"), decoder=_json(args.decoder, "--decoder"),
            overrides=_json(args.overrides, "--overrides"), flow_scale=args.flow_scale)
        out = save_pretrained(model, args.out, extra=extra)
        params = sum(p.numel() for p in model.parameters())
        print(f"converted {args.source} {args.src} -> {out} ({params:,} parameters)")
        return 0

    return report_user_errors("omniperceiver convert", run, boundary=CHECKPOINT_ERRORS)


if __name__ == "__main__":
    raise SystemExit(main())
