import { Injectable, type OnModuleInit } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Where the page's HTML, CSS and script are, beside this file in `src/` and in `dist/` alike. */
const PAGE_DIRECTORY = join(__dirname, 'page');

/**
 * The status page: one HTML document with its style and script inlined, read once at start.
 * Its `Content-Security-Policy` allows that style and script by their SHA-256 and nothing
 * else inline, and only this origin for requests and images (`blob:` for the image it
 * fetched), so nothing of another origin can load or run on it.
 */
@Injectable()
export class StatusPage implements OnModuleInit {
  private page?: { html: string; contentSecurityPolicy: string };

  async onModuleInit(): Promise<void> {
    const [html, style, script] = await Promise.all(
      ['status.html', 'status.css', 'status.js'].map((name) =>
        readFile(join(PAGE_DIRECTORY, name), 'utf8'),
      ),
    );
    this.page = {
      html: html
        .replace('{{style}}', () => style)
        .replace('{{script}}', () => script),
      contentSecurityPolicy: [
        "default-src 'none'",
        `script-src '${sha256(script)}'`,
        `style-src '${sha256(style)}'`,
        "img-src 'self' blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
      ].join('; '),
    };
  }

  get html(): string {
    return this.loaded.html;
  }

  get contentSecurityPolicy(): string {
    return this.loaded.contentSecurityPolicy;
  }

  private get loaded(): { html: string; contentSecurityPolicy: string } {
    if (!this.page) {
      throw new Error('The status page is read at start-up, which has not run');
    }
    return this.page;
  }
}

function sha256(text: string): string {
  return `sha256-${createHash('sha256').update(text).digest('base64')}`;
}
