// engine/spec/draft-cache.ts — the draft model of a long-lived host (the web engine worker): opened on first
// use on the target's backend, checked against the target's tokenizer, kept while the same draft is asked for,
// closed when another one is (or the target changes).
import type { EngineModel, EngineSession, OpenModel } from "../api.ts";
import { checkDraftCompatible, type TokenizedModel } from "./compat.ts";
import type { SpecHost } from "./draft.ts";

type Decoder = { push(id: number): string; end(): string };

export class DraftCache {
  private key = "";
  private model: EngineModel | null = null;
  private session: EngineSession | null = null;

  constructor(private readonly openModel: OpenModel) {}

  /** The draft session for `source` drafting for `target` (max context as the target session's). */
  async get(source: string, root: string | undefined, target: EngineModel, targetSession: EngineSession): Promise<{ draft: EngineSession; host: SpecHost }> {
    const inner = (target.tokenizer as { inner?: { decoder(): Decoder } }).inner;
    if (!inner) throw new Error("speculative decoding needs the engine's own tokenizer (this engine module has none)");
    const key = `${target.id}|${target.backend}|${source}|${targetSession.maxContext}`;
    if (key !== this.key || !this.session) {
      this.close();
      const m = await this.openModel(source, { backend: target.backend, root });
      try {
        checkDraftCompatible(target as TokenizedModel, m as TokenizedModel);
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
