#!/usr/bin/env bash
# The README's main job in one script: install omniperceiver with the training extra into a
# fresh virtual environment (.venv), then train the default MNIST Perceiver, test it on the
# 1,000 held-out digits and write runs/mnist/ (checkpoints, metrics.json, plots, logs, model).
# Extra arguments go to `omniperceiver fit`, e.g. scripts/quickstart.sh --trainer.max_epochs 5
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -c constraints.txt -e ".[train]"
omniperceiver fit --config configs/mnist.yaml "$@"
python - <<'PY'
import json
m = json.load(open("runs/mnist/metrics.json"))
print(f"test accuracy {m['test_accuracy']:.2%} on {m['test_examples']} held-out digits "
      f"(fit {m['fit_seconds']:.0f} s); results in runs/mnist/")
PY
