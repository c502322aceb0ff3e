import os

import torch
from hypothesis import HealthCheck, settings

# Nothing in the tests may reach the network: a model path that reads as a Hugging Face Hub
# repository id ("user/name") is looked for in the cache only (huggingface_hub reads this
# when it is imported; omniperceiver.hub_repos at each call).
os.environ["HF_HUB_OFFLINE"] = "1"

settings.register_profile(
    "ci", max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
# Tiny test models run fastest on one thread (and a busy 2-core machine stays usable).
torch.set_num_threads(1)
