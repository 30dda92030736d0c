import { Injectable } from '@nestjs/common';
import BTree from 'sorted-btree';

/** The places of this replica that hold images of a variant. */
export type LocalPlace = 'memory' | 'disk' | 'next';

const BIT: Readonly<Record<LocalPlace, number>> = {
  memory: 1,
  disk: 2,
  next: 4,
};
const CURRENT = BIT.memory | BIT.disk;
const PLACES = Object.keys(BIT) as LocalPlace[];

/**
 * Every variant this replica holds, kept up to date by the places that hold them (the memory
 * tier, the disk index, the prefetched images held aside) as entries come and go, in key order.
 * So the status page counts variants in constant time, and the admin API walks them a page at
 * a time from any key, however many there are, without building a list of them all. A B+ tree
 * (sorted-btree) rather than a Map: a page starts after the last key of the one before, which a
 * Map cannot do, and an entry added or removed between pages neither repeats nor hides others.
 */
@Injectable()
export class LocalVariants {
  private readonly places = new BTree<string, number>();
  private withCurrentImage = 0;
  private readonly perPlace: Record<LocalPlace, number> = {
    memory: 0,
    disk: 0,
    next: 0,
  };

  added(key: string, place: LocalPlace): void {
    const before = this.places.get(key) ?? 0;
    this.update(key, before, before | BIT[place]);
  }

  removed(key: string, place: LocalPlace): void {
    const before = this.places.get(key);
    if (before !== undefined) {
      this.update(key, before, before & ~BIT[place]);
    }
  }

  /** Variants with a current image in memory or on disk (prefetched images alone do not count). */
  get count(): number {
    return this.withCurrentImage;
  }

  /** Variants with an entry in `place`: the memory tier's count, the disk index's, the held next images'. */
  countIn(place: LocalPlace): number {
    return this.perPlace[place];
  }

  has(key: string): boolean {
    return this.places.has(key);
  }

  /** Up to `limit` variants in key order, after `afterKey` (from the first without it). */
  page(afterKey: string | undefined, limit: number): string[] {
    const keys: string[] = [];
    let key = this.places.nextHigherKey(afterKey);
    while (key !== undefined && keys.length < limit) {
      keys.push(key);
      key = this.places.nextHigherKey(key);
    }
    return keys;
  }

  private update(key: string, before: number, after: number): void {
    if (before === after) {
      return;
    }
    if (after === 0) {
      this.places.delete(key);
    } else {
      this.places.set(key, after);
    }
    this.withCurrentImage +=
      Number((after & CURRENT) !== 0) - Number((before & CURRENT) !== 0);
    for (const place of PLACES) {
      this.perPlace[place] +=
        Number((after & BIT[place]) !== 0) -
        Number((before & BIT[place]) !== 0);
    }
  }
}
