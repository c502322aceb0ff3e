"""Experiments that test the Perceiver paper's claims at a scale a 2-core CPU runs.

One command each, every model trained by the same plain PyTorch loop
(:func:`experiments.common.train_and_test`) with the same budget, optimiser and augmentation:

* ``python -m experiments.permutation``: Perceiver vs a ResNet-style CNN vs a ViT on MNIST,
  permuted MNIST and scikit-learn's digits (the Perceiver does not care about pixel order);
* ``python -m experiments.modalities``: one Perceiver code base beside a modality-specific
  baseline for point clouds, spoken digits, moving digits and audio-visual digits;
* ``python -m experiments.ablations``: one axis at a time around the main job's model.

Each writes ``<name>.json`` (every run, the command, the commit and the machine),
``<name>.md`` (the tables) and ``<name>.png`` (a bar chart) under ``--out``. ``--quick`` runs
the same machinery on tiny data and models in seconds (``tests/test_experiments.py``).
"""
