// Upload a JSONL file (validated by the server on upload) or pick one uploaded before.
import { useState } from "preact/hooks";
import type { Api } from "../api";
import type { FileObject } from "../types";
import { ErrorNote } from "./bits";

interface Props {
  api: Api;
  id: string;
  legend: string;
  required: boolean;
  files: FileObject[];
  value: string;
  error?: string;
  onChange: (fileId: string) => void;
  onUploaded: (file: FileObject) => void;
}

/** "line 1: …; line 2: …" as one problem per line. */
export function problems(details: string | null): string[] {
  return (details ?? "")
    .split(/;\s*(?=line \d+)/)
    .map((s) => s.trim())
    .filter(Boolean);
}

export function FilePicker(props: Props) {
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<FileObject | null>(null);
  const [failure, setFailure] = useState<unknown>(null);

  const upload = async (input: HTMLInputElement) => {
    const file = input.files?.[0];
    if (!file) return;
    const form = new FormData();
    form.append("purpose", "fine-tune");
    form.append("file", file, file.name);
    setBusy(true);
    setFailure(null);
    setResult(null);
    try {
      const uploaded = await props.api.post<FileObject>("/files", form);
      setResult(uploaded);
      props.onUploaded(uploaded);
      if (uploaded.status === "processed") props.onChange(uploaded.id);
    } catch (e) {
      setFailure(e);
    } finally {
      setBusy(false);
    }
  };

  const processed = props.files.filter((f) => f.status === "processed" && f.purpose === "fine-tune");
  const errorId = `${props.id}-error`;
  return (
    <fieldset class="file-picker" aria-describedby={props.error ? errorId : undefined}>
      <legend>
        {props.legend}
        {props.required ? " (required)" : " (optional)"}
      </legend>
      <label for={`${props.id}-upload`}>Upload a JSONL file</label>
      <input
        id={`${props.id}-upload`}
        type="file"
        accept=".jsonl,.json,application/jsonl,application/x-ndjson"
        disabled={busy}
        onChange={(e) => upload(e.currentTarget)}
      />
      <p role="status" aria-live="polite" class="muted">
        {busy ? "Uploading and validating…" : ""}
      </p>
      {result?.status === "processed" && (
        <p class="ok-note">
          <code>{result.id}</code> ({result.filename}) is valid: {result.n_examples ?? "?"} examples
          {result.format ? `, ${result.format} format` : ""}.
        </p>
      )}
      {result?.status === "error" && (
        <div class="error-note" role="alert">
          <p>
            <strong>{result.filename} was rejected.</strong> Fix these lines and upload it again:
          </p>
          <ul class="details">
            {problems(result.status_details).map((p) => (
              <li>{p}</li>
            ))}
          </ul>
        </div>
      )}
      <ErrorNote error={failure} />
      <label for={props.id}>or choose an uploaded file</label>
      <select
        id={props.id}
        value={props.value}
        aria-invalid={props.error ? "true" : undefined}
        aria-describedby={props.error ? errorId : undefined}
        onChange={(e) => props.onChange(e.currentTarget.value)}
      >
        <option value="">{props.required ? "— choose a file —" : "— none —"}</option>
        {processed.map((f) => (
          <option value={f.id}>
            {f.filename} · {f.id}
            {f.n_examples ? ` · ${f.n_examples} examples` : ""}
          </option>
        ))}
      </select>
      {props.error && (
        <p id={errorId} class="field-error">
          {props.error}
        </p>
      )}
    </fieldset>
  );
}
