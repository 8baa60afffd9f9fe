"""The job-create body as pydantic models derived from the one option spec (no option is
declared here): each option's field is checked by its `Option.check` and documented with a JSON
schema built from its type, range, choices, default and help."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema, create_model
from pydantic.json_schema import SkipJsonSchema

from quaff_core.options.spec import (
    ALL_LINEAR,
    API_GROUPS,
    AUTO,
    BY_PARAM,
    RENAMED,
    Option,
    OptionError,
    group_options,
)

_CONFIG = ConfigDict(extra="forbid")
_MODULE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*$"


def _value_schema(opt: Option) -> dict[str, Any]:
    """The JSON schema of the option's own values (without "auto" or null)."""
    if opt.kind in ("int", "float"):
        number = int if opt.kind == "int" else float
        schema: dict[str, Any] = {"type": "integer" if opt.kind == "int" else "number"}
        if opt.low is not None:
            schema["exclusiveMinimum" if opt.low_open else "minimum"] = number(opt.low)
        if opt.high is not None:
            schema["exclusiveMaximum" if opt.high_open else "maximum"] = number(opt.high)
        return schema
    if opt.kind == "bool":
        return {"type": "boolean"}
    if opt.kind == "choice":
        return {"enum": list(opt.choices)}
    if opt.kind == "modules":
        names = {"type": "string", "pattern": _MODULE_PATTERN, "maxLength": 128}
        return {
            "anyOf": [
                {"type": "string", "enum": [ALL_LINEAR]},
                {"type": "array", "items": names, "minItems": 1, "maxItems": 64},
            ]
        }
    return {"type": "string", "pattern": r"^om-[A-Za-z0-9_-]{1,36}$"}


def _schema(opt: Option, *, nullable: bool) -> dict[str, Any]:
    branches = [_value_schema(opt)]
    if opt.auto:
        branches.append({"type": "string", "enum": [AUTO]})
    if nullable:
        branches.append({"type": "null"})
    schema = branches[0] if len(branches) == 1 else {"anyOf": branches}
    return {**schema, "description": opt.help}


def _checker(opt: Option, *, nullable: bool) -> Any:
    def check(value: Any) -> Any:
        if value is None:
            if nullable:
                return None
            raise ValueError("null is not allowed here; leave the field out for the default")
        if opt.auto and value == AUTO:
            return AUTO
        try:
            return opt.check(value)
        except OptionError as exc:
            raise ValueError(exc.reason) from None

    return check


def option_field(opt: Option, *, nullable: bool | None = None) -> Any:
    """The annotated type and default (absent) of one option's field."""
    allow_null = opt.nullable if nullable is None else nullable
    kind = Annotated[
        Any,
        PlainValidator(_checker(opt, nullable=allow_null)),
        WithJsonSchema(_schema(opt, nullable=allow_null)),
    ]
    return (kind, Field(default=None, json_schema_extra={"default": opt.wire()["default"]}))


def _renamed_field(old: str) -> Any:
    """A renamed param: refused whatever its value, naming the new one (not in the schema)."""

    def refuse(_value: Any) -> Any:
        raise ValueError(f"'{old}' was renamed: use '{RENAMED[old]}'")

    return (Annotated[Any, SkipJsonSchema(), PlainValidator(refuse)], None)


def _group_model(group: str) -> type[BaseModel]:
    fields = {str(opt.field): option_field(opt) for opt in group_options(group)}
    for old in RENAMED:
        if old.startswith(f"{group}."):
            fields[old.removeprefix(f"{group}.")] = _renamed_field(old)
    title = {"hyperparameters": "Hyperparameters", "lora": "LoraOptions"}.get(
        group, f"{group.capitalize()}Options"
    )
    model: type[BaseModel] = create_model(title, __config__=_CONFIG, **fields)
    model.__doc__ = f"The `{group}` options (see GET /v1/fine_tuning/options)."
    return model


GROUPS: dict[str, type[BaseModel]] = {group: _group_model(group) for group in API_GROUPS}
Hyperparameters = GROUPS["hyperparameters"]
LoraOptions = GROUPS["lora"]
PeftOptions = GROUPS["peft"]
QuantizationOptions = GROUPS["quantization"]
TrainingOptions = GROUPS["training"]
SeedField = option_field(BY_PARAM["seed"], nullable=True)
MethodType = option_field(BY_PARAM["method.type"], nullable=False)


class SupervisedMethod(BaseModel):
    """OpenAI's `method.supervised`."""

    model_config = _CONFIG

    hyperparameters: Hyperparameters | None = None  # type: ignore[valid-type]


class DpoMethod(BaseModel):
    """OpenAI's `method.dpo`: the hyperparameters, `beta` among them."""

    model_config = _CONFIG

    hyperparameters: Hyperparameters | None = None  # type: ignore[valid-type]


class ReinforcementMethod(BaseModel):
    """OpenAI's `method.reinforcement`: the grader (checked by the store) and hyperparameters."""

    model_config = _CONFIG

    grader: dict[str, Any]
    hyperparameters: Hyperparameters | None = None  # type: ignore[valid-type]


class Method(BaseModel):
    """OpenAI's `method`: `supervised`, `dpo` (preference pairs) or `reinforcement` (graded)."""

    model_config = _CONFIG

    type: MethodType[0] = MethodType[1]  # type: ignore[valid-type]
    supervised: SupervisedMethod | None = None
    dpo: DpoMethod | None = None
    reinforcement: ReinforcementMethod | None = None


class JobCreate(BaseModel):
    """`POST /v1/fine_tuning/jobs`: OpenAI's fields plus Quaff's option objects."""

    model_config = _CONFIG

    model: str = Field(
        description="A base model id (GET /v1/models), or a fine-tuned model or checkpoint of "
        "this project to continue from."
    )
    training_file: str = Field(description="A processed file id with purpose 'fine-tune'.")
    validation_file: str | None = Field(default=None, description="A processed file id.")
    hyperparameters: Hyperparameters | None = None  # type: ignore[valid-type]
    method: Method | None = None
    suffix: str | None = Field(
        default=None, max_length=64, description="Up to 64 of A-Z a-z 0-9 _ . -"
    )
    seed: SeedField[0] = SeedField[1]  # type: ignore[valid-type]
    metadata: dict[str, str] | None = Field(default=None, description="Up to 16 pairs.")
    integrations: list[Any] | None = Field(default=None, description="Not supported: empty.")
    lora: LoraOptions | None = None  # type: ignore[valid-type]
    peft: PeftOptions | None = None  # type: ignore[valid-type]
    quantization: QuantizationOptions | None = None  # type: ignore[valid-type]
    training: TrainingOptions | None = None  # type: ignore[valid-type]

    def request(self) -> dict[str, Any]:
        """The fields the client sent, as plain JSON values (what `create_job` resolves)."""
        return self.model_dump(exclude_unset=True)
