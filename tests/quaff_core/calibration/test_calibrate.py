"""calibrate: finds planted outlier channels, masks padding, leaves the model as found;
`int8_scale` (the default) picks the channels that set each token's int8 scale."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import torch
from torch import nn

from quaff_core.adapters.peft_layers import add_lora
from quaff_core.calibration.calibrate import DEFAULT_STRATEGY, calibrate
from quaff_core.calibration.channel_stats import ScaleExcess
from quaff_core.quant.convert import convert_to_quaff

if TYPE_CHECKING:
    from transformers import LlamaConfig, LlamaForCausalLM


class Toy(nn.Module):
    """input_ids -> embedding (with planted outlier channels) -> two linears -> head."""

    def __init__(self, planted: list[int], gain: float = 500.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(50, 200)
        with torch.no_grad():
            self.embed.weight[:, planted] *= gain
            self.embed.weight[0] = 0.0  # pad token
            self.embed.weight[0, 17] = 1e6  # an outlier that only padding shows
        self.up = nn.Linear(200, 300)
        self.down = nn.Linear(300, 200)
        self.lm_head = nn.Linear(200, 50)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = self.embed(input_ids)
        return self.lm_head(h + self.down(torch.relu(self.up(h))))


def batches(n: int = 3) -> list[torch.Tensor]:
    """Random ids without the pad token 0."""
    g = torch.Generator().manual_seed(1)
    return [torch.randint(1, 50, (2, 12), generator=g) for _ in range(n)]


def test_finds_planted_channels_and_caps_count() -> None:
    model = Toy([3, 150])
    om = calibrate(model, batches(), max_ratio=0.01, model_id="toy")
    assert om.layers["up"] == [3, 150]
    assert set(om.layers) == {"up", "down"}  # never the output head
    assert len(om.layers["down"]) <= 2
    assert om.in_features == {"up": 200, "down": 300}
    assert om.tokens_seen == 3 * 24
    assert om.model_id == "toy"
    capped = calibrate(model, batches(), max_ratio=0.005)
    assert len(capped.layers["up"]) == 1


@pytest.mark.parametrize(
    ("strategy", "threshold"),
    [("mean_times", 100.0), ("top_abs", 1.0), ("zscore", 8.0), ("static", 50.0)],
)
def test_strategies_find_planted(strategy: str, threshold: float) -> None:
    om = calibrate(Toy([3, 150]), batches(), strategy=strategy, threshold=threshold)
    assert om.strategy == strategy
    assert om.layers["up"] == [3, 150]


def test_masked_tokens_are_ignored() -> None:
    ids = torch.randint(1, 50, (2, 10))
    ids[:, -3:] = 0
    mask = (ids != 0).long()
    om = calibrate(Toy([3, 150]), [{"input_ids": ids, "attention_mask": mask}], max_ratio=0.015)
    assert 17 not in om.layers["up"]
    assert om.tokens_seen == 14
    unmasked = calibrate(Toy([3, 150]), [ids], max_ratio=0.015)
    assert 17 in unmasked.layers["up"]


def test_restores_training_state_and_removes_hooks_on_error() -> None:
    model = Toy([3])
    model.train()

    def failing() -> Iterator[torch.Tensor]:
        yield batches(1)[0]
        raise RuntimeError("data loader died")

    with pytest.raises(RuntimeError, match="data loader died"):
        calibrate(model, failing())
    assert model.training
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


def live_tensors() -> int:
    """Number of torch.Tensor objects the garbage collector can see."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def test_statistics_do_not_grow_with_batches() -> None:
    counts: list[int] = []

    def tracked() -> Iterator[torch.Tensor]:
        for batch in batches(12):
            counts.append(live_tensors())
            yield batch

    om = calibrate(Toy([3]), tracked())
    assert om.tokens_seen == 12 * 24
    # the hooks keep per-channel counters only: nothing accumulates per batch
    assert counts[-1] == counts[2]


