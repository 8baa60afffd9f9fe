// Display formatting: durations, times, numbers (one home for each rule).

/** 75 -> "1m 15s"; 3700 -> "1h 1m"; negative -> "0s". */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

/** Time left until a unix-seconds finish ("—" when unknown or the job is not running). */
export function eta(finish: number | null | undefined, status: string, now = Date.now() / 1000): string {
  if (finish == null || (status !== "running" && status !== "queued")) return "—";
  return duration(finish - now);
}

/** A unix-seconds timestamp as local date and time. */
export function when(unix: number | null | undefined): string {
  if (unix == null) return "—";
  return new Date(unix * 1000).toLocaleString(undefined, {
    dateStyle: "medium",
    timeStyle: "short",
  });
}

/** A unix-seconds timestamp as local HH:MM:SS. */
export function clock(unix: number): string {
  return new Date(unix * 1000).toLocaleTimeString(undefined, { hour12: false });
}

/** Significant digits for metrics: 1.23456 -> "1.235", 0.000123 -> "1.23e-4", null -> "—". */
export function num(value: number | null | undefined, digits = 4): string {
  if (value == null || !Number.isFinite(value)) return "—";
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(2);
  return Number(value.toPrecision(digits)).toString();
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

/** "running" -> "Running", "validating_files" -> "Validating files". */
export function label(status: string): string {
  const text = status.replaceAll("_", " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}
