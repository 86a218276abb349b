// engine/spec/draft-cache.ts — the draft model (or EAGLE head) of a long-lived host (the web engine worker):
// opened on first use on the target's backend, checked against the target, kept while the same one is asked
// for, closed when another one is (or the target changes).
import type { EngineModel, EngineSession, OpenModel } from "../api.ts";
import { checkDraftCompatible, type TokenizedModel } from "./compat.ts";
import type { SpecHost } from "./draft.ts";
import { openEagleHead, type EagleTarget } from "./eagle-head.ts";
import { outputFormat } from "../formats/requant.ts";

type Decoder = { push(id: number): string; end(): string };

export class DraftCache {
  private key = "";
  private model: EngineModel | null = null;
  private session: EngineSession | null = null;

  constructor(private readonly openModel: OpenModel) {}

  /** The draft session for `source` drafting for `target` (max context as the target session's). */
  get(source: string, root: string | undefined, target: EngineModel, targetSession: EngineSession): Promise<{ draft: EngineSession; host: SpecHost }> {
    return this.cached(`${target.id}|${target.backend}|${source}|${targetSession.maxContext}`, target, targetSession, async () => {
      const m = await this.openModel(source, { backend: target.backend, root });
      try {
        checkDraftCompatible(target as TokenizedModel, m as TokenizedModel);
      } catch (e) {
        m.close();
        throw e;
      }
      return m;
    });
  }

  /**
   * The session of the EAGLE head in `dir` (SafeAILab layout) for `target`, which must be a model opened by
   * engine/index.ts openModel (the head shares its engine and reads its lm_head).
   */
  getEagle(dir: string, root: string | undefined, target: EngineModel, targetSession: EngineSession): Promise<{ draft: EngineSession; host: SpecHost }> {
    if (!("engine" in target) || !("path" in target)) throw new Error("speculative eagle needs a model opened by the engine (this engine module has none)");
    // the head's lm_head takes the target's output format (eagle-head.ts): part of the key
    return this.cached(`eagle|${target.id}|${target.backend}|${dir}|${outputFormat(target.weights)}|${targetSession.maxContext}`, target, targetSession,
      () => openEagleHead(dir, target as unknown as EagleTarget, { root }));
  }

  /** The cached session under `key`, or a fresh one of the model `open` gives (closing the previous one). */
  private async cached(key: string, target: EngineModel, targetSession: EngineSession, open: () => Promise<EngineModel>): Promise<{ draft: EngineSession; host: SpecHost }> {
    const inner = (target.tokenizer as { inner?: { decoder(): Decoder } }).inner;
    if (!inner) throw new Error("speculative decoding needs the engine's own tokenizer (this engine module has none)");
    if (key !== this.key || !this.session) {
      this.close();
      const m = await open();
      try {
        this.session = m.newSession({ maxBatch: 1, maxContext: targetSession.maxContext });
      } catch (e) {
        m.close();
        throw e;
      }
      this.model = m;
      this.key = key;
    }
    return { draft: this.session, host: { eosIds: target.tokenizer.eosIds, decoder: () => inner.decoder(), backend: target.backend } };
  }

  close(): void {
    try { this.session?.close(); } catch { /* already gone */ }
    try { this.model?.close(); } catch { /* already gone */ }
    this.session = null; this.model = null; this.key = "";
  }
}
