// A job's facts and resolved options as definition lists.
import { trainingValues } from "../options";
import { href } from "../router";
import type { Job } from "../types";

function text(value: unknown): string {
  if (value === null || value === undefined) return "—";
  if (Array.isArray(value)) return value.join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function Group({ title, values }: { title: string; values?: Record<string, unknown> | null }) {
  if (!values || !Object.keys(values).length) return null;
  return (
    <div class="option-group">
      <h3>{title}</h3>
      <dl>
        {Object.entries(values).map(([k, v]) => (
          <div>
            <dt>{k}</dt>
            <dd>{text(v)}</dd>
          </div>
        ))}
      </dl>
    </div>
  );
}

export function OptionsList({ job, created, finished }: { job: Job; created: string; finished: string }) {
  return (
    <div class="option-groups">
      <div class="option-group job-facts">
        <h3>Job</h3>
        <dl>
          <div>
            <dt>Base model</dt>
            <dd>{job.model}</dd>
          </div>
          <div>
            <dt>Fine-tuned model</dt>
            <dd>
              <code class="wrap">{job.fine_tuned_model ?? "—"}</code>
            </dd>
          </div>
          <div>
            <dt>Method</dt>
            <dd>{job.method?.type ?? "supervised"}</dd>
          </div>
          <div>
            <dt>Training file</dt>
            <dd>
              <code>{job.training_file}</code>
            </dd>
          </div>
          <div>
            <dt>Validation file</dt>
            <dd>
              <code>{job.validation_file ?? "—"}</code>
            </dd>
          </div>
          <div>
            <dt>Seed</dt>
            <dd>{job.seed}</dd>
          </div>
          <div>
            <dt>Created</dt>
            <dd>{created}</dd>
          </div>
          <div>
            <dt>Finished</dt>
            <dd>{finished}</dd>
          </div>
          {job.outlier_map && (
            <div>
              <dt>Outlier map</dt>
              <dd>
                <a href={href(`/maps/${job.outlier_map}`)}>
                  <code>{job.outlier_map}</code>
                </a>
              </dd>
            </div>
          )}
        </dl>
      </div>
      <Group title="Hyperparameters" values={job.hyperparameters} />
      <Group title="PEFT" values={job.peft} />
      <Group title="LoRA" values={job.lora} />
      <Group title="Quantization" values={job.quantization} />
      <Group title="Training" values={trainingValues(job)} />
    </div>
  );
}
