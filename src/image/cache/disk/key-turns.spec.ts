import { KeyTurns } from './key-turns';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((done) => (resolve = done));
  return { promise, resolve };
}

describe(KeyTurns.name, () => {
  it('runs tasks of one key in the order they started, each after the last one ended', async () => {
    const turns = new KeyTurns();
    const order: string[] = [];
    const first = deferred();

    const a = turns.run('k', async () => {
      order.push('a starts');
      await first.promise;
      order.push('a ends');
    });
    const b = turns.run('k', () => {
      order.push('b runs');
      return Promise.resolve();
    });
    await Promise.resolve();
    expect(order).toEqual(['a starts']);
    expect(turns.busy('k')).toBe(true);

    first.resolve();
    await Promise.all([a, b]);

    expect(order).toEqual(['a starts', 'a ends', 'b runs']);
  });

  it('runs tasks of different keys at once', async () => {
    const turns = new KeyTurns();
    const blocked = deferred();
    let otherRan = false;

    const a = turns.run('a', () => blocked.promise);
    await turns.run('b', () => {
      otherRan = true;
      return Promise.resolve();
    });

    expect(otherRan).toBe(true);
    blocked.resolve();
    await a;
  });

  it('goes on with the next task of a key after one fails, and forgets a key once it is idle', async () => {
    const turns = new KeyTurns();

    const failing = turns.run('k', () => Promise.reject(new Error('disk')));
    const next = turns.run('k', () => Promise.resolve('written'));

    await expect(failing).rejects.toThrow('disk');
    await expect(next).resolves.toBe('written');
    await new Promise((resolve) => setImmediate(resolve));
    expect(turns.busy('k')).toBe(false);
  });
});
