// A progress line on stderr: a bar on a terminal, a line every few seconds otherwise (logs, CI).

export interface Progress {
  /**
   * Show what is happening before the counted work starts (e.g. "preparing: compiling shaders 3/21"), with the time
   * elapsed, redrawn every second on a terminal so that a long step does not look like a hang.
   */
  stage(text: string): void;
  /** `unit` replaces the one given to progress() for this line (e.g. tile passes within steps) */
  update(done: number, total: number, unit?: string): void;
  done(message?: string): void;
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '--';
  if (s < 60) return `${s.toFixed(0)}s`;
  const m = Math.floor(s / 60);
  return m < 60
    ? `${m}m${String(Math.round(s - 60 * m)).padStart(2, '0')}s`
    : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export function progress(
  label: string,
  unit = 'steps',
  stream: NodeJS.WriteStream = process.stderr,
  quiet = false,
): Progress {
  const begun = performance.now();
  // the rate and ETA count from the end of the last stage, not from the preparation before it
  let start = begun;
  // bin/sr3.js runs the command with stderr piped through its filter and says whether its own stderr is a terminal
  const tty = stream.isTTY === true || (stream === process.stderr && process.env.SR3_STDERR_TTY === '1');
  let lastLog = 0;
  let last = '';
  let stageText = '';
  let ticker: ReturnType<typeof setInterval> | null = null;
  const stopTicker = () => {
    if (ticker) clearInterval(ticker);
    ticker = null;
  };
  const drawStage = () => {
    last = `${label} ${stageText}, elapsed ${fmtTime((performance.now() - begun) / 1000)}`;
    if (tty) stream.write(`\r${last}\x1b[K`);
  };
  const line = (done: number, total: number, what = unit) => {
    const secs = (performance.now() - start) / 1000;
    const rate = done / Math.max(secs, 1e-9);
    const eta = done > 0 ? (total - done) / rate : Infinity;
    const pct = total ? done / total : 0;
    const width = 24;
    const bar = '#'.repeat(Math.round(pct * width)).padEnd(width, '.');
    return `${label} [${bar}] ${done}/${total} ${what}, ${rate >= 1 ? rate.toFixed(1) + ' it/s' : (1 / Math.max(rate, 1e-9)).toFixed(1) + ' s/it'}, elapsed ${fmtTime(secs)}, ETA ${fmtTime(eta)}`;
  };
  return {
    stage(text) {
      if (quiet) return;
      const changed = text.replace(/[\d/]+/g, '') !== stageText.replace(/[\d/]+/g, '');
      stageText = text;
      start = performance.now();
      drawStage();
      // off a terminal: a line when the stage changes, and at most every 5 s while it lasts
      if (!tty && (changed || performance.now() - lastLog > 5000)) {
        lastLog = performance.now();
        stream.write(`${last}\n`);
      }
      if (tty && !ticker) {
        ticker = setInterval(drawStage, 1000);
        ticker.unref();
      }
    },
    update(done, total, what) {
      if (quiet) return;
      stopTicker();
      last = line(done, total, what);
      if (tty) stream.write(`\r${last}\x1b[K`);
      else if (performance.now() - lastLog > 5000 || done === total) {
        lastLog = performance.now();
        stream.write(`${last}\n`);
      }
    },
    done(message) {
      stopTicker();
      if (quiet) return;
      if (tty && last) stream.write('\n');
      if (message) stream.write(`${message}\n`);
    },
  };
}
