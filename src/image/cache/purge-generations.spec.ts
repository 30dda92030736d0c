import { PurgeGenerations } from './purge-generations';

describe(PurgeGenerations.name, () => {
  let generations: PurgeGenerations;

  beforeEach(() => {
    generations = new PurgeGenerations();
  });

  it('lets a fetch store its image when nothing was purged since it started', () => {
    const mark = generations.mark();

    expect(generations.purgedSince('300x200', mark)).toBe(false);
  });

  it('stops a fetch of a variant purged after it started, and only of that variant', () => {
    const mark = generations.mark();

    generations.purged('300x200');

    expect(generations.purgedSince('300x200', mark)).toBe(true);
    expect(generations.purgedSince('400x300', mark)).toBe(false);
  });

  it('stops every fetch that started before a purge of everything', () => {
    const mark = generations.mark();

    generations.purged(null);

    expect(generations.purgedSince('300x200', mark)).toBe(true);
    expect(generations.purgedSince('400x300', mark)).toBe(true);
  });

  it('lets a fetch that started after the purge store its image', () => {
    generations.purged('300x200');
    generations.purged(null);

    const mark = generations.mark();

    expect(generations.purgedSince('300x200', mark)).toBe(false);
  });
});
