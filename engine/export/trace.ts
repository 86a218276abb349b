// Chrome Trace Event Format export (opens in Perfetto and chrome://tracing). One process per phase, one track
// (thread) per layer — plus a "steps" track and a "tokens" track — with one complete ("X") event per op record.
// args carry layer, op, kernel, FLOPs, bytes and the achieved rates.
// Below them, the Nsight-Systems view: a device process (GPU kernels in the order they ran, gap and copy rows
// on their own tracks; on the CPU backend the engine thread) and a host process (FFI calls, tokenization,
// token emission). An engine call and its step's records share the step as correlation id: a flow arrow
// joins each FFI call to the first record of its step.
// Tensor parallelism (records with a rank): each rank gets its own tracks, one above another — in the device
// process "rank N" (its kernels), "rank N · gaps", "rank N · copies"; in the phase processes "rank N · layer L".
import type { Profile } from "../measure/profile.ts";
import { nonModelOps } from "../catalog.ts";
import { opRecords, ranksOf, stepTimeline, layerLabel } from "../measure/aggregate.ts";

export interface TraceEvent {
  name: string; ph: string; pid: number; tid: number; ts?: number; dur?: number; cat?: string; s?: string;
  id?: number; bp?: string; args?: Record<string, unknown>;
}

export function chromeTrace(p: Profile): { traceEvents: TraceEvent[]; displayTimeUnit: "ms"; otherData: Record<string, unknown> } {
  const recs = opRecords(p);
  const spans = p.host_spans ?? [];
  const starts = [...recs.map((r) => r.tStartNs), ...spans.map((h) => h.t_start_ns)];
  const t0 = starts.length ? Math.min(...starts) : 0;
  const ev: TraceEvent[] = [];
  const pidOf = { prefill: 1, decode: 2 } as const;
  const dev = p.manifest.device.name;
  for (const [phase, pid] of Object.entries(pidOf)) {
    ev.push({ name: "process_name", ph: "M", pid, tid: 0, args: { name: `${phase} · ${dev} (${p.manifest.device.backend})` } });
    ev.push({ name: "process_sort_index", ph: "M", pid, tid: 0, args: { sort_index: pid } });
    ev.push({ name: "thread_name", ph: "M", pid, tid: 0, args: { name: "steps" } });
  }
  const multi = ranksOf(recs).length > 1;
  // one track per layer (and rank): tids of rank k are k * RANK_TIDS + the layer's
  const layerTid = (r: { layer: number; rank?: number }) => (r.rank ?? 0) * RANK_TIDS + (r.layer >= 0 ? r.layer + 1 : 10000);
  const tracks = new Map(recs.map((r) => [layerTid(r), r]));
  for (const [tid, r] of [...tracks].sort((a, b) => a[0] - b[0])) for (const pid of Object.values(pidOf)) {
    const name = r.layer >= 0 ? `layer ${r.layer}` : layerLabel(r.layer);
    ev.push({ name: "thread_name", ph: "M", pid, tid, args: { name: multi ? `rank ${r.rank ?? 0} · ${name}` : name } });
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
      name: r.op, cat: r.phase, ph: "X", pid: pidOf[r.phase], tid: layerTid(r), ts, dur,
      args: {
        step: r.step, ...(multi ? { rank: r.rank ?? 0 } : {}), layer: r.layer, op: r.op, kernel: r.kernel, flops: r.flops, bytes: r.bytes, n_tokens: r.nTokens,
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
  ev.push(...timelineTracks(p, recs, spans, t0));
  return {
    traceEvents: ev,
    displayTimeUnit: "ms",
    otherData: {
      profile: p.id, model: p.manifest.model.id, device: dev, backend: p.manifest.device.backend,
      toggles: p.manifest.toggles, git_commit: p.manifest.git_commit, date: p.manifest.date,
    },
  };
}

const DEVICE_PID = 3, HOST_PID = 4, RANK_TIDS = 20000;

/** The device and host processes: records in execution order, host spans, flows from each call to its step. */
function timelineTracks(p: Profile, recs: ReturnType<typeof opRecords>, spans: NonNullable<Profile["host_spans"]>, t0: number): TraceEvent[] {
  const ev: TraceEvent[] = [];
  const gpu = p.manifest.device.backend === "cuda";
  const mode = p.fidelity?.mode ?? (p.summary as { profiling_mode?: string }).profiling_mode ?? "events";
  const meta = (pid: number, name: string, tracks: string[]) => {
    ev.push({ name: "process_name", ph: "M", pid, tid: 0, args: { name } });
    ev.push({ name: "process_sort_index", ph: "M", pid, tid: 0, args: { sort_index: pid } });
    tracks.forEach((t, i) => ev.push({ name: "thread_name", ph: "M", pid, tid: i + 1, args: { name: t } }));
  };
  const kinds = [gpu ? "kernels" : "ops", "gaps", gpu ? "copies" : "pool wake-up"];
  const ranks = ranksOf(recs), multi = ranks.length > 1;
  // one rank: the tracks of kinds (tids 1, 2, 3); N ranks: "rank k" (its kernels), "rank k · gaps", … (tids 3k + 1 …)
  meta(DEVICE_PID, `${gpu ? "GPU" : "CPU engine thread"} · ${p.manifest.device.name} · profiling ${mode}${multi ? ` · ${ranks.length} ranks` : ""}`,
    multi ? ranks.flatMap((k) => [`rank ${k}`, `rank ${k} · ${kinds[1]}`, `rank ${k} · ${kinds[2]}`]) : kinds);
  if (multi) ranks.forEach((_, i) => [1, 2, 3].forEach((j) => ev.push({ name: "thread_sort_index", ph: "M", pid: DEVICE_PID, tid: 3 * i + j, args: { sort_index: 3 * i + j } })));
  const firstOfStep = new Map<number, number>();
  const nonModel = nonModelOps();
  for (const r of recs) {
    const ts = (r.tStartNs - t0) / 1e3;
    const kind = r.op === "gap" ? 2 : nonModel.has(r.op) ? 3 : 1;
    const tid = kind + 3 * ranks.indexOf(r.rank ?? 0);
    ev.push({
      name: r.op === "gap" ? "gap" : `${r.op}${r.layer >= 0 ? ` L${r.layer}` : ""}`, cat: r.phase, ph: "X", pid: DEVICE_PID, tid, ts,
      dur: r.ns / 1e3, args: { correlation: r.step, step: r.step, ...(multi ? { rank: r.rank ?? 0 } : {}), layer: r.layer, op: r.op, kernel: r.kernel },
    });
    if (tid === 1 && !(firstOfStep.get(r.step)! <= ts)) firstOfStep.set(r.step, ts);
  }
  if (!spans.length) return ev;
  const hostTracks = { ffi: 1, tokenize: 2, emit: 3 } as const;
  meta(HOST_PID, "host · Bun", ["FFI calls (engine steps)", "tokenizer", "token events (SSE)"]);
  for (const h of spans) {
    const ts = (h.t_start_ns - t0) / 1e3;
    const name = h.kind === "ffi" ? `engine call${h.step !== undefined ? ` · step ${h.step}` : ""}` : h.kind === "tokenize" ? "tokenize" : "emit token";
    ev.push({
      name, cat: "host", ph: "X", pid: HOST_PID, tid: hostTracks[h.kind], ts, dur: (h.t_end_ns - h.t_start_ns) / 1e3,
      args: { prompt: h.prompt, ...(h.step !== undefined ? { correlation: h.step, step: h.step } : {}) },
    });
    const dev = h.step !== undefined ? firstOfStep.get(h.step) : undefined;
    if (h.kind === "ffi" && dev !== undefined) {
      ev.push({ name: "step", cat: "correlation", ph: "s", id: h.step, pid: HOST_PID, tid: 1, ts });
      ev.push({ name: "step", cat: "correlation", ph: "f", bp: "e", id: h.step, pid: DEVICE_PID, tid: 1, ts: dev });
    }
  }
  return ev;
}
