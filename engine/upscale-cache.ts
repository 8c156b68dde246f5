// What an upscaler keeps on the device between images (browser-safe): the model's parameters, uploaded once, and the
// samplers built for the last image shape(s) (a U-Net's activations, bind groups and the step's buffers), so a folder
// of same-sized images builds its sampler once. Pipelines are cached by the GpuContext itself.
import type { SR3Model } from '../weights-format/index.ts';
import type { GpuContext } from './gpu.ts';
import { uploadUNetParams, type UNetParams } from './unet.ts';

/** Something built for one shape that owns device memory. */
export interface CachedResource {
  destroy(): void;
}

export class UpscaleCache {
  private shared: UNetParams | null = null;
  /** insertion order is use order: the first entry is the least recently used */
  private entries = new Map<string, CachedResource>();
  private destroyed = false;

  /**
   * `maxShapes`: how many shapes' samplers stay built (default 1). Each holds its U-Net's activations, which for a
   * large image are hundreds of MiB, so images of many sizes evict the oldest instead of growing without bound.
   */
  constructor(
    readonly ctx: GpuContext,
    readonly model: SR3Model,
    readonly maxShapes = 1,
  ) {
    if (!Number.isInteger(maxShapes) || maxShapes < 0)
      throw new Error(`maxShapes must be an integer >= 0, got ${maxShapes}`);
  }

  /** The model's parameters on the device (uploaded on first use). */
  params(): UNetParams {
    this.check();
    this.shared ??= uploadUNetParams(this.ctx, this.model, { label: 'upscaler' });
    return this.shared;
  }

  /**
   * The resource built for `key`, building it on a miss. The cache owns it: callers must not destroy it, and must not
   * use two resources of one cache at once (an upscaler runs its images one after another).
   */
  async get<T extends CachedResource>(key: string, build: () => Promise<T>): Promise<T> {
    this.check();
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit as T;
    }
    if (this.maxShapes === 0) throw new Error('internal: UpscaleCache.get with maxShapes 0 (use acquire)');
    while (this.entries.size >= this.maxShapes) {
      const [oldKey, old] = this.entries.entries().next().value!;
      this.entries.delete(oldKey);
      old.destroy();
    }
    const value = await build();
    this.entries.set(key, value);
    return value;
  }

  /** How many shapes are built now (for tests and diagnostics). */
  get size(): number {
    return this.entries.size;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const v of this.entries.values()) v.destroy();
    this.entries.clear();
    this.shared?.destroy();
    this.shared = null;
  }

  private check(): void {
    if (this.destroyed) throw new Error('this upscaler was disposed');
  }
}

/**
 * `build()`'s resource through the cache when there is one (kept; release does nothing), else built for one use
 * (release destroys it).
 */
export async function acquire<T extends CachedResource>(
  cache: UpscaleCache | undefined,
  key: string,
  build: () => Promise<T>,
): Promise<{ value: T; release: () => void }> {
  if (cache && cache.maxShapes > 0) return { value: await cache.get(key, build), release: () => {} };
  const value = await build();
  return { value, release: () => value.destroy() };
}
