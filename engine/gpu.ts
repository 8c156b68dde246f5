// The GPU context: one GPUDevice with the adapter's real limits, the optional features the engine can use, and errors
// turned into exceptions. Imports nothing from Node: the caller hands in a `GPU` (navigator.gpu in a page, Dawn's
// `create()` in Node; see engine/node/device.ts). The context also carries the engine's options (engine/options.ts).
import { resolveEngineOptions, type EngineOptions, type EngineSwitches } from './options.ts';

export interface GpuFeatures {
  shaderF16: boolean;
  subgroups: boolean;
  timestampQuery: boolean;
  subgroupMatrix: boolean;
}

export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  backend: string;
  isSoftware: boolean;
  /** invocations per subgroup (0 when the adapter does not say) */
  subgroupMinSize: number;
  subgroupMaxSize: number;
  /** subgroup-matrix shapes the adapter offers (chromium-experimental-subgroup-matrix), e.g. f16->f32 16x16x16 */
  subgroupMatrixConfigs: SubgroupMatrixConfig[];
}

export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

export interface GpuContextOptions {
  /** Ask for these optional features when the adapter has them (default: all the engine knows). */
  wantFeatures?: Partial<GpuFeatures>;
  powerPreference?: GPUPowerPreference;
  label?: string;
  /**
   * Lower these limits below what the adapter offers (WebGPU cannot request less than its defaults, so the context
   * reports and enforces the lowered values itself): tests cross a limit with a small image this way.
   */
  lowerLimits?: { maxStorageBufferBindingSize?: number; maxBufferSize?: number };
  /** The engine's switches (kernels, tiles, split-K...): defaults from the adapter (engine/options.ts). */
  engine?: EngineSwitches;
}

export class GpuError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GpuError';
  }
}

const FEATURE_NAMES: Readonly<Record<keyof GpuFeatures, string>> = {
  shaderF16: 'shader-f16',
  subgroups: 'subgroups',
  timestampQuery: 'timestamp-query',
  subgroupMatrix: 'chromium-experimental-subgroup-matrix',
};

/** Limits we raise to the adapter's maximum (the defaults cap storage bindings at 128 MiB, workgroups at 256). */
const RAISED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'maxBindGroups',
  'maxUniformBufferBindingSize',
] as const;

export function describeAdapter(adapter: GPUAdapter): AdapterDescription {
  const info = adapter.info as GPUAdapterInfo & {
    backend?: string;
    type?: string;
    driver?: string;
    subgroupMinSize?: number;
    subgroupMaxSize?: number;
    subgroupMatrixConfigs?: Iterable<SubgroupMatrixConfig>;
  };
  const vendor = info?.vendor ?? '';
  const architecture = info?.architecture ?? '';
  const device = info?.device ?? '';
  const description = info?.description ?? '';
  const text = `${vendor} ${architecture} ${device} ${description}`.toLowerCase();
  const isSoftware =
    info?.type === 'CPU' ||
    /llvmpipe|lavapipe|swiftshader|software|warp|cpu/.test(text) ||
    (info as { isFallbackAdapter?: boolean })?.isFallbackAdapter === true;
  return {
    vendor,
    architecture,
    device,
    description: description || [vendor, device].filter(Boolean).join(' ') || 'unnamed adapter',
    backend: info?.backend ?? '',
    isSoftware,
    subgroupMinSize: info?.subgroupMinSize ?? 0,
    subgroupMaxSize: info?.subgroupMaxSize ?? 0,
    subgroupMatrixConfigs: [...(info?.subgroupMatrixConfigs ?? [])].map((c) => ({
      componentType: String(c.componentType),
      resultComponentType: String(c.resultComponentType),
      M: Number(c.M),
      N: Number(c.N),
      K: Number(c.K),
    })),
  };
}

/**
 * A device and what the engine needs to know about it. Validation errors, out-of-memory and device loss surface as
 * thrown GpuErrors from `check()` / `read()`, never as silently wrong results.
 */
