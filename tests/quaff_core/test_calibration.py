"""calibrate: finds planted outlier channels, masks padding, leaves the model as found."""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

from quaff_core.calibration import calibrate


class Toy(nn.Module):
    """input_ids -> embedding (with planted outlier channels) -> two linears -> head."""

    def __init__(self, planted: list[int]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(50, 200)
        with torch.no_grad():
            self.embed.weight[:, planted] *= 500.0
            self.embed.weight[0] = 0.0  # pad token
            self.embed.weight[0, 17] = 1e6  # an outlier that only padding shows
        self.up = nn.Linear(200, 300)
        self.down = nn.Linear(300, 200)
        self.lm_head = nn.Linear(200, 50)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        h = self.embed(input_ids)
        return self.lm_head(h + self.down(torch.relu(self.up(h))))


def batches(n: int = 3) -> list[torch.Tensor]:
    """Random ids without the pad token 0."""
    g = torch.Generator().manual_seed(1)
    return [torch.randint(1, 50, (2, 12), generator=g) for _ in range(n)]


def test_finds_planted_channels_and_caps_count():
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
def test_strategies_find_planted(strategy: str, threshold: float):
    om = calibrate(Toy([3, 150]), batches(), strategy=strategy, threshold=threshold)
    assert om.strategy == strategy
    assert om.layers["up"] == [3, 150]


def test_masked_tokens_are_ignored():
    ids = torch.randint(1, 50, (2, 10))
    ids[:, -3:] = 0
    mask = (ids != 0).long()
    om = calibrate(Toy([3, 150]), [{"input_ids": ids, "attention_mask": mask}], max_ratio=0.015)
    assert 17 not in om.layers["up"]
    assert om.tokens_seen == 14
    unmasked = calibrate(Toy([3, 150]), [ids], max_ratio=0.015)
    assert 17 in unmasked.layers["up"]


def test_restores_training_state_and_removes_hooks_on_error():
    model = Toy([3])
    model.train()

    def failing():
        yield batches(1)[0]
        raise RuntimeError("data loader died")

    with pytest.raises(RuntimeError, match="data loader died"):
        calibrate(model, failing())
    assert model.training
    assert all(not m._forward_pre_hooks for m in model.modules())


def live_tensors() -> int:
    """Number of torch.Tensor objects the garbage collector can see."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def test_statistics_do_not_grow_with_batches():
    counts: list[int] = []

    def tracked():
        for batch in batches(12):
            counts.append(live_tensors())
            yield batch

    om = calibrate(Toy([3]), tracked())
    assert om.tokens_seen == 12 * 24
    # the hooks keep per-channel counters only: nothing accumulates per batch
    assert counts[-1] == counts[2]


def test_model_id_from_config(tiny_llama):
    tiny_llama.config._name_or_path = "org/tiny"
    om = calibrate(tiny_llama, [torch.randint(0, 512, (1, 8))], max_ratio=0.05)
    assert om.model_id == "org/tiny"
    assert "lm_head" not in om.layers
    assert "model.layers.1.mlp.down_proj" in om.layers
    assert om.in_features["model.layers.1.mlp.down_proj"] == 352


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="strategy"):
        calibrate(Toy([3]), batches(), strategy="magic")
    with pytest.raises(ValueError, match="max_ratio"):
        calibrate(Toy([3]), batches(), max_ratio=2.0)
    with pytest.raises(TypeError, match="LongTensor or a Mapping"):
        calibrate(Toy([3]), [[1, 2, 3]])


def test_converted_model_is_measured_at_its_quaff_layers(tiny_llama):
    from quaff_core.convert import convert_to_quaff
    from quaff_core.peft import add_lora

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
