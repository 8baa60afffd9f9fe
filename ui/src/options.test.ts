import { describe, expect, it } from "vitest";
import {
  buildBody,
  describe as describeOption,
  formOptions,
  groups,
  optionForParam,
  parse,
  trainingValues,
} from "./options";
import type { OptionSpec } from "./types";

const spec = (
  o: Partial<OptionSpec> & Pick<OptionSpec, "name" | "group" | "field" | "type">,
): OptionSpec => ({
  param: `${o.group}.${o.field}`,
  default: null,
  ...o,
});

const R = spec({
  name: "lora_r",
  group: "lora",
  field: "r",
  type: "integer",
  default: 16,
  minimum: 1,
  maximum: 256,
});
const DROPOUT = spec({
  name: "lora_dropout",
  group: "lora",
  field: "dropout",
  type: "number",
  default: 0,
  minimum: 0,
  maximum: 1,
  exclusive_maximum: true,
});
const MODULES = spec({
  name: "lora_target_modules",
  group: "lora",
  field: "target_modules",
  type: "string_list",
  default: "all-linear",
});
const EPOCHS = spec({
  name: "n_epochs",
  group: "hyperparameters",
  field: "n_epochs",
  type: "integer",
  default: 3,
  minimum: 1,
  maximum: 50,
});
const INPUTS = spec({
  name: "training_train_on_inputs",
  group: "training",
  field: "train_on_inputs",
  type: "string",
  default: "auto",
  choices: ["auto", true, false],
});
const COMPILE = spec({
  name: "quantization_compile",
  group: "quantization",
  field: "compile",
  type: "boolean",
  default: false,
});
const SEED = { ...spec({ name: "seed", group: null, field: "seed", type: "integer" }), param: "seed" };
const METHOD = spec({
  name: "method",
  group: "method",
  field: "type",
  type: "string",
  choices: ["supervised", "dpo"],
});
const BETA = spec({
  name: "dpo_beta",
  group: "hyperparameters",
  field: "beta",
  type: "number",
  default: 0.1,
});
const SPEC = [R, DROPOUT, MODULES, INPUTS, COMPILE, EPOCHS];
const SERVED = [EPOCHS, METHOD, BETA, SEED, R];

describe("parse", () => {
  it("keeps the default for an empty input", () => {
    expect(parse(R, "  ")).toEqual({});
  });
  it("checks integers and ranges, exclusive bounds included", () => {
    expect(parse(R, "8")).toEqual({ value: 8 });
    expect(parse(R, "8.5").error).toMatch("whole number");
    expect(parse(R, "0").error).toBe("must be in [1, 256]");
    expect(parse(DROPOUT, "1").error).toBe("must be in [0, 1)");
    expect(parse(DROPOUT, "0.1")).toEqual({ value: 0.1 });
  });
  it("maps a choice index back to its JSON value", () => {
    expect(parse(INPUTS, "1")).toEqual({ value: true });
    expect(parse(INPUTS, "7").error).toBeDefined();
    expect(parse(COMPILE, "true")).toEqual({ value: true });
  });
  it("splits lists, but keeps a string default as it is", () => {
    expect(parse(MODULES, "q_proj, v_proj")).toEqual({ value: ["q_proj", "v_proj"] });
    expect(parse(MODULES, "all-linear")).toEqual({ value: "all-linear" });
  });
});

describe("buildBody", () => {
  it("puts hyperparameters in the method and other groups at the top level", () => {
    const { body, errors } = buildBody(
      { model: "tiny-llama", training_file: "file-1", method: "supervised", suffix: " s ", seed: "7" },
      SPEC,
      { lora_r: "8", n_epochs: "2", training_train_on_inputs: "2", lora_dropout: "" },
    );
    expect(errors).toEqual({});
    expect(body).toEqual({
      model: "tiny-llama",
      training_file: "file-1",
      method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 2 } } },
      lora: { r: 8 },
      training: { train_on_inputs: false },
      suffix: "s",
      seed: 7,
    });
  });
  it("names every bad input", () => {
    const { errors } = buildBody({ model: "m", training_file: "f", method: "dpo", seed: "x" }, SPEC, {
      lora_r: "0",
      n_epochs: "a",
    });
    expect(Object.keys(errors).sort()).toEqual(["lora_r", "n_epochs", "seed"]);
  });
});

describe("the form's groups", () => {
  it("leave out the options with a field of their own: no untitled seed group, no method group", () => {
    expect(groups(formOptions(SERVED, "dpo"))).toEqual([
      ["hyperparameters", [EPOCHS, BETA]],
      ["lora", [R]],
    ]);
  });
  it("show and send a method's own options only for that method", () => {
    expect(formOptions(SERVED, "supervised")).toEqual([EPOCHS, R]);
    const raw = { dpo_beta: "0.5", n_epochs: "2" };
    const fields = { model: "m", training_file: "f", method: "supervised" };
    expect(buildBody(fields, SERVED, raw).body.method).toEqual({
      type: "supervised",
      supervised: { hyperparameters: { n_epochs: 2 } },
    });
    expect(buildBody({ ...fields, method: "dpo" }, SERVED, raw).body.method).toEqual({
      type: "dpo",
      dpo: { hyperparameters: { n_epochs: 2, beta: 0.5 } },
    });
  });
});

describe("the spec's shape", () => {
  it("orders hyperparameters first and describes ranges", () => {
    expect(groups(SPEC).map(([g]) => g)).toEqual(["hyperparameters", "lora", "training", "quantization"]);
    expect(describeOption(R)).toBe("integer in [1, 256], default 16");
    expect(describeOption(INPUTS)).toBe("one of auto, true, false, default auto");
  });
  it("finds the option a 400 names", () => {
    expect(optionForParam(SPEC, "lora.r")).toBe(R);
    expect(optionForParam(SPEC, "method.supervised.hyperparameters.n_epochs")).toBe(EPOCHS);
    expect(optionForParam(SPEC, "training_file")).toBeUndefined();
  });
});

describe("a job's training options", () => {
  it("show the resolved learning rate where the job left it to the multiplier", () => {
    const job = {
      training: { learning_rate: null, max_seq_length: 128 },
      resolved: { learning_rate: 0.0004 },
    };
    expect(trainingValues(job)).toEqual({
      learning_rate: "0.0004 (base rate × multiplier)",
      max_seq_length: 128,
    });
  });
  it("show a given learning rate as given", () => {
    const job = { training: { learning_rate: 0.001 }, resolved: { learning_rate: 0.001 } };
    expect(trainingValues(job)).toEqual({ learning_rate: 0.001 });
  });
});
