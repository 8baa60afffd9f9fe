// One input generated from an option spec entry: its type, range, choices, default and help.
import { describe, show } from "../options";
import type { OptionSpec } from "../types";

export const fieldId = (option: OptionSpec) => `opt-${option.param.replaceAll(".", "-")}`;

interface Props {
  option: OptionSpec;
  raw: string;
  error?: string;
  onInput: (raw: string) => void;
}

export function OptionField({ option, raw, error, onInput }: Props) {
  const id = fieldId(option);
  const described = `${id}-help${error ? ` ${id}-error` : ""}`;
  const common = {
    id,
    "data-param": option.param,
    "aria-describedby": described,
    "aria-invalid": error ? ("true" as const) : undefined,
  };
  const defaultText = option.default === null || option.default === undefined ? "none" : show(option.default);
  let control;
  if (option.choices || option.type === "boolean") {
    const choices = option.choices ?? [true, false];
    const value = option.choices ? raw : raw === "" ? "" : String(choices.indexOf(raw === "true"));
    control = (
      <select
        {...common}
        value={value}
        onChange={(e) => {
          const picked = e.currentTarget.value;
          onInput(option.choices || picked === "" ? picked : String(choices[Number(picked)]));
        }}
      >
        <option value="">Default ({defaultText})</option>
        {choices.map((c, i) => (
          <option value={String(i)}>{show(c)}</option>
        ))}
      </select>
    );
  } else if (option.type === "integer" || option.type === "number") {
    control = (
      <input
        {...common}
        type="number"
        inputMode={option.type === "integer" ? "numeric" : "decimal"}
        step={option.type === "integer" ? 1 : "any"}
        min={option.minimum ?? undefined}
        max={option.maximum ?? undefined}
        placeholder={defaultText}
        value={raw}
        onInput={(e) => onInput(e.currentTarget.value)}
      />
    );
  } else {
    control = (
      <input
        {...common}
        type="text"
        placeholder={defaultText}
        value={raw}
        onInput={(e) => onInput(e.currentTarget.value)}
      />
    );
  }
  return (
    <div class={`field${error ? " has-error" : ""}`}>
      <label for={id}>{option.help || option.field.replaceAll("_", " ")}</label>
      {control}
      <p id={`${id}-help`} class="help">
        <code>{option.param}</code> · {describe(option)}
        {option.type === "string_list" ? " (comma-separated)" : ""}
      </p>
      {error && (
        <p id={`${id}-error`} class="field-error">
          {error}
        </p>
      )}
    </div>
  );
}
