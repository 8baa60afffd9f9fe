// Wire shapes of the /v1 API: the OpenAI fine-tuning objects plus Quaff's additions.

export interface ApiList<T> {
  object: "list";
  data: T[];
  has_more: boolean;
  first_id?: string | null;
  last_id?: string | null;
}

export type JobStatus =
  "validating_files" | "queued" | "running" | "paused" | "succeeded" | "failed" | "cancelled";

export const JOB_STATUSES: JobStatus[] = [
  "validating_files",
  "queued",
  "running",
  "paused",
  "succeeded",
  "failed",
  "cancelled",
];
export const TERMINAL: ReadonlySet<string> = new Set(["succeeded", "failed", "cancelled"]);

export interface StabilityPoint {
  step: number;
  recall: number;
}

export interface Job {
  id: string;
  created_at: number;
  finished_at: number | null;
  model: string;
  fine_tuned_model: string | null;
  status: JobStatus;
  hyperparameters: Record<string, unknown>;
  method: { type: string } & Record<string, unknown>;
  training_file: string;
  validation_file: string | null;
  result_files: string[];
  trained_tokens: number | null;
  error: { code: string; message: string; param: string | null } | null;
  seed: number;
  suffix: string | null;
  estimated_finish: number | null;
  metadata: Record<string, string> | null;
  lora?: Record<string, unknown>;
  quantization?: Record<string, unknown>;
  training?: Record<string, unknown>;
  /** What training uses where the options leave it derived (the learning rate). */
  resolved?: { learning_rate: number };
  peft?: Record<string, unknown>;
  outlier_map?: string | null;
  outlier_stability?: StabilityPoint[] | null;
  progress?: { step: number; total_steps: number | null; epoch: number | null };
}

export interface MetricsData {
  step: number;
  total_steps: number | null;
  train_loss: number | null;
  train_mean_token_accuracy: number | null;
  valid_loss: number | null;
  valid_mean_token_accuracy: number | null;
  learning_rate: number | null;
  tokens_per_second: number | null;
}

export interface JobEvent {
  id: string;
  created_at: number;
  level: "info" | "warn" | "error";
  message: string;
  type: "message" | "metrics";
  data: Partial<MetricsData> | Record<string, unknown> | null;
}

export interface Checkpoint {
  id: string;
  created_at: number;
  fine_tuned_model_checkpoint: string;
  metrics: Record<string, number | null>;
  step_number: number;
  bytes: number;
}

export interface FileObject {
  id: string;
  bytes: number;
  created_at: number;
  filename: string;
  purpose: string;
  status: "uploaded" | "processed" | "error";
  status_details: string | null;
  format?: string | null;
  n_examples?: number | null;
}

export interface Model {
  id: string;
  owned_by: string;
  available?: boolean;
  reason?: string | null;
  base_model?: string | null;
  fine_tuning_job?: string | null;
}

export interface OutlierMap {
  id: string;
  created_at: number;
  base_model: string;
  dataset_file: string | null;
  strategy: string;
  threshold: number | null;
  options: Record<string, unknown>;
  n_layers: number;
  n_outlier_channels: number;
  layers?: Record<string, number[]> | null;
}

export type OptionType = "integer" | "number" | "boolean" | "string" | "string_list";
export type OptionValue = string | number | boolean | string[] | null;

/** One entry of GET /v1/fine_tuning/options: an option declared once on the server. */
export interface OptionSpec {
  name: string;
  group: string | null;
  field: string;
  param: string;
  type: OptionType;
  default: OptionValue;
  minimum?: number | null;
  maximum?: number | null;
  exclusive_minimum?: boolean;
  exclusive_maximum?: boolean;
  choices?: OptionValue[] | null;
  nullable?: boolean;
  help?: string | null;
}
