// The Roofline page's figure (web/public/roofline.js) over two devices: one panel per device with that device's
// roofs only, the warning, and labels only on the points with the most time.
import { expect, test } from "bun:test";
// @ts-expect-error plain browser ES module without types
import { rooflineFigure, ROOF_TOP_LABELS } from "../../web/public/roofline.js";
import { PALETTE } from "../../engine/export/palette.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const pt = (label: string, phase: string, seconds: number, intensity: number, flopPerS: number) =>
  ({ label, phase, seconds, intensity, flopPerS, bytesPerS: flopPerS / intensity, flops: 1, bytes: 1, kernels: ["k"], why: null });
const view = (id: string, device: string, backend: string, n: number) => ({
  id, manifest: { label: id, device: { name: device, backend } },
  roofline: { "layer-op": Array.from({ length: n }, (_, i) => pt(`L${i} down`, i % 2 ? "decode" : "prefill", 1e-3 * (i + 1), 0.5 + i / 10, 1e9 * (1 + i))) },
});
const cpuCeil = { device: "cpu x", file: "cpu-x.json", memory: [{ name: "read bandwidth", value: 2e10, level: "dram" }, { name: "L2 bandwidth", value: 2e11, level: "l2" }], compute: [{ name: "fp32 FMA", value: 1.4e11 }], cacheBytes: {} };
const gpuCeil = { device: "NVIDIA H200", file: "nvidia-h200.json", memory: [{ name: "DRAM bandwidth", value: 4.2e12, level: "dram" }], compute: [{ name: "bf16 tensor core", value: 8e14 }], cacheBytes: {} };

test("two devices: two panels, each run on its own device's roofs, a warning, top-N labels", () => {
  const views = [view("cpu-run", "cpu x", "cpu", 40), view("gpu-run", "NVIDIA H200", "cuda", 40)];
  const dev = {
    warning: "Runs from 2 devices (cpu x (cpu); NVIDIA H200 (cuda)): each panel has its own device's roofs; positions are not comparable across panels.",
    devices: [
      { key: "cpu x (cpu)", device: "cpu x", backend: "cpu", runs: ["a"], ceilings: cpuCeil, notes: [] },
      { key: "NVIDIA H200 (cuda)", device: "NVIDIA H200", backend: "cuda", runs: ["b"], ceilings: gpuCeil, notes: ["cache note"] },
    ],
  };
  const f = rooflineFigure(views, ["a", "b"], dev, { group: "layer-op", phase: "both", palette: PALETTE });
  expect(f.warning).toContain("2 devices");
  expect(f.layout.yaxis.domain[0]).toBeGreaterThan(f.layout.yaxis2.domain[1]); // stacked panels, no overlap
  const onAxis = (ax: string) => f.traces.filter((t: any) => t.yaxis === ax);
  const roofNames = (ax: string) => onAxis(ax).filter((t: any) => t.mode === "lines").map((t: any) => t.name);
  expect(roofNames("y")).toEqual(["cpu x: read bandwidth (20.0 GB/s)", "cpu x: L2 bandwidth (200 GB/s)", "cpu x: fp32 FMA (140 GFLOP/s)"]);
  expect(roofNames("y2")).toEqual(["NVIDIA H200: DRAM bandwidth (4.20 TB/s)", "NVIDIA H200: bf16 tensor core (800.00 TFLOP/s)"]);
  expect(onAxis("y").filter((t: any) => t.mode !== "lines").every((t: any) => t.name.startsWith("cpu-run"))).toBe(true);
  expect(onAxis("y2").filter((t: any) => t.mode !== "lines").every((t: any) => t.name.startsWith("gpu-run"))).toBe(true);
  for (const ax of ["y", "y2"]) {
    const labels = onAxis(ax).filter((t: any) => t.mode !== "lines").flatMap((t: any) => t.text).filter((s: string) => s);
    expect(labels.length).toBeGreaterThan(2);
    expect(labels.length).toBeLessThanOrEqual(ROOF_TOP_LABELS);
    expect(labels).toContain("L39 down"); // the point with the most time is labelled
  }
  expect(f.notes).toContain("cache note");
  expect(f.layout.annotations.map((a: any) => a.text)).toEqual(["<b>cpu x (cpu)</b> · ceilings cpu-x.json", "<b>NVIDIA H200 (cuda)</b> · ceilings nvidia-h200.json"]);
  expect(f.height).toBeGreaterThanOrEqual(960);
});

test("one device without ceilings: a note, no roofs, no warning", () => {
  const f = rooflineFigure([view("r", "cpu y", "cpu", 3)], ["r"], { warning: null, devices: [{ key: "cpu y (cpu)", device: "cpu y", backend: "cpu", runs: ["r"], ceilings: null }] },
    { group: "layer-op", phase: "decode", palette: PALETTE });
  expect(f.warning).toBeNull();
  expect(f.traces.every((t: any) => t.mode !== "lines")).toBe(true);
  expect(f.notes[0]).toMatch(/No measured ceilings for cpu y \(cpu\)/);
  expect(f.traces.flatMap((t: any) => t.x).length).toBe(1); // decode only: L1
});

test("labels never overlap: points at the same place get one label (the one with the most time)", () => {
  const v = { id: "r", manifest: { label: "r", device: { name: "d", backend: "cpu" } },
    roofline: { "layer-op": [pt("L1 attention", "decode", 3e-3, 5, 5e9), pt("L2 attention", "decode", 2e-3, 5, 5e9), pt("L3 attention", "decode", 1e-3, 5.01, 5.01e9), pt("lm_head", "decode", 1e-4, 1, 4e10)] } };
  const f = rooflineFigure([v], ["r"], { warning: null, devices: [{ key: "d (cpu)", device: "d", backend: "cpu", runs: ["r"], ceilings: null }] },
    { group: "layer-op", phase: "both", palette: PALETTE });
  expect(f.traces.flatMap((t: any) => t.text).filter((s: string) => s)).toEqual(["L1 attention", "lm_head"]);
});
