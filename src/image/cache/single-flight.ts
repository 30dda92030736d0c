/**
 * Runs at most one task per key at a time; callers that arrive while it runs share its result.
 * The task is never tied to a caller, so a caller that goes away does not cancel it for the rest.
 */
export class SingleFlight<T> {
  private readonly running = new Map<string, Promise<T>>();

  run(key: string, task: () => Promise<T>): Promise<T> {
    const existing = this.running.get(key);
    if (existing) {
      return existing;
    }
    const flight = Promise.resolve()
      .then(task)
      .finally(() => this.running.delete(key));
    this.running.set(key, flight);
    return flight;
  }

  /** Resolves when the task of `key` running now, if any, has settled, however it ended. */
  async settled(key: string): Promise<void> {
    await this.running.get(key)?.catch(() => undefined);
  }

  isRunning(key: string): boolean {
    return this.running.has(key);
  }
}
