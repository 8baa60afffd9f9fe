// A job's checkpoints with their metrics, each downloadable.
import { bytes, clock, num, when } from "../format";
import type { Checkpoint } from "../types";
import { TableBox } from "./bits";

/** OpenAI's checkpoint metrics, in the order shown, with their column titles. */
const METRICS: [string, string][] = [
  ["train_loss", "Train loss"],
  ["train_mean_token_accuracy", "Train accuracy"],
  ["valid_loss", "Valid loss"],
  ["valid_mean_token_accuracy", "Valid accuracy"],
  ["full_valid_loss", "Full valid loss"],
  ["full_valid_mean_token_accuracy", "Full valid accuracy"],
];

/** The metrics any checkpoint carries a number for. */
export function metricNames(items: Checkpoint[]): [string, string][] {
  return METRICS.filter(([k]) => items.some((c) => typeof c.metrics?.[k] === "number"));
}

export function Checkpoints(props: {
  items: Checkpoint[];
  disabled: boolean;
  onDownload: (c: Checkpoint) => void;
}) {
  if (!props.items.length) return <p class="muted">No checkpoints yet.</p>;
  const names = metricNames(props.items);
  return (
    <TableBox label="Checkpoints">
      <table>
        <thead>
          <tr>
            <th scope="col">Step</th>
            {names.map(([, title]) => (
              <th scope="col">{title}</th>
            ))}
            <th scope="col">Model</th>
            <th scope="col">Saved</th>
            <th scope="col">Size</th>
            <th scope="col">
              <span class="sr-only">Download</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {props.items.map((c) => (
            <tr key={c.id}>
              <th scope="row">{c.step_number}</th>
              {names.map(([key]) => (
                <td>{num(c.metrics?.[key])}</td>
              ))}
              <td class="model-name">
                <code>{c.fine_tuned_model_checkpoint}</code>
              </td>
              <td>
                <time dateTime={new Date(c.created_at * 1000).toISOString()} title={when(c.created_at)}>
                  {clock(c.created_at)}
                </time>
              </td>
              <td>{bytes(c.bytes)}</td>
              <td>
                <button
                  type="button"
                  disabled={props.disabled}
                  onClick={() => props.onDownload(c)}
                  aria-label={`Download the checkpoint at step ${c.step_number}`}
                >
                  Download
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </TableBox>
  );
}