def test_model_id_from_config(tiny_llama: LlamaForCausalLM, tiny_llama_config: LlamaConfig) -> None:
    tiny_llama.config._name_or_path = "org/tiny"
    om = calibrate(tiny_llama, [torch.randint(0, 512, (1, 8))], max_ratio=0.05)
    assert om.model_id == "org/tiny"
    assert "lm_head" not in om.layers
    assert "model.layers.1.mlp.down_proj" in om.layers
    down = tiny_llama_config.intermediate_size
    assert om.in_features["model.layers.1.mlp.down_proj"] == down


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="strategy"):
        calibrate(Toy([3]), batches(), strategy="magic")
    with pytest.raises(ValueError, match="max_ratio"):
        calibrate(Toy([3]), batches(), max_ratio=2.0)
    with pytest.raises(TypeError, match="LongTensor or a Mapping"):
        calibrate(Toy([3]), [[1, 2, 3]])


def test_converted_model_is_measured_at_its_quaff_layers(tiny_llama: LlamaForCausalLM) -> None:
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 512, (2, 16), generator=gen) for _ in range(2)]
    before = calibrate(tiny_llama, batches, strategy="top_abs", max_ratio=0.05)
    convert_to_quaff(tiny_llama, before)
    wrapped = add_lora(tiny_llama, r=4, alpha=8)
    after = calibrate(wrapped, batches, strategy="top_abs", max_ratio=0.05)
    # the same layer names (no LoRA lora_A/lora_B linears), the same budget per layer
    assert set(after.layers) == set(before.layers)
    assert all(len(after.layers[n]) == len(before.layers[n]) for n in before.layers)
    assert before.overlap(after).overall >= 0.5


def test_int8_scale_is_the_default() -> None:
    om = calibrate(Toy([3]), batches())
    assert DEFAULT_STRATEGY == "int8_scale"
    assert om.strategy == "int8_scale"
    assert om.threshold == 1.0


def test_int8_scale_keeps_the_token_max_channel_that_mean_times_misses() -> None:
    # |x| of channel 3 is ~25x the token mean: the largest |x| of every token, below 100x
    model = Toy([3], gain=30.0)
    x = model.embed(torch.cat(batches())).detach().abs().reshape(-1, 200)
    assert bool((x.argmax(dim=1) == 3).float().mean() > 0.9)
    assert float((x[:, 3] / x.mean(dim=1)).max()) < 100.0
    assert calibrate(model, batches(), strategy="mean_times").layers["up"] == []
    assert calibrate(model, batches()).layers["up"] == [3]


def test_int8_scale_respects_the_budget_strongest_first() -> None:
    gains = {10: 40.0, 20: 30.0, 30: 20.0, 40: 12.0, 50: 8.0, 60: 6.0}
    model = Toy([])
    with torch.no_grad():
        for channel, gain in gains.items():
            model.embed.weight[:, channel] *= gain
    om = calibrate(model, batches(), max_ratio=0.02)  # floor(0.02 * 200) = 4 channels
    assert om.layers["up"] == [10, 20, 30, 40]
    assert all(len(om.layers[n]) <= int(0.02 * om.in_features[n]) for n in om.layers)
    assert calibrate(model, batches(), max_ratio=0.004).layers["up"] == []  # floor(0.8) = 0


def test_int8_scale_ignores_padding() -> None:
    ids = torch.randint(1, 50, (2, 10), generator=torch.Generator().manual_seed(2))
    ids[:, -3:] = 0  # the pad token's embedding is 1e6 in channel 17, 0 elsewhere
    mask = (ids != 0).long()
    om = calibrate(Toy([3], gain=30.0), [{"input_ids": ids, "attention_mask": mask}])
    assert om.layers["up"] == [3]
    assert calibrate(Toy([3], gain=30.0), [ids]).layers["up"] == [3, 17]


