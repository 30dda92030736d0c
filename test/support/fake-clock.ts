/** A clock that moves only when a test says so. */
export class FakeClock {
  constructor(private time = Date.parse('2026-01-01T00:00:00Z')) {}

  now(): number {
    return this.time;
  }

  advanceSeconds(seconds: number): void {
    this.time += seconds * 1000;
  }
}
