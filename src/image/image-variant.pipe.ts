import {
  BadRequestException,
  Inject,
  Injectable,
  type PipeTransform,
} from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { z } from 'zod';
import { upstreamConfig } from '../config/upstream.config';
import {
  IMAGE_FORMATS,
  type ImageVariant,
  MAX_BLUR,
  MAX_IMAGE_SIDE,
} from './image-variant';

function integerParameter(min: number, max: number) {
  return z
    .string({ error: `a single integer from ${min} to ${max}` })
    .regex(/^\d+$/, { error: `an integer from ${min} to ${max}` })
    .transform(Number)
    .pipe(
      z
        .number()
        .min(min, { error: `an integer from ${min} to ${max}` })
        .max(max, { error: `an integer from ${min} to ${max}` }),
    );
}

/** What a bare `?blur` means to Picsum. */
export const PICSUM_DEFAULT_BLUR = 5;

const querySchema = z.strictObject(
  {
    width: integerParameter(1, MAX_IMAGE_SIDE).optional(),
    height: integerParameter(1, MAX_IMAGE_SIDE).optional(),
    // As Picsum takes it: present means true (a bare `?grayscale` too), unless false or 0.
    grayscale: z
      .string({ error: 'a single value' })
      .transform((value) => value !== 'false' && value !== '0')
      .optional(),
    blur: z
      .string({ error: `a single integer from 1 to ${MAX_BLUR}` })
      .transform((value) =>
        value === '' ? String(PICSUM_DEFAULT_BLUR) : value,
      )
      .pipe(integerParameter(1, MAX_BLUR))
      .optional(),
    format: z
      .enum(IMAGE_FORMATS, { error: IMAGE_FORMATS.join(' or ') })
      .optional(),
  },
  { error: 'unknown' },
);

const PARAMETERS = Object.keys(querySchema.shape).join(', ');

/**
 * Turns the query of `GET /image` and `GET /image/info` into a complete, normalised variant:
 * the defaults (`IMAGE_WIDTH`, `IMAGE_HEIGHT`, no grayscale, no blur, jpg) fill in what the
 * request leaves out, and `grayscale` and a bare `blur` mean what they mean to Picsum. Anything else, an unknown parameter included, is a 400 naming it.
 */
@Injectable()
export class ImageVariantPipe implements PipeTransform<unknown, ImageVariant> {
  constructor(
    @Inject(upstreamConfig.KEY)
    private readonly upstream: ConfigType<typeof upstreamConfig>,
  ) {}

  transform(query: unknown): ImageVariant {
    const result = querySchema.safeParse(query ?? {});
    if (!result.success) {
      throw new BadRequestException(
        result.error.issues.map((issue) => describe(issue, query)).join('; '),
      );
    }
    const { width, height, grayscale, blur, format } = result.data;
    return {
      width: width ?? this.upstream.imageWidth,
      height: height ?? this.upstream.imageHeight,
      grayscale: grayscale ?? false,
      blur: blur ?? 0,
      format: format ?? 'jpg',
    };
  }
}

function describe(issue: z.core.$ZodIssue, query: unknown): string {
  if (issue.code === 'unrecognized_keys') {
    return `unknown query parameter${issue.keys.length > 1 ? 's' : ''} ${issue.keys.join(', ')}; allowed: ${PARAMETERS}`;
  }
  const name = String(issue.path[0]);
  const value = (query as Record<string, unknown>)[name];
  return `query parameter ${name}=${JSON.stringify(value)} is not allowed: expected ${issue.message}`;
}
