// A progress line on stderr: a bar on a terminal, a line every few seconds otherwise (logs, CI).

export interface Progress {
  update(done: number, total: number): void;
  done(message?: string): void;
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '--';
  if (s < 60) return `${s.toFixed(0)}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${String(Math.round(s - 60 * m)).padStart(2, '0')}s` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export function progress(label: string, unit = 'steps', stream: NodeJS.WriteStream = process.stderr, quiet = false): Progress {
  const start = performance.now();
  // bin/sr3.js runs the command with stderr piped through its filter and says whether its own stderr is a terminal
  const tty = stream.isTTY === true || (stream === process.stderr && process.env.SR3_STDERR_TTY === '1');
  let lastLog = 0;
  let last = '';
  const line = (done: number, total: number) => {
    const secs = (performance.now() - start) / 1000;
    const rate = done / Math.max(secs, 1e-9);
    const eta = done > 0 ? (total - done) / rate : Infinity;
    const pct = total ? done / total : 0;
    const width = 24;
    const bar = '#'.repeat(Math.round(pct * width)).padEnd(width, '.');
    return `${label} [${bar}] ${done}/${total} ${unit}, ${rate >= 1 ? rate.toFixed(1) + ' it/s' : (1 / Math.max(rate, 1e-9)).toFixed(1) + ' s/it'}, elapsed ${fmtTime(secs)}, ETA ${fmtTime(eta)}`;
  };
  return {
    update(done, total) {
      if (quiet) return;
      last = line(done, total);
      if (tty) stream.write(`\r${last}\x1b[K`);
      else if (performance.now() - lastLog > 5000 || done === total) {
        lastLog = performance.now();
        stream.write(`${last}\n`);
      }
    },
    done(message) {
      if (quiet) return;
      if (tty && last) stream.write('\n');
      if (message) stream.write(`${message}\n`);
    },
  };
}
