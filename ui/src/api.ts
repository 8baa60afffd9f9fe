// The one client of the /v1 API: bearer auth, the OpenAI error envelope, SSE, downloads.
import { SseParser } from "./sse";

const KEY_STORAGE = "quaff.apiKey";

/** An API error in the OpenAI envelope: `param` names the offending field when there is one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** The key for this browser tab only: sessionStorage is cleared when the tab closes. */
export const keyStore = {
  get: (): string | null => sessionStorage.getItem(KEY_STORAGE),
  set: (key: string): void => sessionStorage.setItem(KEY_STORAGE, key),
  clear: (): void => sessionStorage.removeItem(KEY_STORAGE),
};

/** Read `{"error": {message, param, code}}` from a failed response (or its text). */
export async function errorFrom(response: Response): Promise<ApiError> {
  const text = await response.text();
  try {
    const { error } = JSON.parse(text) as { error: { message: string; param?: string; code?: string } };
    return new ApiError(response.status, error.message, error.param ?? null, error.code ?? null);
  } catch {
    return new ApiError(response.status, text.slice(0, 300) || `HTTP ${response.status}`);
  }
}

export class Api {
  constructor(
    private readonly key: string,
    private readonly onUnauthorized: (error: ApiError) => void = () => {},
    private readonly root = "/v1",
  ) {}

  /** fetch under /v1 with the bearer header; throws ApiError unless 2xx. */
  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("Authorization", `Bearer ${this.key}`);
    let response: Response;
    try {
      response = await fetch(this.root + path, { ...init, headers });
    } catch (cause) {
      if (cause instanceof DOMException && cause.name === "AbortError") throw cause;
      throw new ApiError(0, `Cannot reach the server (${String(cause)}).`);
    }
    if (response.ok) return response;
    const error = await errorFrom(response);
    if (response.status === 401) this.onUnauthorized(error);
    throw error;
  }

  async get<T>(path: string, signal?: AbortSignal): Promise<T> {
    return (await this.fetch(path, { signal })).json() as Promise<T>;
  }

  async post<T>(path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const init: RequestInit = { method: "POST", signal };
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { "Content-Type": "application/json" };
    }
    return (await this.fetch(path, init)).json() as Promise<T>;
  }

  /** POST/GET a Server-Sent Events stream; calls `onData` with each event's data. */
  async stream(path: string, onData: (data: string) => void, init: RequestInit = {}): Promise<void> {
    const headers = new Headers(init.headers);
    headers.set("Accept", "text/event-stream");
    const response = await this.fetch(path, { ...init, headers });
    if (!response.body) throw new ApiError(response.status, "The server sent no stream.");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new SseParser();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const data of parser.push(value)) onData(data);
    }
  }

  /** Download a (bearer-protected) file: fetch it as a blob, then save it under its name. */
  async download(path: string, fallbackName: string): Promise<string> {
    const response = await this.fetch(path);
    const disposition = response.headers.get("Content-Disposition") ?? "";
    const name = /filename="?([^";]+)"?/.exec(disposition)?.[1] ?? fallbackName;
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    return name;
  }
}
