// The demo page: pick or drop an image, choose steps / sampler / seed, watch progress, compare bicubic and SR3 side by
// side, download the PNG. Everything runs in the page on WebGPU through engine/browser.ts.
// URL parameters (for links and the screenshot/test scripts): model=URL, steps=N, sampler=S, seed=N, example=1 (load
// the example image), autorun=1 (upscale as soon as an image and the model are there), maxpixels=N.
import {
  bicubicImage,
  checkImageSize,
  decodeImage,
  DEFAULT_MAX_INPUT_PIXELS,
  encodePng,
  ImageTooLargeError,
  loadModelFrom,
  openBrowserDevice,
  SAMPLERS,
  toImageData,
  upscaleImage,
  webGpuStatus,
  type GpuContext,
  type PixelImage,
  type SamplerKind,
  type SR3Model,
} from '../engine/browser.ts';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
};

const ui = {
  message: $('message'),
  drop: $('drop'),
  file: $<HTMLInputElement>('file'),
  example: $<HTMLButtonElement>('example'),
  inputInfo: $('input-info'),
  steps: $<HTMLInputElement>('steps'),
  sampler: $<HTMLSelectElement>('sampler'),
  seed: $<HTMLInputElement>('seed'),
  run: $<HTMLButtonElement>('run'),
  cancel: $<HTMLButtonElement>('cancel'),
  progress: $<HTMLProgressElement>('progress'),
  progressText: $('progress-text'),
  deviceInfo: $('device-info'),
  modelInfo: $('model-info'),
  modelName: $('model-name'),
  results: $('results'),
  inputCanvas: $<HTMLCanvasElement>('input-canvas'),
  bicubicCanvas: $<HTMLCanvasElement>('bicubic-canvas'),
  sr3Canvas: $<HTMLCanvasElement>('sr3-canvas'),
  capInput: $('cap-input'),
  capBicubic: $('cap-bicubic'),
  capSr3: $('cap-sr3'),
  download: $<HTMLAnchorElement>('download'),
};

const params = new URLSearchParams(location.search);
const modelUrl = params.get('model') ?? 'models/natural4x.safetensors';
const maxPixels = Number(params.get('maxpixels')) || DEFAULT_MAX_INPUT_PIXELS;

let ctx: GpuContext | null = null;
let model: SR3Model | null = null;
let input: { img: PixelImage; name: string } | null = null;
let running: AbortController | null = null;
let downloadUrl: string | null = null;

/** The page's state, on <body data-state>: starting, no-webgpu, loading-model, ready, running, done, cancelled, error. */
function setState(s: string): void {
  document.body.dataset.state = s;
  ui.run.disabled = !(ctx && model && input) || s === 'running' || s === 'no-webgpu';
  ui.cancel.disabled = s !== 'running';
}

function showMessage(text: string, kind: 'error' | 'info' = 'error'): void {
  ui.message.textContent = text;
  ui.message.className = kind;
  ui.message.hidden = false;
}
function clearMessage(): void {
  ui.message.hidden = true;
  ui.message.textContent = '';
}

function fail(e: unknown): void {
  const err = e as Error;
  console.error(err);
  showMessage(err?.message ?? String(e));
  setState('error');
}

function draw(canvas: HTMLCanvasElement, img: PixelImage): void {
  canvas.width = img.width;
  canvas.height = img.height;
  canvas.getContext('2d')!.putImageData(toImageData(img), 0, 0);
}

const mb = (n: number) => `${(n / 2 ** 20).toFixed(1)} MB`;

async function start(): Promise<void> {
  for (const k of ['steps', 'seed'] as const) {
    const v = params.get(k);
    if (v !== null) ui[k].value = v;
  }
  const s = params.get('sampler');
  if (s && (SAMPLERS as readonly string[]).includes(s)) ui.sampler.value = s;
  ui.modelName.textContent = modelUrl;

  const st = await webGpuStatus();
  if (!st.ok) {
    showMessage(`This demo needs WebGPU. ${st.reason}`);
    ui.deviceInfo.textContent = 'No WebGPU device.';
    setState('no-webgpu');
    return;
  }
  ctx = await openBrowserDevice();
  const a = ctx.adapter;
  ui.deviceInfo.textContent = `GPU: ${[a.vendor, a.architecture, a.device].filter(Boolean).join(' ') || a.description}${a.isSoftware ? ' (a software device: expect minutes, not seconds)' : ''}.`;

  setState('loading-model');
  ui.progressText.textContent = `loading the model ${modelUrl}...`;
  model = await loadModelFrom(modelUrl, {
    onProgress: (loaded, total) => {
      ui.progress.value = total ? loaded / total : 0;
      ui.progressText.textContent = `loading the model: ${mb(loaded)}${total ? ` of ${mb(total)}` : ''}`;
    },
  });
  const cfg = model.config;
  const params_ = [...model.tensors.values()].reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
  ui.modelInfo.textContent = `Model: ${model.condition?.scale ?? 4}x, ${cfg.out_channel} channels, ${(params_ / 1e6).toFixed(2)} M parameters (${model.dtype}).`;
  ui.progress.value = 0;
  ui.progressText.textContent = '';
  setState('ready');

  if (params.get('example') === '1') await loadExample();
  if (params.get('autorun') === '1' && input) await runUpscale();
}

