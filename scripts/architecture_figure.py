"""Draw docs/architecture.png: the data flow through a model and the module of each part.

    python scripts/architecture_figure.py [--output docs/architecture.png]

Needs matplotlib (the ``train`` extra).
"""

from __future__ import annotations

import argparse
from pathlib import Path

STAGES = [  # (title, shape, module, examples)
    ("raw inputs", "(batch, *axes, C)\nor {modality: tensor}", "",
     "images, video, audio,\npoint clouds, text, flow pairs"),
    ("input adapter", "-> (batch, M, C) + mask", "omniperceiver.adapters",
     "validate; position features\n(omniperceiver.position); flatten"),
    ("encoder", "latents (batch, N, D)", "omniperceiver.encoder",
     "latents cross-attend to the inputs;\nblocks of latent self-attends\n"
     "(omniperceiver.attention)"),
    ("decoder", "-> (batch, O, C_out)", "omniperceiver.decoders",
     "decoder_query(latents, adapted):\noutput queries cross-attend\nto the latents"),
    ("output adapter", "logits, grid, dict", "omniperceiver.decoders",
     "reshape to the task's output"),
]

AROUND = [  # (title, text)
    ("models, registry", "one module per family\nregisters its presets;\n"
     "create_model(name, **overrides)"),
    ("hub", "save_pretrained / from_pretrained:\nconfig.json + model.safetensors"),
    ("data, data.readers", "data sets; one reader per\nfile format, shared with predict"),
    ("training, convert, export", "Lightning CLI; other libraries'\n"
     "checkpoints; ONNX / torch.export"),
]


def draw(output: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    fig, ax = plt.subplots(figsize=(14, 5.6))
    ax.set_xlim(0, 13.6)
    ax.set_ylim(0, 5.6)
    ax.axis("off")
    width, gap, top = 2.4, 0.3, 3.2
    for i, (title, shape, module, text) in enumerate(STAGES):
        x = 0.2 + i * (width + gap)
        core = i in (1, 2, 3, 4)
        ax.add_patch(FancyBboxPatch((x, top), width, 2.0, boxstyle="round,pad=0.05",
                                    facecolor="#dbe9f6" if core else "#f2f2f2",
                                    edgecolor="#30507a"))
        ax.text(x + width / 2, top + 1.75, title, ha="center", va="center", fontsize=11,
                weight="bold")
        ax.text(x + width / 2, top + 1.38, shape, ha="center", va="center", fontsize=8,
                family="monospace")
        ax.text(x + width / 2, top + 0.72, text, ha="center", va="center", fontsize=7.5)
        if module:
            ax.text(x + width / 2, top + 0.15, module, ha="center", va="center", fontsize=7,
                    family="monospace", color="#30507a")
        if i:
            ax.annotate("", xy=(x - 0.02, top + 1.0), xytext=(x - gap + 0.02, top + 1.0),
                        arrowprops=dict(arrowstyle="->", color="#30507a", lw=1.5))
    ax.text(0.2 + 2.5 * (width + gap), top - 0.25,
            "omniperceiver.model.PerceiverModel: one forward for every task", ha="center",
            va="center", fontsize=9, style="italic")
    ax.text(0.2, 2.55, "around the model (omniperceiver.*)", fontsize=9, style="italic")
    box = (13.4 - 0.2) / len(AROUND)
    for i, (title, text) in enumerate(AROUND):
        x = 0.2 + i * box
        ax.add_patch(FancyBboxPatch((x, 0.3), box - 0.25, 2.0, boxstyle="round,pad=0.05",
                                    facecolor="#fdf3e1", edgecolor="#8a6a2f"))
        ax.text(x + (box - 0.25) / 2, 1.95, title, ha="center", va="center", fontsize=10,
                weight="bold")
        ax.text(x + (box - 0.25) / 2, 1.05, text, ha="center", va="center", fontsize=8.5)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path,
                        default=Path(__file__).resolve().parents[1] / "docs" / "architecture.png")
    print(f"wrote {draw(parser.parse_args().output)}")


if __name__ == "__main__":
    main()
