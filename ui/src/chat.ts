// Streamed chat through POST /v1/chat/completions (OpenAI's request and chunk shapes).
import { ApiError, type Api } from "./api";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  temperature?: number;
  max_tokens?: number;
}

interface Chunk {
  choices?: { delta?: { content?: string | null }; finish_reason?: string | null }[];
  error?: { message: string; param?: string | null; code?: string | null };
}

/** Stream a reply: `onText` gets each piece of content; resolves with the finish reason. */
export async function streamChat(
  api: Api,
  request: ChatRequest,
  onText: (text: string) => void,
  signal?: AbortSignal,
): Promise<string | null> {
  let finish: string | null = null;
  await api.stream(
    "/chat/completions",
    (data) => {
      if (data.trim() === "[DONE]") return;
      const chunk = JSON.parse(data) as Chunk;
      if (chunk.error)
        throw new ApiError(200, chunk.error.message, chunk.error.param ?? null, chunk.error.code ?? null);
      const choice = chunk.choices?.[0];
      if (choice?.delta?.content) onText(choice.delta.content);
      if (choice?.finish_reason) finish = choice.finish_reason;
    },
    {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...request, stream: true }),
      signal,
    },
  );
  return finish;
}
