import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { progress } from '../engine/node/progress.ts';

function sink(isTTY: boolean) {
  const out: string[] = [];
  return { out, stream: { isTTY, write: (s: string) => out.push(s) } as unknown as NodeJS.WriteStream };
}

test('off a terminal: a line when the preparing stage starts and when it changes, then the step lines', () => {
  const { out, stream } = sink(false);
  const bar = progress('a.png 32x32 -> 128x128', 'steps', stream);
  bar.stage('preparing');
  bar.stage('preparing: compiling shaders 0/12');
  bar.stage('preparing: compiling shaders 1/12'); // same stage, under 5 s later: no line
  bar.update(2, 2);
  bar.done('wrote x.png');
  assert.is(out.length, 4, out.join(''));
  assert.match(out[0], /^a\.png 32x32 -> 128x128 preparing, elapsed \d+s\n$/);
  assert.match(out[1], /preparing: compiling shaders 0\/12, elapsed/);
  assert.match(out[2], /\[#+\] 2\/2 steps/);
  assert.is(out[3], 'wrote x.png\n');
});

test('a line can count another unit (tile passes within steps)', () => {
  const { out, stream } = sink(false);
  const bar = progress('big.png', 'steps', stream);
  bar.update(8, 8, 'tile passes'); // the last line is always written
  bar.update(2, 2);
  assert.is(out.length, 2, out.join(''));
  assert.match(out[0], /\[#+\] 8\/8 tile passes, /);
  assert.match(out[1], /\[#+\] 2\/2 steps, /);
});

test('on a terminal the stage redraws one line; quiet writes nothing', () => {
  const { out, stream } = sink(true);
  const bar = progress('x', 'steps', stream);
  bar.stage('preparing: compiling shaders 3/9');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the escape that clears the rest of the line is what is asserted
  assert.match(out[0], /^\rx preparing: compiling shaders 3\/9, elapsed \d+s\x1b\[K$/);
  bar.update(1, 4);
  assert.match(out[1], /^\rx \[######\.+\] 1\/4 steps/);
  bar.done();
  const q = sink(true);
  const quiet = progress('x', 'steps', q.stream, true);
  quiet.stage('preparing');
  quiet.update(1, 2);
  quiet.done('m');
  assert.is(q.out.length, 0);
});

test.run();
