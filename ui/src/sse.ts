// Server-Sent Events framing (the text/event-stream format), fed chunk by chunk.

/** Splits a text/event-stream into the `data` of each event; chunks may end anywhere. */
export class SseParser {
  private buffer = "";
  private data: string[] = [];

  /** Feed one decoded chunk; returns the payloads of the events it completed. */
  push(chunk: string): string[] {
    this.buffer += chunk;
    const done: string[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      if (c === 13 && i + 1 === this.buffer.length) break; // a "\r\n" may be split across chunks
      this.line(this.buffer.slice(start, i), done);
      if (c === 13 && this.buffer.charCodeAt(i + 1) === 10) i++;
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
    return done;
  }

  private line(line: string, done: string[]): void {
    if (line === "") {
      if (this.data.length) done.push(this.data.join("\n"));
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return; // a comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
  }
}