export class GpuContext {
  readonly features: GpuFeatures;
  readonly limits: GPUSupportedLimits;
  readonly adapter: AdapterDescription;
  private lost: string | null = null;
  private uncaptured: string[] = [];
  private modules = new Map<string, Promise<GPUShaderModule>>();
  private pipelines = new Map<string, Promise<GPUComputePipeline>>();
  private destroyed = false;
  /** Buffers made through this context and not yet destroyed (count and bytes): cheap accounting for leak hunts. */
  private live = { count: 0, bytes: 0 };
  /** what the engine keeps per device (scratch buffers, probes; see memo) */
  private readonly memos = new Map<string, unknown>();
  /** The engine's switches, resolved for this adapter: what every kernel reads. */
  readonly options: Readonly<EngineOptions>;
  private readonly switches: EngineSwitches;
  /** the context that owns the device (this one, or the one a view was made from) */
  private readonly root: GpuContext = this;

  private constructor(
    readonly device: GPUDevice,
    // Held for the device's lifetime: Dawn's Node binding destroys the native instance when the GPU object is
    // garbage-collected, and a device whose instance is gone crashes the process on its next event
    // (std::system_error in InstanceBase::ProcessEvents).
    // biome-ignore lint/correctness/noUnusedPrivateClassMembers: held, never read (above)
    private readonly gpu: GPU,
    // biome-ignore lint/correctness/noUnusedPrivateClassMembers: held, never read (above)
    private readonly gpuAdapter: GPUAdapter,
    switches: EngineSwitches,
    lowerLimits: GpuContextOptions['lowerLimits'] = {},
  ) {
    const adapter = gpuAdapter;
    this.adapter = describeAdapter(adapter);
    this.switches = switches;
    this.options = resolveEngineOptions(this.adapter, switches);
    if (Object.keys(lowerLimits).length === 0) this.limits = device.limits;
    else {
      const copy: Record<string, number> = {};
      for (const k in device.limits) copy[k] = (device.limits as unknown as Record<string, number>)[k];
      for (const [k, v] of Object.entries(lowerLimits)) if (v !== undefined) copy[k] = Math.min(copy[k], v);
      this.limits = copy as unknown as GPUSupportedLimits;
    }
    const has = (f: string) => device.features.has(f as GPUFeatureName);
    this.features = {
      shaderF16: has(FEATURE_NAMES.shaderF16),
      subgroups: has(FEATURE_NAMES.subgroups),
      timestampQuery: has(FEATURE_NAMES.timestampQuery),
      subgroupMatrix: has(FEATURE_NAMES.subgroupMatrix),
    };
    device.lost.then((info) => {
      if (!this.destroyed) this.lost = `GPU device lost (${info.reason}): ${info.message}`;
    });
    device.addEventListener('uncapturederror', (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      this.uncaptured.push(e?.message ?? String(e));
    });
  }

  /** Request a device from `gpu` with the adapter's own limits and the optional features it offers. */
  static async create(gpu: GPU, opts: GpuContextOptions = {}): Promise<GpuContext> {
    const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
    if (!adapter) throw new GpuError(noAdapterMessage());
    // bad switches are refused before a device is made
    resolveEngineOptions(describeAdapter(adapter), opts.engine);
    const want: GpuFeatures = {
      shaderF16: true,
      subgroups: true,
      timestampQuery: true,
      subgroupMatrix: true,
      ...opts.wantFeatures,
    };
    const requiredFeatures: GPUFeatureName[] = [];
    for (const k of Object.keys(FEATURE_NAMES) as (keyof GpuFeatures)[]) {
      const name = FEATURE_NAMES[k] as GPUFeatureName;
      if (want[k] && adapter.features.has(name)) requiredFeatures.push(name);
    }
    const requiredLimits: Record<string, number> = {};
    for (const name of RAISED_LIMITS) {
      const v = (adapter.limits as unknown as Record<string, number>)[name];
      if (typeof v === 'number') requiredLimits[name] = v;
    }
    const device = await adapter.requestDevice({ requiredFeatures, requiredLimits, label: opts.label ?? 'sr3-wgsl' });
    return new GpuContext(device, gpu, adapter, opts.engine ?? {}, opts.lowerLimits);
  }

