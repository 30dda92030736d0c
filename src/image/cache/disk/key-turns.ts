/**
 * Runs tasks of the same key one after another, in the order they were started, and tasks of
 * different keys at once. Knows which keys have a task waiting or running.
 */
export class KeyTurns {
  /** The last task of each key in flight, which the next one of the same key waits for. */
  private readonly last = new Map<string, Promise<void>>();

  /** Runs `task` after every task of `key` started before it. */
  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.last.get(key) ?? Promise.resolve();
    const turn = previous.then(task);
    const settled = turn.then(
      () => undefined,
      () => undefined,
    );
    this.last.set(key, settled);
    void settled.then(() => {
      if (this.last.get(key) === settled) {
        this.last.delete(key);
      }
    });
    return turn;
  }

  /** Whether a task of `key` is waiting or running. */
  busy(key: string): boolean {
    return this.last.has(key);
  }
}
