"""Chat templates Quaff ships: ChatML, and ChatML that also renders tools and tool calls.

`chatml_template(default_system)` renders a conversation without tools byte for byte as plain
ChatML (SmolLM2's own template when given its default system prompt), and one with tools in the
convention of Hermes / Qwen2.5: the tool signatures in the system turn inside `<tools>`, each call
as `<tool_call>{"name", "arguments"}</tool_call>`, each result as `<tool_response>`.
"""

from __future__ import annotations

import json
from typing import Any

from jinja2.exceptions import TemplateError

SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
TOOLS_PREAMBLE = (
    "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>"
)
TOOLS_INSTRUCTIONS = (
    "\\n</tools>\\n\\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    '{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call>'
)
_TOOLS_BLOCK = (
    "{{ '" + TOOLS_PREAMBLE + "' }}"
    "{% for tool in tools %}{{ '\\n' }}{{ tool | tojson }}{% endfor %}"
    "{{ '" + TOOLS_INSTRUCTIONS + "' }}"
)
_TOOL_CALLS = (
    "{% if message['tool_calls'] is defined %}{% for call in message['tool_calls'] %}"
    "{% if message['content'] or not loop.first %}{{ '\\n' }}{% endif %}"
    "{{ '<tool_call>\\n{\"name\": \"' + call['function']['name'] + '\", \"arguments\": ' }}"
    "{{ call['function']['arguments'] | tojson }}{{ '}\\n</tool_call>' }}"
    "{% endfor %}{% endif %}"
)


def chatml_template(default_system: str | None = None) -> str:
    """A ChatML template (with tools), adding `default_system` when a chat has no system turn."""
    system = json.dumps(default_system or "")[1:-1].replace("'", "\\'")
    opening = (
        "{% if loop.first and message['role'] != 'system' and (DEFAULT or tools) %}"
        "{{ '<|im_start|>system\\n' + DEFAULT }}"
        "{% if tools %}{% if DEFAULT %}{{ '\\n\\n' }}{% endif %}" + _TOOLS_BLOCK + "{% endif %}"
        "{{ '<|im_end|>\\n' }}{% endif %}"
    )
    body = (
        "{{ '<|im_start|>' + message['role'] + '\\n' }}"
        "{% if message['role'] == 'tool' %}"
        "{{ '<tool_response>\\n' + message['content'] + '\\n</tool_response>' }}"
        "{% else %}{{ message['content'] or '' }}"
        "{% if message['role'] == 'system' and tools %}{{ '\\n\\n' }}"
        + _TOOLS_BLOCK
        + "{% endif %}"
        + _TOOL_CALLS
        + "{% endif %}{{ '<|im_end|>\\n' }}"
    )
    return (
        "{% set DEFAULT = '" + system + "' %}"
        "{% for message in messages %}" + opening + body + "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


CHATML_TEMPLATE = chatml_template()


def renders_tools(render: Any) -> bool:
    """Whether `render(messages, tools)` (a tokenizer's chat template) shows tools, calls and
    results: a probe conversation's tool name, call argument and result must all appear."""
    tools = [{"type": "function", "function": {"name": "quaff_probe_tool", "parameters": {}}}]
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "quaff_probe_tool", "arguments": {"q": "quaff_probe_arg"}},
    }
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "quaff_probe_result"},
    ]
    try:
        text = str(render(messages, tools))
    except (TemplateError, TypeError, KeyError, ValueError):
        return False
    return all(s in text for s in ("quaff_probe_tool", "quaff_probe_arg", "quaff_probe_result"))
