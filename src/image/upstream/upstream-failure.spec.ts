import { AxiosError, AxiosHeaders, type AxiosResponse } from 'axios';
import { describeFailure, type FetchLimits } from './upstream-failure';

const URL = 'http://upstream.test/300/200';
const LIMITS: FetchLimits = {
  timeoutMs: 300,
  maxBytes: 1024,
  deadlinePassed: false,
};

function axiosError(
  message: string,
  code: string | undefined,
  withResponse = false,
): AxiosError {
  const response = withResponse
    ? ({ status: 200, headers: new AxiosHeaders() } as AxiosResponse)
    : undefined;
  return new AxiosError(message, code, undefined, undefined, response);
}

describe(describeFailure.name, () => {
  it('turns a passed deadline into a 504 naming UPSTREAM_TIMEOUT_MS, whatever the error', () => {
    const failure = describeFailure(URL, new Error('canceled'), {
      ...LIMITS,
      deadlinePassed: true,
    });

    expect(failure.getStatus()).toBe(504);
    expect(failure.message).toBe(
      `Upstream ${URL} did not answer within UPSTREAM_TIMEOUT_MS (300 ms)`,
    );
  });

  it('turns a hop that timed out into a 504', () => {
    const failure = describeFailure(
      URL,
      axiosError('timeout of 300ms exceeded', 'ETIMEDOUT'),
      LIMITS,
    );

    expect(failure.getStatus()).toBe(504);
  });

  it.each([
    [
      axiosError('maxContentLength size of 1024 exceeded', 'ERR_BAD_RESPONSE'),
      `Upstream body from ${URL} is larger than UPSTREAM_MAX_BYTES (1024 bytes); not stored`,
    ],
    [
      axiosError('stream has been aborted', 'ERR_BAD_RESPONSE', true),
      `Upstream ${URL} closed the connection before the body was complete`,
    ],
    [
      axiosError('socket hang up', 'ECONNRESET'),
      `Upstream ${URL} closed the connection without a reply`,
    ],
    [
      axiosError('connect ECONNREFUSED 10.0.0.7:80', 'ECONNREFUSED'),
      `Upstream ${URL} failed: ECONNREFUSED`,
    ],
    [new Error('something else'), `Upstream ${URL} failed: network error`],
  ])(
    'turns %s into a 502 that names the URL, not the address',
    (error, message) => {
      const failure = describeFailure(URL, error, LIMITS);

      expect(failure.getStatus()).toBe(502);
      expect(failure.message).toBe(message);
      expect(failure.message).not.toContain('10.0.0.7');
    },
  );

  it('keeps the error itself, address and all, as the cause for the log', () => {
    const failure = describeFailure(
      URL,
      axiosError('connect ECONNREFUSED 10.0.0.7:80', 'ECONNREFUSED'),
      LIMITS,
    );

    expect(failure.cause).toBe('connect ECONNREFUSED 10.0.0.7:80');
  });
});
