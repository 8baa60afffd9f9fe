"""`TrainingBase`: runs on one prepared base equal a cold run, and never change the base."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from quaff_core.file_names import ADAPTER_WEIGHTS
from quaff_core.models.loading import load_base_model
from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.linear import QuaffLinear
from quaff_core.training.base import TrainingBase, prepare_base
from quaff_core.training.callbacks import NullCallbacks
from quaff_core.training.datasets import tokenize_data
from quaff_core.training.runtime import resolve_runtime
from quaff_core.training.train import train
from tests.quaff_core.training.test_train import EXAMPLES, QUAFF

CONFIG = TrainConfig(**{**QUAFF.to_dict(), "n_epochs": 1, "seed": 7})


def _base(config: TrainConfig, outlier_map: object = None) -> TrainingBase:
    model, tokenizer = load_base_model("tiny-llama")
    data = tokenize_data(EXAMPLES, None, tokenizer, config)
    return prepare_base(
        model,
        tokenizer,
        base_id="tiny-llama",
        config=config,
        runtime=resolve_runtime(config),
        outlier_map=outlier_map,  # type: ignore[arg-type]
        data=data,
        callbacks=NullCallbacks(),
    )


def _adapter(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "adapter" / ADAPTER_WEIGHTS))


def _state(base: TrainingBase) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in base.model.state_dict().items()}


def test_runs_on_a_warm_base_equal_a_cold_run(tmp_path: Path) -> None:
    cold = train("tiny-llama", EXAMPLES, tmp_path / "cold", config=CONFIG)
    assert cold.outlier_map is not None
    base = _base(CONFIG, cold.outlier_map)
    before = _state(base)
    first = train(base, EXAMPLES, tmp_path / "warm1", config=CONFIG)
    second = train(base, EXAMPLES, tmp_path / "warm2", config=CONFIG)
    expected = _adapter(tmp_path / "cold")
    for run in ("warm1", "warm2"):
        got = _adapter(tmp_path / run)
        assert got.keys() == expected.keys()
        for name, tensor in expected.items():
            assert torch.equal(got[name], tensor), f"{run}: {name} differs from the cold run"
    assert [m["train_loss"] for m in first.metrics] == [m["train_loss"] for m in cold.metrics]
    assert second.final_step == cold.final_step
    # the base (int8 weights and the scale state the runs updated in their copies) is untouched
    after = _state(base)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_a_run_copy_shares_frozen_tensors_and_owns_its_scale_state() -> None:
    base = _base(CONFIG)
    copy = base.job_copy(CONFIG, resolve_runtime(CONFIG))
    originals = dict(base.model.named_modules())
    layers = [(n, m) for n, m in copy.named_modules() if isinstance(m, QuaffLinear)]
    assert layers
    for name, layer in layers:
        original = originals[name]
        assert isinstance(original, QuaffLinear)
        assert layer is not original
        assert layer.weight.data_ptr() == original.weight.data_ptr()
        assert layer.outlier_weight.data_ptr() == original.outlier_weight.data_ptr()
        for state in QuaffLinear.RUN_STATE:
            assert getattr(layer, state).data_ptr() != getattr(original, state).data_ptr()
    embed = dict(copy.named_parameters())["model.embed_tokens.weight"]
    assert (
        embed.data_ptr()
        == dict(base.model.named_parameters())["model.embed_tokens.weight"].data_ptr()
    )
    assert base.nbytes > 0
