"""The chunked loss equals the full-logit loss on every family, through the model's own forward."""

from __future__ import annotations

import pytest
import torch
import transformers
from peft import LoraConfig, PromptTuningConfig, get_peft_model

from quaff_core.lm.evaluation import batch_counts
from quaff_core.lm.loss import IGNORE_INDEX
from tests.quaff_core.quant.test_families import FAMILIES, VOCAB


def _batch() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, VOCAB, (2, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # one left-padded row
    labels = ids.clone()
    labels[mask == 0] = IGNORE_INDEX
    labels[:, :4] = IGNORE_INDEX
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _family(name: str) -> transformers.PreTrainedModel:
    config_cls, kwargs, _ = FAMILIES[name]
    torch.manual_seed(0)
    config = getattr(transformers, config_cls)(**kwargs)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_chunked_loss_equals_full_logit_loss(family: str) -> None:
    model, batch = _family(family), _batch()
    with torch.no_grad():
        chunked = batch_counts(model, batch, chunked=True)
        full = batch_counts(model, batch, chunked=False)
    assert chunked.n_tokens == full.n_tokens == int((batch["labels"][:, 1:] != -100).sum())
    torch.testing.assert_close(chunked.loss, full.loss, rtol=1e-4, atol=1e-5)
    assert chunked.n_correct == full.n_correct


def test_prompt_tuning_virtual_tokens_enter_the_chunked_loss() -> None:
    base = _family("llama")
    model = get_peft_model(
        base, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5)
    ).eval()
    batch = _batch()
    with torch.no_grad():
        chunked = batch_counts(model, batch, chunked=True)
        full = batch_counts(model, batch, chunked=False)
        without_prompt = batch_counts(base, batch, chunked=True)
    torch.testing.assert_close(chunked.loss, full.loss, rtol=1e-4, atol=1e-5)
    assert chunked.n_tokens == without_prompt.n_tokens
    assert not torch.allclose(chunked.loss, without_prompt.loss)


def test_chunked_loss_through_a_ddp_style_wrapper_reaches_lora_grads() -> None:
    model = get_peft_model(
        _family("llama"), LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj"])
    )
    wrapper = torch.nn.DataParallel(model)
    batch_counts(wrapper, _batch(), chunked=True).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert grads
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
