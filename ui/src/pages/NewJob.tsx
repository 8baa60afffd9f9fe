// New job: files (validated on upload), base model, method, and the options the server declares.
import { useRef, useState } from "preact/hooks";
import { ApiError, type Api } from "../api";
import { ErrorNote, useLoad } from "../components/bits";
import { FilePicker } from "../components/FilePicker";
import { fieldId, OptionField } from "../components/OptionField";
import {
  buildBody,
  formOptions,
  GROUP_TITLES,
  groups,
  METHODS,
  optionForParam,
  type RawValues,
} from "../options";
import { href, navigate } from "../router";
import type { ApiList, FileObject, Job, Model, OptionSpec } from "../types";

const TOP_LEVEL: Record<string, string> = {
  model: "model",
  training_file: "training_file",
  validation_file: "validation_file",
  suffix: "suffix",
  seed: "seed",
  "method.type": "method",
};
const TOP_IDS: Record<string, string> = {
  model: "model",
  training_file: "training-file",
  validation_file: "validation-file",
  suffix: "suffix",
  seed: "seed",
  method: "method",
};

export function NewJob({ api }: { api: Api }) {
  const models = useLoad((s) => api.get<ApiList<Model>>("/models", s), [api]);
  const spec = useLoad((s) => api.get<ApiList<OptionSpec>>("/fine_tuning/options", s), [api]);
  const listed = useLoad((s) => api.get<ApiList<FileObject>>("/files?purpose=fine-tune&limit=100", s), [api]);
  const [uploaded, setUploaded] = useState<FileObject[]>([]);
  const [fields, setFields] = useState({
    model: "",
    training_file: "",
    validation_file: "",
    method: "supervised",
    suffix: "",
    seed: "",
  });
  const [raw, setRaw] = useState<RawValues>({});
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [failure, setFailure] = useState<unknown>(null);
  const [open, setOpen] = useState<Set<string>>(new Set(["hyperparameters"]));
  const [busy, setBusy] = useState(false);
  const summary = useRef<HTMLDivElement>(null);

  const options = spec.data?.data ?? [];
  const files = [
    ...uploaded,
    ...(listed.data?.data ?? []).filter((f) => !uploaded.some((u) => u.id === f.id)),
  ];
  const base = (models.data?.data ?? []).filter((m) => m.owned_by === "quaff");
  const tuned = (models.data?.data ?? []).filter((m) => m.owned_by !== "quaff");
  const set = (key: keyof typeof fields) => (value: string) => setFields((f) => ({ ...f, [key]: value }));
  const labelOf = (key: string) => options.find((o) => o.name === key)?.help || key.replaceAll("_", " ");
  const idOf = (key: string) => {
    const option = options.find((o) => o.name === key);
    return option ? fieldId(option) : (TOP_IDS[key] ?? key);
  };

  const showErrors = (found: Record<string, string>) => {
    setErrors(found);
    const groupsWithErrors = options.flatMap((o) => (found[o.name] && o.group ? [o.group] : []));
    setOpen((now) => new Set([...now, ...groupsWithErrors]));
    setTimeout(() => summary.current?.focus(), 0);
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    setFailure(null);
    const { body, errors: found } = buildBody(
      { ...fields, validation_file: fields.validation_file || undefined },
      options,
      raw,
    );
    if (!fields.model) found.model = "Choose a base model.";
    if (!fields.training_file) found.training_file = "Upload or choose a training file.";
    if (Object.keys(found).length) return showErrors(found);
    setBusy(true);
    try {
      const job = await api.post<Job>("/fine_tuning/jobs", body);
      navigate(`/jobs/${job.id}`);
    } catch (e) {
      setBusy(false);
      const option = e instanceof ApiError ? optionForParam(options, e.param) : undefined;
      const key = option?.name ?? (e instanceof ApiError && e.param ? TOP_LEVEL[e.param] : undefined);
      if (key && e instanceof Error) showErrors({ [key]: e.message });
      else {
        setErrors({});
        setFailure(e);
      }
    }
  };

  const problems = Object.entries(errors);
  return (
    <section aria-labelledby="page-title">
      <p class="crumbs">
        <a href={href("/jobs")}>Jobs</a> /
      </p>
      <h1 id="page-title" tabIndex={-1}>
        New fine-tuning job
      </h1>
      <form class="job-form" noValidate onSubmit={submit}>
        {problems.length > 0 && (
          <div class="error-summary" role="alert" tabIndex={-1} ref={summary}>
            <h2>Please fix {problems.length === 1 ? "this problem" : `these ${problems.length} problems`}</h2>
            <ul>
              {problems.map(([key, message]) => (
                <li>
                  <a href={`#${idOf(key)}`}>{labelOf(key)}</a>: {message}
                </li>
              ))}
            </ul>
          </div>
        )}
        <ErrorNote error={failure} />
        <FilePicker
          api={api}
          id="training-file"
          legend="Training file"
          required
          files={files}
          value={fields.training_file}
          error={errors.training_file}
          onChange={set("training_file")}
          onUploaded={(f) => setUploaded((u) => [f, ...u])}
        />
        <FilePicker
          api={api}
          id="validation-file"
          legend="Validation file"
          required={false}
          files={files}
          value={fields.validation_file}
          error={errors.validation_file}
          onChange={set("validation_file")}
          onUploaded={(f) => setUploaded((u) => [f, ...u])}
        />

        <fieldset>
          <legend>Model and method</legend>
          <div class={`field${errors.model ? " has-error" : ""}`}>
            <label for="model">Base model</label>
            <select
              id="model"
              value={fields.model}
              aria-invalid={errors.model ? "true" : undefined}
              aria-describedby={errors.model ? "model-error" : undefined}
              onChange={(e) => set("model")(e.currentTarget.value)}
            >
              <option value="">— choose a model —</option>
              <optgroup label="Base models">
                {base.map((m) => (
                  <option value={m.id} disabled={m.available === false}>
                    {m.id}
                    {m.available === false ? ` (unavailable: ${m.reason ?? "not installed"})` : ""}
                  </option>
                ))}
              </optgroup>
              {tuned.length > 0 && (
                <optgroup label="Your fine-tuned models (continue training)">
                  {tuned.map((m) => (
                    <option value={m.id}>{m.id}</option>
                  ))}
                </optgroup>
              )}
            </select>
            {errors.model && (
              <p id="model-error" class="field-error">
                {errors.model}
              </p>
            )}
            <ErrorNote error={models.error} />
          </div>
          <div class={`field${errors.method ? " has-error" : ""}`}>
            <label for="method">Method</label>
            <select
              id="method"
              value={fields.method}
              onChange={(e) => set("method")(e.currentTarget.value)}
              aria-describedby={errors.method ? "method-error" : undefined}
            >
              {METHODS.map((m) => (
                <option value={m}>{m === "dpo" ? "dpo (preference pairs)" : m}</option>
              ))}
            </select>
            {errors.method && (
              <p id="method-error" class="field-error">
                {errors.method}
              </p>
            )}
          </div>
          <div class={`field${errors.suffix ? " has-error" : ""}`}>
            <label for="suffix">Suffix (optional, up to 64 characters)</label>
            <input
              id="suffix"
              maxLength={64}
              value={fields.suffix}
              onInput={(e) => set("suffix")(e.currentTarget.value)}
              aria-describedby={errors.suffix ? "suffix-error" : undefined}
            />
            {errors.suffix && (
              <p id="suffix-error" class="field-error">
                {errors.suffix}
              </p>
            )}
          </div>
          <div class={`field${errors.seed ? " has-error" : ""}`}>
            <label for="seed">Seed (optional)</label>
            <input
              id="seed"
              type="number"
              inputMode="numeric"
              min={0}
              step={1}
              value={fields.seed}
              onInput={(e) => set("seed")(e.currentTarget.value)}
              aria-describedby={errors.seed ? "seed-error" : undefined}
            />
            {errors.seed && (
              <p id="seed-error" class="field-error">
                {errors.seed}
              </p>
            )}
          </div>
        </fieldset>

        {spec.error ? (
          <ErrorNote error={spec.error}>
            The server did not send its option list, so the job will use its defaults:{" "}
          </ErrorNote>
        ) : null}
        {groups(formOptions(options, fields.method)).map(([group, items]) => (
          <details
            open={open.has(group)}
            onToggle={(e) => {
              const isOpen = (e.currentTarget as HTMLDetailsElement).open;
              setOpen((now) => {
                const next = new Set(now);
                if (isOpen) next.add(group);
                else next.delete(group);
                return next;
              });
            }}
          >
            <summary>
              {GROUP_TITLES[group] ?? group}{" "}
              <span class="muted">
                ({items.length} options{items.some((o) => errors[o.name]) ? ", with errors" : ""})
              </span>
            </summary>
            <div class="field-grid">
              {items.map((option) => (
                <OptionField
                  option={option}
                  raw={raw[option.name] ?? ""}
                  error={errors[option.name]}
                  onInput={(value) => setRaw((r) => ({ ...r, [option.name]: value }))}
                />
              ))}
            </div>
          </details>
        ))}
        <p class="muted">Empty fields keep the server's defaults.</p>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Creating…" : "Create job"}
        </button>
      </form>
    </section>
  );
}
