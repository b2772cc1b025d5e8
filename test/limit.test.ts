/**
 * lib/util/limit.ts's Limiter bounds how many copies, resolves and reads run at once (image
 * resolution, a layout's referrer scan, blob copies of an import). Its callers ask for places from
 * tasks that are themselves running (a graph's walk asks for a blob's place once its manifest is
 * read), so a place must never be free for a moment between one task and the next waiting.
 */
import test from 'ava';
import { Limiter } from '../lib/util/limit.js';

test('a Limiter never runs more than its limit, also when a task asks for a place in the moment another ends and hands its place to one waiting', async (t) => {
  // The ask comes `delay` microtasks after the end of the first task is known: one of these lands
  // between the freeing of its place and the waiting task's start.
  for (let delay = 0; delay < 10; delay += 1) {
    for (const limit of [1, 2]) {
      const limiter = new Limiter(limit);
      let active = 0;
      let most = 0;
      const task = async (wait?: Promise<void>): Promise<void> => {
        active += 1;
        most = Math.max(most, active);
        await wait;
        await Promise.resolve();
        active -= 1;
      };
      let open!: () => void;
      const gate = new Promise<void>((resolve) => (open = resolve));
      const first = Array.from({ length: limit }, () => limiter.run(() => task(gate)));
      const waiting = limiter.run(() => task());
      open();
      let tick = Promise.resolve();
      for (let i = 0; i < delay; i += 1) tick = tick.then(() => undefined);
      const late = tick.then(() => limiter.run(() => task()));
      await Promise.all([...first, waiting, late]);
      t.is(most, limit, `limit ${limit}, a task asked for ${delay} microtasks after the first ones ended`);
      t.is(active, 0);
    }
  }
});

test('a Limiter whose task fails hands its place on: every task waiting still runs, at most the limit at once', async (t) => {
  const limiter = new Limiter(2);
  let active = 0;
  let most = 0;
  const ran: number[] = [];
  const results = await Promise.allSettled(
    Array.from({ length: 7 }, (_, i) =>
      limiter.run(async () => {
        active += 1;
        most = Math.max(most, active);
        await new Promise((resolve) => setImmediate(resolve));
        active -= 1;
        ran.push(i);
        if (i % 3 === 0) throw new Error(`task ${i} fails`);
        return i;
      }),
    ),
  );
  t.deepEqual(ran.sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6]);
  t.is(results.filter((r) => r.status === 'rejected').length, 3);
  t.is(most, 2);
});
