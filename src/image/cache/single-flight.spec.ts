import { SingleFlight } from './single-flight';

describe(SingleFlight.name, () => {
  it('runs one task per key for concurrent callers and shares its result', async () => {
    const flights = new SingleFlight<number>();
    let release!: (value: number) => void;
    const task = jest.fn(
      () => new Promise<number>((resolve) => (release = resolve)),
    );

    const callers = Array.from({ length: 10 }, () => flights.run('a', task));
    await Promise.resolve();
    release(42);

    await expect(Promise.all(callers)).resolves.toEqual(Array(10).fill(42));
    expect(task).toHaveBeenCalledTimes(1);
  });

  it('shares a failure with every waiting caller, then lets the next caller try again', async () => {
    const flights = new SingleFlight<number>();
    const failing = jest.fn(() => Promise.reject(new Error('down')));

    const callers = [flights.run('a', failing), flights.run('a', failing)];

    await expect(Promise.all(callers)).rejects.toThrow('down');
    expect(failing).toHaveBeenCalledTimes(1);
    expect(flights.isRunning('a')).toBe(false);
    await expect(flights.run('a', () => Promise.resolve(1))).resolves.toBe(1);
  });

  it('keeps keys apart', async () => {
    const flights = new SingleFlight<string>();

    const results = await Promise.all([
      flights.run('a', () => Promise.resolve('A')),
      flights.run('b', () => Promise.resolve('B')),
    ]);

    expect(results).toEqual(['A', 'B']);
  });

  it('turns a task that throws synchronously into a rejection', async () => {
    const flights = new SingleFlight<number>();

    await expect(
      flights.run('a', () => {
        throw new Error('sync');
      }),
    ).rejects.toThrow('sync');
  });
});
