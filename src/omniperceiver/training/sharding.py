"""Fully sharded data parallelism with FSDP2 (``torch.distributed.fsdp.fully_shard``), on GPUs
and on CPUs (gloo).

``--trainer.strategy fsdp2`` is :class:`FSDP2Strategy`: Lightning's ``ModelParallelStrategy``
with every process one data-parallel rank (no tensor parallelism) and checkpoints written whole
by rank 0, one file as with ``--trainer.strategy fsdp``, so that ``--ckpt_path last`` and the
checks before a resume read them like any other. Each process keeps a shard of every
parameter, gradient and optimizer state.

Under any ``ModelParallelStrategy`` the training module's ``configure_model`` calls
:func:`shard_model`: every attention layer (the encoder's cross-attends and latent
self-attends, a decoder's cross-attend) is one FSDP unit, gathered whole for its forward and
backward and freed after; the rest of the model (the latents, the adapters, the heads) is the
root unit. A weight-shared layer is one module that runs several times, one unit.
"""

from __future__ import annotations

import warnings
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.strategies import ModelParallelStrategy, StrategyRegistry
from torch import Tensor, nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, fully_shard

from ..attention import AttentionLayer
from ..errors import ConfigError


class FSDP2Strategy(ModelParallelStrategy):
    """``ModelParallelStrategy`` for FSDP2 alone: all processes (devices x nodes) form the
    data-parallel dimension of the device mesh, the tensor-parallel one has size 1; rank 0
    writes checkpoints whole, to one file.

    Args:
        **kwargs: ``ModelParallelStrategy``'s ``process_group_backend`` and ``timeout``.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(tensor_parallel_size=1, save_distributed_checkpoint=False, **kwargs)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()


StrategyRegistry.register(
    "fsdp2", FSDP2Strategy, override=True,
    description="FSDP2 (fully_shard) over all processes, GPUs or CPUs; full checkpoints")


def shard_model(model: nn.Module, mesh: DeviceMesh) -> None:
    """Shard ``model`` in place over the ``"data_parallel"`` dimension of ``mesh`` (a
    ``ModelParallelStrategy``'s): ``fully_shard`` each attention layer, then the whole model.
    A model that is sharded already stays as it is."""
    tensor_parallel = mesh["tensor_parallel"].size()
    if tensor_parallel != 1:
        raise ConfigError(
            f"--trainer.strategy.init_args.tensor_parallel_size is {tensor_parallel}: "
            f"omniperceiver shards its models with FSDP2 only, no tensor parallelism. Use "
            f"--trainer.strategy fsdp2, or set tensor_parallel_size 1 and data_parallel_size "
            f"to the number of processes.")
    if isinstance(model, FSDPModule):
        return
    # FSDP2 warns that a model whose output is a view (a classifier's logits) loses its
    # pre-backward hook if the output is changed in place; the task modules never do that.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    data_parallel = mesh["data_parallel"]
    for layer in [m for m in model.modules() if isinstance(m, AttentionLayer)]:
        fully_shard(layer, mesh=data_parallel)
    fully_shard(model, mesh=data_parallel)


def full_state_dict(trainer: Trainer) -> dict[str, Tensor]:
    """The LightningModule's state dict with whole tensors on the CPU, on rank 0 (under a
    ``ModelParallelStrategy`` the other ranks get an empty one). Gathering the shards is a
    collective: every rank calls this."""
    strategy = trainer.strategy
    if isinstance(strategy, ModelParallelStrategy):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(strategy.model, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True))
    return strategy.lightning_module_state_dict()


__all__ = ["FSDP2Strategy", "full_state_dict", "shard_model"]
