// Playground: chat with one model, or two side by side (base vs tuned), streamed.
import { useRef, useState } from "preact/hooks";
import type { Api } from "../api";
import { ErrorNote, useLoad } from "../components/bits";
import { streamChat, type ChatMessage } from "../chat";
import type { ApiList, Model } from "../types";

interface Pane {
  model: string;
  replies: string[];
  error: unknown;
  streaming: boolean;
}

const pane = (model: string): Pane => ({ model, replies: [], error: null, streaming: false });

/** The messages pane `replies` sees for turn `turn`: system, earlier turns, this user message. */
export function conversation(
  system: string,
  turns: string[],
  replies: string[],
  turn: number,
): ChatMessage[] {
  const messages: ChatMessage[] = system.trim() ? [{ role: "system", content: system.trim() }] : [];
  for (let i = 0; i < turn; i++) {
    messages.push({ role: "user", content: turns[i] });
    if (replies[i]) messages.push({ role: "assistant", content: replies[i] });
  }
  messages.push({ role: "user", content: turns[turn] });
  return messages;
}

export function Playground({ api, query }: { api: Api; query: URLSearchParams }) {
  const models = useLoad((s) => api.get<ApiList<Model>>("/models", s), [api]);
  const [panes, setPanes] = useState<Pane[]>(() => [
    pane(query.get("model") ?? ""),
    pane(query.get("compare") ?? ""),
  ]);
  const [compare, setCompare] = useState(query.has("compare"));
  const [turns, setTurns] = useState<string[]>([]);
  const [draft, setDraft] = useState("");
  const [system, setSystem] = useState("");
  const [temperature, setTemperature] = useState("0.7");
  const [maxTokens, setMaxTokens] = useState("128");
  const controllers = useRef<AbortController[]>([]);

  const choices = (models.data?.data ?? []).filter((m) => m.available !== false).map((m) => m.id);
  const active = compare ? panes : panes.slice(0, 1);
  const streaming = active.some((p) => p.streaming);
  const update = (index: number, change: (p: Pane) => Pane) =>
    setPanes((all) => all.map((p, i) => (i === index ? change(p) : p)));

  const ask = async (index: number, allTurns: string[], turn: number) => {
    const controller = new AbortController();
    controllers.current.push(controller);
    const current = panes[index];
    update(index, (p) => ({
      ...p,
      streaming: true,
      error: null,
      replies: [...p.replies.slice(0, turn), ""],
    }));
    try {
      await streamChat(
        api,
        {
          model: current.model,
          messages: conversation(system, allTurns, current.replies, turn),
          temperature: Number(temperature),
          max_tokens: Number(maxTokens),
        },
        (text) =>
          update(index, (p) => ({ ...p, replies: p.replies.map((r, i) => (i === turn ? r + text : r)) })),
        controller.signal,
      );
    } catch (e) {
      if (!(e instanceof DOMException && e.name === "AbortError")) update(index, (p) => ({ ...p, error: e }));
    } finally {
      update(index, (p) => ({ ...p, streaming: false }));
    }
  };

  const send = (event: Event) => {
    event.preventDefault();
    const text = draft.trim();
    if (!text || streaming || active.some((p) => !p.model)) return;
    const next = [...turns, text];
    setTurns(next);
    setDraft("");
    controllers.current = [];
    active.forEach((_, i) => void ask(i, next, next.length - 1));
  };
  const stop = () => controllers.current.forEach((c) => c.abort());
  const clear = () => {
    stop();
    setTurns([]);
    setPanes((all) => all.map((p) => ({ ...p, replies: [], error: null })));
  };

  return (
    <section aria-labelledby="page-title">
      <h1 id="page-title" tabIndex={-1}>
        Playground
      </h1>
      <datalist id="model-ids">
        {choices.map((id) => (
          <option value={id} />
        ))}
      </datalist>
      <div class="playground-settings">
        <label class="check">
          <input type="checkbox" checked={compare} onChange={(e) => setCompare(e.currentTarget.checked)} />
          Compare two models side by side
        </label>
        <label>
          Temperature
          <input
            type="number"
            min={0}
            max={2}
            step={0.1}
            value={temperature}
            onInput={(e) => setTemperature(e.currentTarget.value)}
          />
        </label>
        <label>
          Max tokens
          <input
            type="number"
            min={1}
            max={4096}
            step={1}
            value={maxTokens}
            onInput={(e) => setMaxTokens(e.currentTarget.value)}
          />
        </label>
        <label class="wide">
          System prompt (optional)
          <textarea rows={2} value={system} onInput={(e) => setSystem(e.currentTarget.value)} />
        </label>
      </div>
      <ErrorNote error={models.error} />
      <div class={`panes${compare ? " two" : ""}`}>
        {active.map((p, index) => (
          <section class="pane" aria-label={`Model ${index + 1}`}>
            <label>
              {compare ? `Model ${index === 0 ? "A" : "B"}` : "Model"}
              <input
                list="model-ids"
                value={p.model}
                placeholder="a base or fine-tuned model id"
                disabled={streaming}
                onInput={(e) => {
                  const model = e.currentTarget.value;
                  update(index, (q) => ({ ...q, model }));
                }}
              />
            </label>
            <div role="log" aria-label={`Conversation with ${p.model || "the model"}`}>
              <ol class="chat">
                {turns.map((turn, i) => (
                  <>
                    <li class="bubble user">
                      <span class="sr-only">You: </span>
                      {turn}
                    </li>
                    <li
                      class="bubble assistant"
                      aria-busy={p.streaming && i === turns.length - 1 ? "true" : "false"}
                    >
                      <span class="sr-only">{p.model}: </span>
                      <span class="reply">{p.replies[i] ?? ""}</span>
                      {p.streaming && i === turns.length - 1 && (
                        <span class="cursor" aria-hidden="true">
                          ▍
                        </span>
                      )}
                    </li>
                  </>
                ))}
              </ol>
            </div>
            <ErrorNote error={p.error} />
          </section>
        ))}
      </div>
      <form class="composer" onSubmit={send}>
        <label for="prompt">Message</label>
        <textarea
          id="prompt"
          rows={3}
          value={draft}
          onInput={(e) => setDraft(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && !e.shiftKey) send(e);
          }}
          placeholder="Enter sends, Shift+Enter adds a line"
        />
        <div class="toolbar">
          <button
            type="submit"
            class="primary"
            disabled={streaming || !draft.trim() || active.some((x) => !x.model)}
          >
            Send
          </button>
          <button type="button" onClick={stop} disabled={!streaming}>
            Stop
          </button>
          <button type="button" onClick={clear} disabled={!turns.length}>
            Clear
          </button>
        </div>
      </form>
    </section>
  );
}
