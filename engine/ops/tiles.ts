// The tiled upscaling's canvas kernels (shaders/tiles.ts): a tile read from the canvas, a tile's result blended into
// it, and the blend normalised. The pipelines are made once (TileKernels.create); each dispatch owns its uniform (the
// tile's window), so a caller that will not replay it releases it (releaseDispatches).
import type { Dispatch, GpuContext } from '../gpu.ts';
import { rngWorkgroups } from '../rng.ts';
import { TILE_ACCUMULATE_WGSL, TILE_GATHER_WGSL, TILE_NORMALIZE_WGSL, TILE_UNIFORM } from '../../shaders/tiles.ts';

/** The canvas [B, C, Hc, Wc], the tile's window (oy, ox, th, tw) on it, and the overlap ov between tiles. */
export interface TileWindow {
  B: number;
  C: number;
  Hc: number;
  Wc: number;
  th: number;
  tw: number;
  oy: number;
  ox: number;
  ov: number;
  /** the dispatch's label (default: the kernel's) */
  label?: string;
}

type TileKind = 'gather' | 'accumulate' | 'normalize';

export class TileKernels {
  private constructor(
    private readonly ctx: GpuContext,
    private readonly pipes: Record<TileKind, GPUComputePipeline>,
  ) {}

  static async create(ctx: GpuContext): Promise<TileKernels> {
    const [gather, accumulate, normalize] = await Promise.all([
      ctx.pipeline(TILE_GATHER_WGSL, { label: 'tile.gather' }),
      ctx.pipeline(TILE_ACCUMULATE_WGSL, { label: 'tile.accumulate' }),
      ctx.pipeline(TILE_NORMALIZE_WGSL, { label: 'tile.normalize' }),
    ]);
    return new TileKernels(ctx, { gather, accumulate, normalize });
  }

  /** tile = the window of canvas. */
  gather(w: TileWindow, bufs: { canvas: GPUBuffer; tile: GPUBuffer }): Dispatch {
    return this.record('gather', w, [bufs.canvas, bufs.tile], w.B * w.C * w.th * w.tw);
  }

  /** num[window] += weight * tile, den[window] += weight (the weight ramps down across the overlaps). */
  accumulate(w: TileWindow, bufs: { tile: GPUBuffer; num: GPUBuffer; den: GPUBuffer }): Dispatch {
    return this.record('accumulate', w, [bufs.tile, bufs.num, bufs.den], w.B * w.C * w.th * w.tw);
  }

  /** canvas = num / den over the whole canvas (no window: the tile fields only fill the uniform). */
  normalize(w: Omit<TileWindow, 'oy' | 'ox'>, bufs: { num: GPUBuffer; den: GPUBuffer; canvas: GPUBuffer }): Dispatch {
    const n = w.B * w.C * w.Hc * w.Wc;
    return this.record('normalize', { ...w, oy: 0, ox: 0 }, [bufs.num, bufs.den, bufs.canvas], n);
  }

  private record(kind: TileKind, w: TileWindow, buffers: GPUBuffer[], threads: number): Dispatch {
    const pipeline = this.pipes[kind];
    const label = w.label ?? `tile.${kind}`;
    const { B, C, Hc, Wc, th, tw, oy, ox, ov } = w;
    const u = this.ctx.uniform(TILE_UNIFORM.pack({ B, C, Hc, Wc, th, tw, oy, ox, ov }, label), `${label}.u`);
    return {
      pipeline,
      bindGroup: this.ctx.bind(pipeline, [...buffers, u]),
      workgroups: rngWorkgroups(threads),
      label,
      owned: [u],
    };
  }
}
