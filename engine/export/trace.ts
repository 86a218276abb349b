// Chrome Trace Event Format export (opens in Perfetto and chrome://tracing). One process per phase, one track
// (thread) per layer — plus a "steps" track and a "tokens" track — with one complete ("X") event per op record.
// args carry layer, op, kernel, FLOPs, bytes and the achieved rates.
import type { Profile } from "../profile.ts";
import { opRecords, stepTimeline, layerLabel } from "./aggregate.ts";

export interface TraceEvent {
  name: string; ph: string; pid: number; tid: number; ts?: number; dur?: number; cat?: string; s?: string;
  args?: Record<string, unknown>;
}

export function chromeTrace(p: Profile): { traceEvents: TraceEvent[]; displayTimeUnit: "ms"; otherData: Record<string, unknown> } {
  const recs = opRecords(p);
  const t0 = recs.length ? Math.min(...recs.map((r) => r.tStartNs)) : 0;
  const ev: TraceEvent[] = [];
  const pidOf = { prefill: 1, decode: 2 } as const;
  const dev = p.manifest.device.name;
  for (const [phase, pid] of Object.entries(pidOf)) {
    ev.push({ name: "process_name", ph: "M", pid, tid: 0, args: { name: `${phase} · ${dev} (${p.manifest.device.backend})` } });
    ev.push({ name: "process_sort_index", ph: "M", pid, tid: 0, args: { sort_index: pid } });
    ev.push({ name: "thread_name", ph: "M", pid, tid: 0, args: { name: "steps" } });
  }
  const layers = [...new Set(recs.map((r) => r.layer))];
  for (const l of layers) for (const pid of Object.values(pidOf)) {
    const tid = l >= 0 ? l + 1 : 10000;
    ev.push({ name: "thread_name", ph: "M", pid, tid, args: { name: l >= 0 ? `layer ${l}` : layerLabel(l) } });
    ev.push({ name: "thread_sort_index", ph: "M", pid, tid, args: { sort_index: tid } });
  }
  const stepStart = new Map<number, number>(), stepEnd = new Map<number, number>();
  for (const r of recs) {
    const ts = (r.tStartNs - t0) / 1e3;
    const dur = r.ns / 1e3;
    stepStart.set(r.step, Math.min(stepStart.get(r.step) ?? Infinity, ts));
    stepEnd.set(r.step, Math.max(stepEnd.get(r.step) ?? -Infinity, ts + dur));
    const sec = r.ns / 1e9;
    ev.push({
      name: r.op, cat: r.phase, ph: "X", pid: pidOf[r.phase], tid: r.layer >= 0 ? r.layer + 1 : 10000, ts, dur,
      args: {
        step: r.step, layer: r.layer, op: r.op, kernel: r.kernel, flops: r.flops, bytes: r.bytes, n_tokens: r.nTokens,
        "GFLOP/s": sec > 0 ? r.flops / sec / 1e9 : null, "GB/s": sec > 0 ? r.bytes / sec / 1e9 : null,
        "FLOP/byte": r.bytes > 0 ? r.flops / r.bytes : null,
      },
    });
  }
  for (const s of stepTimeline(p, recs)) {
    const ts = stepStart.get(s.step) ?? 0;
    ev.push({
      name: `${s.phase} step ${s.step}`, cat: s.phase, ph: "X", pid: pidOf[s.phase], tid: 0, ts,
      dur: (stepEnd.get(s.step) ?? ts) - ts, args: { step: s.step, engine_ms: s.ms },
    });
  }
  return {
    traceEvents: ev,
    displayTimeUnit: "ms",
    otherData: {
      profile: p.id, model: p.manifest.model.id, device: dev, backend: p.manifest.device.backend,
      toggles: p.manifest.toggles, git_commit: p.manifest.git_commit, date: p.manifest.date,
    },
  };
}
