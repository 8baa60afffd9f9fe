"""`quaff_core.training.ddp` on a real two-process gloo group: the outlier scales agree (the MAX of
the ranks'), every rank gets rank 0's control answer, counts are summed; frozen state stays out of
DDP; `train` refuses a process group of the wrong size."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.linear import QuaffLinear
from quaff_core.training.callbacks import Control, NullCallbacks
from quaff_core.training.ddp import RankCallbacks, frozen_names, sum_over_ranks, sync_outlier_scales
from quaff_core.training.run import check_world
from tests.processes import free_port


class _Pauses(NullCallbacks):
    """Rank 0's caller asks to pause."""

    def control(self) -> Control:
        return "pause"


def _quaff_model() -> nn.Sequential:
    """One QuaffLinear [16 -> 8] with outlier channels 1 and 5, the same on every rank, on an
    int8 backend that follows the outlier scale (spawned ranks do not see the test fixtures)."""
    torch.manual_seed(0)
    layer = QuaffLinear.from_linear(nn.Linear(16, 8), [1, 5], compile=False, backend="int_mm")
    return nn.Sequential(layer)


def _rank(rank: int, port: int, out: str) -> None:
    """One rank: a training forward on its own batch, then the collectives under test."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    model = _quaff_model().train()
    torch.manual_seed(rank + 1)
    model(torch.randn(6, 16) * (rank + 1))
    layer = model[0]
    assert isinstance(layer, QuaffLinear)
    before = layer.outlier_scale.tolist()
    sync_outlier_scales(model)
    inner = _Pauses() if rank == 0 else NullCallbacks()
    record = {
        "before": before,
        "after": layer.outlier_scale.tolist(),
        "control": RankCallbacks(inner, rank).control(),
        "sums": sum_over_ranks([rank + 1.0, 2.0]),
    }
    Path(out, f"rank{rank}.json").write_text(json.dumps(record))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_agree_on_scales_control_and_counts(tmp_path: Path) -> None:
    mp.spawn(_rank, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["before"] != r1["before"], "each rank's statistic comes from its own batch"
    expected = [max(a, b) for a, b in zip(r0["before"], r1["before"], strict=True)]
    assert r0["after"] == r1["after"] == pytest.approx(expected)
    assert r0["control"] == r1["control"] == "pause"
    assert r0["sums"] == r1["sums"] == [3.0, 4.0]


def test_one_process_leaves_everything_as_it_is() -> None:
    model = _quaff_model().train()
    model(torch.randn(6, 16))
    layer = model[0]
    assert isinstance(layer, QuaffLinear)
    before = layer.outlier_scale.clone()
    sync_outlier_scales(model)
    assert torch.equal(layer.outlier_scale, before)
    assert sum_over_ranks([1.0, 2.0]) == [1.0, 2.0]
    assert RankCallbacks(_Pauses(), 0).control() == "pause"


def test_frozen_names_are_the_buffers_and_the_frozen_parameters() -> None:
    model = nn.Sequential(_quaff_model()[0], nn.Linear(8, 2), nn.LayerNorm(2))
    model[2].requires_grad_(False)
    names = frozen_names(model)
    assert {"0.weight", "0.outlier_scale", "0.outlier_weight", "2.weight", "2.bias"} <= set(names)
    assert "1.weight" not in names
    assert "1.bias" not in names


def test_train_refuses_a_process_group_of_another_size() -> None:
    assert check_world(TrainConfig(devices=1)) == 0
    with pytest.raises(ValueError, match="devices=2 but this process group has 1 process"):
        check_world(TrainConfig(devices=2))


def test_effective_batch_and_steps_count_every_device() -> None:
    config = TrainConfig(batch_size=2, devices=2, gradient_accumulation_steps=3, n_epochs=1)
    assert config.effective_batch_size == 12
    # 25 examples: 13 batches of 2, 7 per rank, 3 optimizer steps of 3 (the last one short)
    assert config.total_steps(25) == 3
    assert TrainConfig(batch_size=4, n_epochs=1).total_steps(16) == TrainConfig(
        batch_size=2, devices=2, n_epochs=1
    ).total_steps(16)