  /**
   * A view of this context with `switches` over its own: the same device, pipeline cache and scratch buffers, other
   * options (tests and benchmarks compare kernels on one device without recompiling what they share). Destroying
   * either destroys the device.
   */
  withOptions(switches: EngineSwitches): GpuContext {
    const merged: EngineSwitches = { ...this.switches };
    for (const [k, v] of Object.entries(switches) as [keyof EngineSwitches, unknown][]) {
      const cur = merged[k];
      (merged as Record<string, unknown>)[k] =
        v && typeof v === 'object' && cur && typeof cur === 'object' ? { ...cur, ...v } : v;
    }
    const options = resolveEngineOptions(this.adapter, merged);
    const view = Object.create(this) as GpuContext;
    Object.defineProperties(view, { options: { value: options }, switches: { value: merged } });
    return view;
  }

  /** The value kept under `key` for this device, made by `make` the first time (scratch buffers, capability probes). */
  memo<T>(key: string, make: () => T): T {
    const m = this.root.memos;
    if (!m.has(key)) m.set(key, make());
    return m.get(key) as T;
  }

  /** Throw if the device was lost or an error escaped an error scope. */
  check(): void {
    if (this.lost) throw new GpuError(this.lost);
    if (this.uncaptured.length) {
      const msgs = this.uncaptured.splice(0);
      throw new GpuError(`WebGPU error: ${msgs.join('\n')}`);
    }
  }

  /** Compile WGSL (cached by source). A compile error throws with the compiler's messages and the offending lines. */
  shader(code: string, label = 'shader'): Promise<GPUShaderModule> {
    const hit = this.modules.get(code);
    if (hit) return hit;
    const m = this.compileShader(code, label);
    this.modules.set(code, m);
    m.catch(() => this.modules.delete(code));
    return m;
  }

