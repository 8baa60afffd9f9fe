"""Ollama `Modelfile`s: for an adapter (FROM the base, ADAPTER the safetensors) and for a GGUF
export (FROM the exported file), each with the chat TEMPLATE and the stop token."""

from __future__ import annotations

MODELFILE = "Modelfile"
# Ollama templates are Go templates; ChatML (the template of our catalog models) translates so.
CHATML_GO_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)


def modelfile_text(base_id: str, chat_template: str | None, stop: str | None) -> str:
    """The Modelfile; a non-ChatML Jinja template is kept as a comment to translate by hand."""
    lines = [
        f"# Ollama: point FROM at the weights of {base_id} (safetensors or GGUF), then",
        "#   ollama create my-model -f Modelfile",
        f"FROM {base_id}",
        "ADAPTER .",
    ]
    lines.extend(_template_lines(chat_template, stop))
    return "\n".join(lines) + "\n"


def _template_lines(chat_template: str | None, stop: str | None) -> list[str]:
    lines = []
    if chat_template and "<|im_start|>" in chat_template:
        lines.append(f'TEMPLATE """{CHATML_GO_TEMPLATE}"""')
    elif chat_template:
        lines.append("# The chat template (Jinja) below needs translating to a Go TEMPLATE:")
        lines.extend(f"#   {line}" for line in chat_template.splitlines())
    if stop:
        lines.append(f'PARAMETER stop "{stop}"')
    return lines


def gguf_modelfile_text(gguf_name: str, chat_template: str | None, stop: str | None) -> str:
    """The Modelfile next to a GGUF export: `ollama create my-model -f Modelfile` works as is."""
    lines = [
        "# Ollama, in this directory: ollama create my-model -f Modelfile",
        f"FROM ./{gguf_name}",
        *_template_lines(chat_template, stop),
    ]
    return "\n".join(lines) + "\n"
