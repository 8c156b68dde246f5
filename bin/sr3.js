#!/usr/bin/env node
// `sr3` command. Dawn's native code prints notes about adapter limits straight to stderr when an adapter is opened
// ("Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced ..."); they mean nothing to a user and
// JavaScript cannot silence a native write, so the command runs in a child process (bin/run.js) whose stderr is
// passed through with those lines taken out. SR3_DAWN_LOG=1 (or SR3_DEBUG=1) shows them; the command then runs in
// this process. So do `train` and `worker`, whose signal handling must stay exact (Ctrl-C saves a checkpoint; the
// first SIGTERM finishes the job in hand, a second stops at once): a signal sent to the process group (Ctrl-C, or
// systemd stopping a unit) would reach them twice through a parent that forwards it.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const run = fileURLToPath(new URL('./run.js', import.meta.url));
const showDawn = process.env.SR3_DAWN_LOG === '1' || !!process.env.SR3_DEBUG;
const SIGNAL_HANDLERS = new Set(['train', 'worker']);

if (showDawn || SIGNAL_HANDLERS.has(process.argv[2])) {
  process.argv.splice(1, 1, run);
  await import('./run.js');
} else {
  // Dawn's notes: one line each, written in one piece by fprintf.
  const DAWN_NOTE = /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced .*\n/;
  const PREFIX = 'Warning: maxDynamic';
  const child = spawn(process.execPath, [...process.execArgv, run, ...process.argv.slice(2)], {
    // an IPC channel too, only so that the child sees this process go (bin/run.js stops when it disconnects)
    stdio: ['inherit', 'inherit', 'pipe', 'ipc'],
    // the progress bar redraws in place when the real stderr is a terminal
    env: { ...process.env, SR3_STDERR_TTY: process.stderr.isTTY ? '1' : '0' },
  });
  let held = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    let s = held + chunk;
    held = '';
    let out = '';
    while (s.length > 0) {
      const m = DAWN_NOTE.exec(s);
      if (m) {
        s = s.slice(m[0].length);
        continue;
      }
      const nl = s.indexOf('\n');
      if (nl < 0) {
        // a partial line: hold it only while it could still become a Dawn note
        if (PREFIX.startsWith(s) || (s.startsWith(PREFIX) && !s.includes('\n'))) held = s;
        else out += s;
        break;
      }
      out += s.slice(0, nl + 1);
      s = s.slice(nl + 1);
    }
    if (out) process.stderr.write(out);
  });
  child.stderr.on('end', () => {
    if (held) process.stderr.write(held);
  });
  // A signal sent to this process alone is passed on (the child's commands have no handlers of their own, so one
  // that also reached it through the process group changes nothing); then wait for the child and report its status.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('close', (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    } else process.exitCode = code ?? 1;
  });
}
