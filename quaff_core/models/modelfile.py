"""An Ollama `Modelfile` for an adapter: FROM the base, ADAPTER the safetensors, TEMPLATE."""

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
    if chat_template and "<|im_start|>" in chat_template:
        lines.append(f'TEMPLATE """{CHATML_GO_TEMPLATE}"""')
    elif chat_template:
        lines.append("# The chat template (Jinja) below needs translating to a Go TEMPLATE:")
        lines.extend(f"#   {line}" for line in chat_template.splitlines())
    if stop:
        lines.append(f'PARAMETER stop "{stop}"')
    return "\n".join(lines) + "\n"
