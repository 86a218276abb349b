// engine/synth/worker.ts — a Bun Worker that encodes row chunks of synthetic tensors for engine/synth/pool.ts.
//
// Message in: { id, job: EncodeJob }. Message out: { id, buf } with the encoded bytes as a transferred
// ArrayBuffer (no copy), or { id, error, stack } when the job throws.
import { encodeTensorRows } from "./synthetic.ts";
import type { EncodeJob } from "./pool.ts";

declare const self: Worker;

self.onmessage = (ev: MessageEvent<{ id: number; job: EncodeJob }>) => {
  const { id, job } = ev.data;
  try {
    const b = encodeTensorRows(job.spec, job.t, job.ggmlType, job.row0, job.rows);
    const whole = b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b : b.slice();
    self.postMessage({ id, buf: whole.buffer }, [whole.buffer as ArrayBuffer]);
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    self.postMessage({ id, error: err.message, stack: err.stack });
  }
};
