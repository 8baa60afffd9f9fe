// The job form from the server's option spec: raw input text -> typed values -> the create body.
import type { Job, OptionSpec, OptionValue } from "./types";

/** Input text per option name; "" keeps the server's default. */
export type RawValues = Record<string, string>;

export interface CreateFields {
  model: string;
  training_file: string;
  validation_file?: string;
  method: string;
  suffix?: string;
  seed?: string;
}

/** The methods of `method.type`; an option named `<method>_…` (e.g. `dpo_beta`) is that method's. */
export const METHODS = ["supervised", "dpo"];

export const GROUP_TITLES: Record<string, string> = {
  hyperparameters: "Hyperparameters",
  lora: "LoRA",
  peft: "PEFT method",
  quantization: "Quantization",
  training: "Training",
};

/** The options the form lists by group: not those with a field of their own (`seed`, the method
 * select), and another method's own options not at all. */
export function formOptions(spec: OptionSpec[], method: string): OptionSpec[] {
  const otherMethods = METHODS.filter((m) => m !== method);
  return spec.filter(
    (o) => o.group && o.group !== "method" && !otherMethods.some((m) => o.name.startsWith(`${m}_`)),
  );
}

/** Option groups in spec order, hyperparameters first. */
export function groups(spec: OptionSpec[]): [string, OptionSpec[]][] {
  const byGroup = new Map<string, OptionSpec[]>();
  for (const option of spec) {
    const group = option.group ?? "";
    byGroup.set(group, [...(byGroup.get(group) ?? []), option]);
  }
  return [...byGroup].sort(([a], [b]) => Number(b === "hyperparameters") - Number(a === "hyperparameters"));
}

/** How a value is written in an input: lists comma-separated, the rest as JSON text. */
export function show(value: OptionValue | undefined): string {
  if (value == null) return "";
  if (Array.isArray(value)) return value.join(", ");
  return String(value);
}

function rangeText(option: OptionSpec): string {
  const lo = option.minimum,
    hi = option.maximum;
  const left = option.exclusive_minimum ? "(" : "[";
  const right = option.exclusive_maximum ? ")" : "]";
  if (lo != null && hi != null) return `in ${left}${lo}, ${hi}${right}`;
  if (lo != null) return option.exclusive_minimum ? `> ${lo}` : `≥ ${lo}`;
  if (hi != null) return option.exclusive_maximum ? `< ${hi}` : `≤ ${hi}`;
  return "";
}

/** "integer in [1, 256], default 16" */
export function describe(option: OptionSpec): string {
  const parts: string[] = [
    option.choices ? `one of ${option.choices.map(show).join(", ")}` : option.type.replace("_", " "),
  ];
  const range = rangeText(option);
  if (range) parts[0] += ` ${range}`;
  if (option.default !== null && option.default !== undefined) parts.push(`default ${show(option.default)}`);
  return parts.join(", ");
}

function checkRange(option: OptionSpec, n: number): string | null {
  const { minimum: lo, maximum: hi } = option;
  const low = lo == null || (option.exclusive_minimum ? n > lo : n >= lo);
  const high = hi == null || (option.exclusive_maximum ? n < hi : n <= hi);
  return low && high ? null : `must be ${rangeText(option)}`;
}

/** Parse one input: `{value}` to send, `{}` for the default, or `{error}`. */
export function parse(option: OptionSpec, raw: string): { value?: OptionValue; error?: string } {
  const text = raw.trim();
  if (text === "") return {};
  if (option.choices) {
    const index = Number(text);
    if (!Number.isInteger(index) || index < 0 || index >= option.choices.length)
      return { error: "choose one of the listed values" };
    return { value: option.choices[index] };
  }
  switch (option.type) {
    case "integer": {
      if (!/^[+-]?\d+$/.test(text)) return { error: "must be a whole number" };
      const n = Number(text);
      const bad = checkRange(option, n);
      return bad ? { error: bad } : { value: n };
    }
    case "number": {
      const n = Number(text);
      if (!Number.isFinite(n)) return { error: "must be a number" };
      const bad = checkRange(option, n);
      return bad ? { error: bad } : { value: n };
    }
    case "boolean":
      if (text !== "true" && text !== "false") return { error: "must be true or false" };
      return { value: text === "true" };
    case "string_list": {
      if (typeof option.default === "string" && text === option.default) return { value: text };
      const items = text
        .split(/[,\n]/)
        .map((s) => s.trim())
        .filter(Boolean);
      return items.length ? { value: items } : { error: "give at least one item" };
    }
    default:
      return { value: text };
  }
}

/** The POST /v1/fine_tuning/jobs body, or the errors by option name (and "seed"). */
export function buildBody(
  fields: CreateFields,
  spec: OptionSpec[],
  raw: RawValues,
): { body: Record<string, unknown>; errors: Record<string, string> } {
  const errors: Record<string, string> = {};
  const hyperparameters: Record<string, OptionValue> = {};
  const body: Record<string, unknown> = { model: fields.model, training_file: fields.training_file };
  for (const option of formOptions(spec, fields.method)) {
    const { value, error } = parse(option, raw[option.name] ?? "");
    if (error) errors[option.name] = error;
    if (value === undefined) continue;
    if (option.group === "hyperparameters") hyperparameters[option.field] = value;
    else if (option.group) {
      const group = (body[option.group] ??= {}) as Record<string, OptionValue>;
      group[option.field] = value;
    }
  }
  body.method = { type: fields.method, [fields.method]: { hyperparameters } };
  if (fields.validation_file) body.validation_file = fields.validation_file;
  if (fields.suffix?.trim()) body.suffix = fields.suffix.trim();
  if (fields.seed?.trim()) {
    if (/^\d+$/.test(fields.seed.trim())) body.seed = Number(fields.seed.trim());
    else errors.seed = "must be a whole number";
  }
  return { body, errors };
}

/** The option a 400's `param` names (e.g. `lora.r`, `method.supervised.hyperparameters.n_epochs`). */
export function optionForParam(spec: OptionSpec[], param: string | null): OptionSpec | undefined {
  if (!param) return undefined;
  return (
    spec.find((o) => o.param === param) ??
    spec.find((o) => o.group === "hyperparameters" && param.endsWith(`hyperparameters.${o.field}`))
  );
}

/** A job's training options as shown: a learning rate left to the multiplier (null) shows the rate
 * training uses, from the job object's `resolved`. */
export function trainingValues(job: Pick<Job, "training" | "resolved">): Record<string, unknown> | undefined {
  if (!job.training || job.training.learning_rate != null || !job.resolved) return job.training;
  return { ...job.training, learning_rate: `${job.resolved.learning_rate} (base rate × multiplier)` };
}