  private async compileShader(code: string, label: string): Promise<GPUShaderModule> {
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ code, label });
    // popped before any await: compiles run concurrently, and an error scope belongs to whoever pushed last
    const scopedP = this.device.popErrorScope();
    const info = await module.getCompilationInfo();
    const scoped = await scopedP;
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length || scoped) {
      const lines = code.split('\n');
      const detail = errors
        .map((m) => `  ${label}:${m.lineNum}:${m.linePos}: ${m.message}\n    | ${lines[m.lineNum - 1] ?? ''}`)
        .join('\n');
      throw new GpuError(`WGSL compile error in ${label}:\n${detail || scoped?.message}`);
    }
    return module;
  }

  /**
   * A compute pipeline (cached by source, entry point and override constants). Created with
   * createComputePipelineAsync, and the cache holds the promise, so callers that do not await one pipeline before
   * asking for the next get them compiled concurrently where the implementation does that (Dawn on a GPU driver).
   */
  pipeline(
    code: string,
    opts: { entry?: string; constants?: Record<string, number>; label?: string } = {},
  ): Promise<GPUComputePipeline> {
    const entry = opts.entry ?? 'main';
    const constants = opts.constants ?? {};
    const key = `${entry}\u0000${JSON.stringify(Object.entries(constants).sort())}\u0000${code}`;
    const hit = this.pipelines.get(key);
    if (hit) return hit;
    const p = this.createPipeline(code, entry, constants, opts.label ?? entry);
    this.pipelines.set(key, p);
    // a failed pipeline is not cached: the error is thrown to this caller, and the next one tries again
    p.catch(() => this.pipelines.delete(key));
    return p;
  }

  private async createPipeline(
    code: string,
    entry: string,
    constants: Record<string, number>,
    label: string,
  ): Promise<GPUComputePipeline> {
    const module = await this.shader(code, label);
    const t0 = performance.now();
    let pipeline: GPUComputePipeline;
    try {
      pipeline = await this.device.createComputePipelineAsync({
        label,
        layout: 'auto',
        compute: { module, entryPoint: entry, constants },
      });
    } catch (e) {
      throw new GpuError(`cannot create pipeline ${label}: ${(e as Error).message}`);
    }
    this.pipelineLog.push({ label, createMs: performance.now() - t0, firstDispatchMs: null });
    this.logIndex.set(pipeline, this.pipelineLog.length - 1);
    return pipeline;
  }

  /**
   * Every distinct pipeline this context created, in order: its label, the wall time of its creation (Dawn's
   * translation and the driver's pipeline creation) and, once warmUp ran it, of its first (empty) dispatch, where
   * a driver that compiles lazily does its compiling (lavapipe runs LLVM there). For benchmarks and progress.
   */
  readonly pipelineLog: { label: string; createMs: number; firstDispatchMs: number | null }[] = [];
  private logIndex = new WeakMap<GPUComputePipeline, number>();
  private indirectZero: GPUBuffer | null = null;

  /**
   * Run every pipeline of `dispatches` that has not run yet once, on zero workgroups, one
   * submission each: a driver that compiles on first use (lavapipe: LLVM, seconds a pipeline) compiles it now, so a
   * caller can show "compiling k of n" instead of a first step that takes a minute. Nothing is written. The zero
   * workgroup count is read from a buffer (an indirect dispatch) because Dawn warns about literal zero dispatches.
   * `onProgress(done, total, label)` is called before each compile and once at the end.
   */
  async warmUp(
    dispatches: Dispatch[],
    onProgress?: (done: number, total: number, label: string) => void,
  ): Promise<void> {
    const todo: Dispatch[] = [];
    const seen = new Set<GPUComputePipeline>();
    for (const d of dispatches) {
      const i = this.logIndex.get(d.pipeline);
      if (seen.has(d.pipeline) || (i !== undefined && this.pipelineLog[i].firstDispatchMs !== null)) continue;
      seen.add(d.pipeline);
      todo.push(d);
    }
    if (!todo.length) return;
    if (!this.indirectZero) {
      this.indirectZero = this.device.createBuffer({
        label: 'warmup.indirect',
        size: 16,
        usage: GPUBufferUsage.INDIRECT | GPUBufferUsage.COPY_DST,
      });
    }
    for (let k = 0; k < todo.length; k++) {
      const d = todo[k];
      onProgress?.(k, todo.length, d.pipeline.label || d.label || 'pipeline');
      const t0 = performance.now();
      const enc = this.device.createCommandEncoder({ label: 'warmup' });
      const pass = enc.beginComputePass({ label: 'warmup' });
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroupsIndirect(this.indirectZero, 0);
      pass.end();
      this.device.queue.submit([enc.finish()]);
      await this.sync();
      const i = this.logIndex.get(d.pipeline);
      if (i !== undefined) this.pipelineLog[i].firstDispatchMs = performance.now() - t0;
    }
    onProgress?.(todo.length, todo.length, '');
  }

  /** Every buffer the engine makes comes from here, counted until it is destroyed (see liveBuffers). */
  private createBuffer(desc: GPUBufferDescriptor): GPUBuffer {
    const buf = this.device.createBuffer(desc);
    const live = this.live;
    live.count++;
    live.bytes += desc.size;
    const destroy = buf.destroy.bind(buf);
    let gone = false;
    buf.destroy = () => {
      if (!gone) {
        gone = true;
        live.count--;
        live.bytes -= desc.size;
      }
      destroy();
    };
    return buf;
  }

  /** How many buffers made through this context are not destroyed yet, and their bytes. */
  liveBuffers(): { count: number; bytes: number } {
    return { ...this.live };
  }

  /** A storage buffer of `bytes` (rounded up to 4), checked against the device's limits. */
  buffer(bytes: number, label = 'buffer', extraUsage = 0): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    if (size > this.limits.maxBufferSize) {
      throw new GpuError(
        `${label}: needs a ${fmtBytes(size)} buffer, over this device's maxBufferSize ${fmtBytes(this.limits.maxBufferSize)}`,
      );
    }
    if (size > this.limits.maxStorageBufferBindingSize) {
      throw new GpuError(
        `${label}: needs a ${fmtBytes(size)} storage binding, over this device's maxStorageBufferBindingSize ` +
          `${fmtBytes(this.limits.maxStorageBufferBindingSize)}; use a smaller image or batch (or tiling)`,
      );
    }
    return this.createBuffer({
      label,
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | extraUsage,
    });
  }

  /** A storage buffer holding `data`. */
  upload(data: Float32Array | Uint32Array | Int32Array, label = 'upload'): GPUBuffer {
    const buf = this.buffer(data.byteLength, label);
    this.write(buf, data);
    return buf;
  }

  write(buf: GPUBuffer, data: Float32Array | Uint32Array | Int32Array, offsetBytes = 0): void {
    this.device.queue.writeBuffer(buf, offsetBytes, data.buffer, data.byteOffset, data.byteLength);
  }

  /** A uniform buffer holding `data` (padded to 16 bytes). */
  uniform(data: ArrayBuffer | ArrayBufferView, label = 'uniform'): GPUBuffer {
    const bytes =
      data instanceof ArrayBuffer
        ? new Uint8Array(data)
        : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const size = Math.max(16, Math.ceil(bytes.byteLength / 16) * 16);
    const buf = this.createBuffer({ label, size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.device.queue.writeBuffer(buf, 0, bytes as Uint8Array<ArrayBuffer>);
    return buf;
  }

  /** Bind group for a pipeline from a list of buffers, bound at 0..n-1 of group 0. */
  bind(pipeline: GPUComputePipeline, buffers: GPUBuffer[], label?: string): GPUBindGroup {
    return this.device.createBindGroup({
      label,
      layout: pipeline.getBindGroupLayout(0),
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
  }

  /** Copy a buffer back to the CPU as float32 (waits for all submitted work; throws on any GPU error). */
  async read(buf: GPUBuffer, bytes = buf.size, offsetBytes = 0): Promise<Float32Array> {
    const raw = await this.readBytes(buf, bytes, offsetBytes);
    return new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  }

  async readU32(buf: GPUBuffer, bytes = buf.size, offsetBytes = 0): Promise<Uint32Array> {
    const raw = await this.readBytes(buf, bytes, offsetBytes);
    return new Uint32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  }

  async readBytes(buf: GPUBuffer, bytes = buf.size, offsetBytes = 0): Promise<Uint8Array> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(buf, offsetBytes, staging, 0, size);
    this.device.queue.submit([enc.finish()]);
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      staging.destroy();
      this.check();
      throw new GpuError(`reading back ${buf.label || 'a buffer'} failed: ${(e as Error).message}`);
    }
    const out = new Uint8Array(staging.getMappedRange().slice(0, bytes));
    staging.unmap();
    staging.destroy();
    this.check();
    return out;
  }

  /** Wait until the queue is idle, then throw if anything went wrong. */
  async sync(): Promise<void> {
    await this.device.queue.onSubmittedWorkDone();
    this.check();
  }

  /** Run one or more dispatches now (a convenience for tests and one-off kernels). */
  run(dispatches: Dispatch[], label = 'run'): void {
    const enc = this.device.createCommandEncoder({ label });
    const pass = enc.beginComputePass({ label });
    for (const d of dispatches) encodeDispatch(pass, d);
    pass.end();
    this.device.queue.submit([enc.finish()]);
  }

  /** Release the device so the process can exit. Idempotent. */
  destroy(): void {
    if (this.root !== this) {
      this.root.destroy();
      return;
    }
    if (this.destroyed) return;
    this.destroyed = true;
    this.memos.clear();
    this.pipelines.clear();
    this.modules.clear();
    this.indirectZero?.destroy();
    this.device.destroy();
  }
}

/** One recorded compute dispatch: replayed into any pass, any number of times. */
export interface Dispatch {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  workgroups: [number, number?, number?];
  label?: string;
  /** buffers only this dispatch uses (its uniform): a caller that will not run it again destroys them (releaseDispatches) */
  owned?: GPUBuffer[];
}

/** Destroy the buffers that only these dispatches use, once they will not run again (their submits may be pending). */
export function releaseDispatches(ds: Dispatch[]): void {
  for (const d of ds) for (const b of d.owned ?? []) b.destroy();
}

export function encodeDispatch(pass: GPUComputePassEncoder, d: Dispatch): void {
  pass.setPipeline(d.pipeline);
  pass.setBindGroup(0, d.bindGroup);
  pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1] ?? 1, d.workgroups[2] ?? 1);
}

export function noAdapterMessage(): string {
  return (
    "No WebGPU adapter found. This engine needs a Vulkan driver for Dawn: a GPU driver, or Mesa's software " +
    'Vulkan (lavapipe, Mesa >= 24). On Debian/Ubuntu, run `npm run setup` (it installs mesa-vulkan-drivers, from ' +
    'bookworm-backports on Debian 12) and try again.'
  );
}

export function fmtBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}

export const ceilDiv = (a: number, b: number): number => Math.floor((a + b - 1) / b);
