import { describe, expect, it } from "vitest";
import { SseParser } from "./sse";

describe("SseParser", () => {
  it("yields the data of each event", () => {
    const parser = new SseParser();
    expect(parser.push('data: {"a": 1}\n\ndata: {"b": 2}\n\n')).toEqual(['{"a": 1}', '{"b": 2}']);
  });

  it("joins events split anywhere across chunks, CRLF included", () => {
    const parser = new SseParser();
    const text = 'data: {"step": 1}\r\n\r\n: keep-alive\r\n\r\ndata: [DONE]\r\n\r\n';
    const out: string[] = [];
    for (const ch of text) out.push(...parser.push(ch));
    expect(out).toEqual(['{"step": 1}', "[DONE]"]);
  });

  it("joins multi-line data, ignores other fields and waits for the blank line", () => {
    const parser = new SseParser();
    expect(parser.push("event: x\nid: 3\ndata: one\ndata:two\n")).toEqual([]);
    expect(parser.push("\n")).toEqual(["one\ntwo"]);
  });
});
