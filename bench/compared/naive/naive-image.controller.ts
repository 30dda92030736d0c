import { Controller, Get, Inject, Query, Res } from '@nestjs/common';
import type { Response } from 'express';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const NAIVE_OPTIONS = Symbol('NAIVE_OPTIONS');

export interface NaiveOptions {
  readonly upstream: string;
  readonly directory: string;
}

/**
 * The naive baseline of the benchmark: what a first attempt looks like. Every request reads the
 * cached file from disk; a miss fetches from the upstream (following the redirect) and writes
 * the file, with no single flight, no memory tier and no validation.
 */
@Controller('image')
export class NaiveImageController {
  constructor(@Inject(NAIVE_OPTIONS) private readonly options: NaiveOptions) {}

  @Get()
  async getImage(
    @Query('width') width: string | undefined,
    @Query('height') height: string | undefined,
    @Res() response: Response,
  ): Promise<void> {
    const w = Number(width ?? 1200);
    const h = Number(height ?? w);
    const path = join(this.options.directory, `${w}x${h}.jpg`);
    let body: Buffer;
    try {
      body = await readFile(path);
    } catch {
      const upstream = await fetch(`${this.options.upstream}/${w}/${h}`);
      body = Buffer.from(await upstream.arrayBuffer());
      await mkdir(this.options.directory, { recursive: true });
      await writeFile(path, body);
    }
    response.type('image/jpeg').send(body);
  }
}