def test_scale_excess_credit_is_the_scale_drop_in_mean_squares() -> None:
    stats = ScaleExcess(4, threshold=1.0, top_k=1)
    stats.update(torch.tensor([[10.0, -2.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))
    stats.update(torch.tensor([[float("nan"), 50.0, 0.0, 0.0]]))  # non-finite: skipped
    assert stats.tokens == 2
    # token 0: channel 0 is the max: (10^2 - 2^2) / mean([100, 4, 1, 1]); token 1: no drop
    credit = (100.0 - 4.0) / 26.5
    w_max = torch.tensor([0.01, 1.0, 1.0, 1.0])  # s^2 = 10 / 0.01 for channel 0
    expected = credit / 2 * (1 - 0.01 / 10.0)
    torch.testing.assert_close(stats.scores(w_max)[0].item(), expected)
    assert stats.select(w_max) == [0]


def test_scale_excess_skips_what_quaff_would_not_scale_and_flat_layers() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 64, generator=gen)
    x[:, 5] *= 30.0
    stats = ScaleExcess(64, threshold=1.0, top_k=3)
    stats.update(x)
    assert stats.select(torch.full((64,), 0.1)) == [5]
    # max|W[:, 5]| >= max|x_5|: s = 1, Quaff would not scale channel 5 down, keeping it is moot
    heavy = torch.full((64,), 0.1)
    heavy[5] = 1e3
    assert stats.select(heavy) == []
    flat = ScaleExcess(64, threshold=1.0, top_k=3)
    flat.update(torch.randn(256, 64, generator=gen))  # Gaussian tokens: no channel stands out
    assert flat.select(torch.full((64,), 0.1)) == []


def test_int8_scale_re_measures_a_converted_model_alike() -> None:
    model = Toy([3, 150], gain=30.0)
    before = calibrate(model, batches())
    convert_to_quaff(model, before)  # int8 weights: the weight maxima come dequantized
    after = calibrate(model, batches())
    assert before.layers["up"] == [3, 150]
    assert after.layers == before.layers


def test_layers_fed_one_input_share_its_statistics(
    tiny_llama: LlamaForCausalLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """q/k/v and gate/up see one tensor: it is measured once, and the map is unchanged."""
    batches = [
        torch.randint(1, 500, (2, 24), generator=torch.Generator().manual_seed(i)) for i in range(3)
    ]
    updates: list[int] = []
    real_update = ScaleExcess.update

    def counted(self: ScaleExcess, x: torch.Tensor) -> None:
        updates.append(id(self))
        real_update(self, x)

    monkeypatch.setattr(ScaleExcess, "update", counted)
    shared = calibrate(tiny_llama, batches)
    per_batch = len(updates) // len(batches)
    n_layers = tiny_llama.config.num_hidden_layers
    assert per_batch == 4 * n_layers  # q (for k, v), o, gate (for up), down
    monkeypatch.setattr("quaff_core.calibration.calibrate._seen", lambda stats: True)
    updates.clear()
    separate = calibrate(tiny_llama, batches)
    assert len(updates) // len(batches) == 7 * n_layers
    assert shared.layers == separate.layers


def test_forwards_after_the_first_stop_at_the_last_measured_layer(
    tiny_llama: LlamaForCausalLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head's logits are never wanted: only the first batch's forward reaches the head (it
    learns which layer runs last), and the map is the one full forwards give."""
    batches = [
        torch.randint(1, 500, (2, 24), generator=torch.Generator().manual_seed(i)) for i in range(3)
    ]
    heads: list[int] = []
    head = tiny_llama.lm_head.register_forward_hook(lambda *args: heads.append(1))
    try:
        stopped = calibrate(tiny_llama, batches)
        assert len(heads) == 1
        assert stopped.tokens_seen == 3 * 2 * 24
        assert tiny_llama.model.layers[-1].mlp.down_proj._forward_hooks == {}
        monkeypatch.setattr(
            "quaff_core.calibration.calibrate._LastLayer.learned", lambda self: None
        )
        heads.clear()
        full = calibrate(tiny_llama, batches)
        assert len(heads) == 3
    finally:
        head.remove()
    assert stopped.layers == full.layers