async function setInput(src: Blob, name: string): Promise<void> {
  clearMessage();
  try {
    const img = await decodeImage(src);
    if (model) checkImageSize(ctx, model, img.width, img.height, { maxPixels });
    input = { img, name };
    const scale = model?.condition?.scale ?? 4;
    ui.inputInfo.textContent = `${name}: ${img.width}x${img.height} -> ${img.width * scale}x${img.height * scale}`;
    draw(ui.inputCanvas, img);
    ui.capInput.textContent = `${img.width}x${img.height}`;
    ui.results.hidden = false;
    ui.download.hidden = true;
    for (const c of [ui.bicubicCanvas, ui.sr3Canvas]) {
      c.width = img.width * scale;
      c.height = img.height * scale;
    }
    ui.capBicubic.textContent = ui.capSr3.textContent = '';
    setState(model ? 'ready' : (document.body.dataset.state ?? 'starting'));
  } catch (e) {
    input = null;
    if (e instanceof ImageTooLargeError) {
      showMessage(e.message);
      setState('too-large');
    } else fail(e);
  }
}

async function loadExample(): Promise<void> {
  const res = await fetch('examples/astronaut-32.png');
  if (!res.ok) throw new Error(`cannot load the example image: HTTP ${res.status}`);
  await setInput(await res.blob(), 'astronaut-32.png');
}

async function runUpscale(): Promise<void> {
  if (!ctx || !model || !input) return;
  clearMessage();
  const steps = Number(ui.steps.value);
  const seed = Number(ui.seed.value);
  if (!Number.isInteger(steps) || steps < 2)
    return showMessage(`Steps must be a whole number >= 2, not '${ui.steps.value}'.`);
  if (!Number.isInteger(seed) || seed < 0)
    return showMessage(`The seed must be a whole number >= 0, not '${ui.seed.value}'.`);
  const sampler = ui.sampler.value as SamplerKind;
  running = new AbortController();
  setState('running');
  const t0 = performance.now();
  try {
    const bic = await bicubicImage(ctx, model, input.img);
    draw(ui.bicubicCanvas, bic);
    ui.capBicubic.textContent = `${bic.width}x${bic.height}`;
    ui.progress.value = 0;
    ui.progressText.textContent = `step 0 of ${steps}`;
    const r = await upscaleImage(ctx, model, input.img, {
      steps,
      sampler,
      seed,
      maxPixels,
      signal: running.signal,
      onProgress: (done, total) => {
        ui.progress.value = done / total;
        const el = (performance.now() - t0) / 1000;
        const eta = done ? (el / done) * (total - done) : 0;
        ui.progressText.textContent = `step ${done} of ${total} (${el.toFixed(1)} s${done < total ? `, about ${eta.toFixed(0)} s left` : ''})`;
      },
    });
    const out = r.images[0];
    draw(ui.sr3Canvas, out);
    ui.capSr3.textContent = `${out.width}x${out.height}, ${steps} ${sampler} steps, seed ${seed}, ${r.seconds.toFixed(1)} s`;
    ui.progressText.textContent = `done in ${r.seconds.toFixed(1)} s`;
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
    downloadUrl = URL.createObjectURL(await encodePng(out));
    ui.download.href = downloadUrl;
    ui.download.download = `${input.name.replace(/\.[^.]*$/, '')}_sr${r.scale}x.png`;
    ui.download.hidden = false;
    setState('done');
  } catch (e) {
    if (running.signal.aborted) {
      showMessage('Cancelled.', 'info');
      ui.progressText.textContent = 'cancelled';
      setState('cancelled');
    } else if (e instanceof ImageTooLargeError) {
      showMessage(e.message);
      setState('too-large');
    } else fail(e);
  } finally {
    running = null;
    if (document.body.dataset.state === 'running') setState('ready');
    else setState(document.body.dataset.state ?? 'ready');
  }
}

ui.file.addEventListener('change', () => {
  const f = ui.file.files?.[0];
  if (f) void setInput(f, f.name);
});
ui.example.addEventListener('click', () => void loadExample().catch(fail));
ui.run.addEventListener('click', () => void runUpscale());
ui.cancel.addEventListener('click', () => running?.abort(new DOMException('cancelled', 'AbortError')));
// The whole window takes a dropped image (a drop outside the box would otherwise navigate away to the file).
window.addEventListener('dragover', (e) => {
  e.preventDefault();
  ui.drop.classList.add('over');
});
window.addEventListener('dragleave', (e) => {
  if (!e.relatedTarget) ui.drop.classList.remove('over');
});
window.addEventListener('drop', (e) => {
  e.preventDefault();
  ui.drop.classList.remove('over');
  const f = e.dataTransfer?.files?.[0];
  if (!f) return;
  if (!f.type.startsWith('image/') && f.type !== '') return showMessage(`${f.name} is not an image (${f.type}).`);
  void setInput(f, f.name);
});
ui.drop.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' || e.key === ' ') {
    e.preventDefault();
    ui.file.click();
  }
});

start().catch(fail);
