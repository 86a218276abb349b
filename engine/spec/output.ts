// engine/spec/output.ts — what every speculative loop (draft.ts, eagle.ts) does with the tokens it emits: stop
// ids, max tokens, the streaming detokenizer, per-token times, and the done event.
import type { GenerateEvent } from "../api.ts";
import type { SpecTrace } from "./stats.ts";

export type SpecDoneEvent = Extract<GenerateEvent, { type: "done" }> & { speculative: SpecTrace };
export type SpecEvent = Exclude<GenerateEvent, { type: "done" }> | SpecDoneEvent;

export class SpecOutput {
  readonly out: number[] = [];
  readonly tpot: number[] = [];
  text = "";
  reason: "stop" | "length" | "cancelled" = "length";
  private readonly dec: { push(id: number): string; end(): string };

  constructor(decoder: () => { push(id: number): string; end(): string }, private readonly stop: Set<number>, private readonly maxTokens: number) {
    this.dec = decoder();
  }

  /**
   * Yields the token events of one step's tokens (stepMs shared out over them in the decode phase); returns false
   * when the generation ends at a stop id or at max tokens (reason set).
   */
  *emit(tokens: readonly number[], stepMs: number, phase: "prefill" | "decode"): Generator<SpecEvent, boolean> {
    for (const t of tokens) {
      if (this.stop.has(t)) { this.reason = "stop"; return false; }
      this.out.push(t);
      const piece = this.dec.push(t);
      this.text += piece;
      if (phase === "decode") this.tpot.push(stepMs / tokens.length);
      yield { type: "token", index: this.out.length - 1, token: t, text: piece, ms: phase === "decode" ? stepMs / tokens.length : stepMs, phase };
      if (this.out.length >= this.maxTokens) { this.reason = "length"; return false; }
    }
    return true;
  }

  /** The done event: decode tok/s over the steps' draft + verify time. */
  done(trace: SpecTrace, prefillMs: number, promptTokens: number): SpecDoneEvent {
    this.text += this.dec.end();
    const decodeMs = trace.draftMs.reduce((x, y) => x + y, 0) + trace.verifyMs.reduce((x, y) => x + y, 0);
    const genAfterFirst = Math.max(0, this.out.length - 1);
    return {
      type: "done", reason: this.reason, tokens: this.out, text: this.text, ttftMs: prefillMs, tpotMs: this.tpot,
      prefillTokS: prefillMs > 0 ? (promptTokens / prefillMs) * 1000 : 0,
      decodeTokS: decodeMs > 0 ? (genAfterFirst / decodeMs) * 1000 : 0,
      speculative: trace,
    };
  }
}

/** The done event of a generation cancelled before it started. */
export function cancelledBeforeStart(trace: SpecTrace): SpecDoneEvent {
  return { type: "done", reason: "cancelled", tokens: [], text: "", ttftMs: 0, tpotMs: [], prefillTokS: 0, decodeTokS: 0, speculative: trace };
}
