import { BadGatewayException, GatewayTimeoutException } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { FakeClock } from '../../../test/support/fake-clock';
import { upstreamConfig } from '../../config/upstream.config';
import { forwardStatusOf } from '../upstream/forward-status';
import { UpstreamFetchException } from '../upstream/upstream-fetch.exception';
import { Clock } from './clock';
import { FailureMemory } from './failure-memory';
import { SharedTier } from './shared/shared-tier';

describe(FailureMemory.name, () => {
  let memory: FailureMemory;
  let clock: FakeClock;
  const shared = {
    recordFailure: jest.fn().mockResolvedValue(undefined),
    loadFailure: jest.fn().mockResolvedValue(undefined),
  };

  beforeEach(async () => {
    jest.clearAllMocks();
    clock = new FakeClock();
    const moduleRef = await Test.createTestingModule({
      providers: [
        FailureMemory,
        { provide: SharedTier, useValue: shared },
        { provide: Clock, useValue: clock },
        { provide: upstreamConfig.KEY, useValue: { retryAfterSeconds: 10 } },
      ],
    }).compile();
    memory = moduleRef.get(FailureMemory);
  });

  it('remembers a failed fetch until its retry time, and records it for the other replicas with the upstream status', async () => {
    const error = new UpstreamFetchException(
      'http_error',
      'Upstream answered 503 for http://upstream/1200/1200',
      undefined,
      503,
    );

    await memory.record('1200x1200', error);
    const within = memory.recent('1200x1200');
    clock.advanceSeconds(10);

    expect(within).toBe(error);
    expect(memory.recent('1200x1200')).toBeUndefined();
    expect(shared.recordFailure).toHaveBeenCalledWith('1200x1200', {
      status: 502,
      forwardStatus: 503,
      message: 'Upstream answered 503 for http://upstream/1200/1200',
      retryAfterMs: 10_000,
    });
  });

  it('records a failure without an upstream status (a timeout) without a forward status', async () => {
    await memory.record(
      '1200x1200',
      new GatewayTimeoutException('Upstream did not answer'),
    );

    expect(shared.recordFailure).toHaveBeenCalledWith('1200x1200', {
      status: 504,
      message: 'Upstream did not answer',
      retryAfterMs: 10_000,
    });
  });

  it("remembers another replica's failure for the retry time it had left, with its forward status", () => {
    const error = memory.rememberRemote({
      type: 'failed',
      from: 'other',
      key: '300x200',
      status: 502,
      forwardStatus: 500,
      message: 'Upstream answered 500 for http://upstream/300/200',
      retryAfterMs: 4000,
    });
    clock.advanceSeconds(3);
    const within = memory.recent('300x200');
    clock.advanceSeconds(1);

    expect(within).toBe(error);
    expect(error.getStatus()).toBe(502);
    expect(forwardStatusOf(error)).toBe(500);
    expect(memory.recent('300x200')).toBeUndefined();
  });

  it('loads what another replica recorded in the shared tier, remembering it; nothing when there is none', async () => {
    shared.loadFailure.mockResolvedValueOnce({
      type: 'failed',
      from: 'other',
      key: '300x200',
      status: 502,
      message: 'Upstream answered 500',
      retryAfterMs: 2000,
    });

    const loaded = await memory.loadRemote('300x200');
    const none = await memory.loadRemote('400x300');

    expect(loaded).toBeInstanceOf(Error);
    expect(memory.recent('300x200')).toBe(loaded);
    expect(none).toBeUndefined();
  });

  it('forgets one variant, or all', async () => {
    await memory.record('a', new BadGatewayException('Upstream failed'));
    await memory.record('b', new BadGatewayException('Upstream failed'));

    memory.forget('a');
    const afterOne = [memory.recent('a'), memory.recent('b') !== undefined];
    memory.forgetAll();

    expect(afterOne).toEqual([undefined, true]);
    expect(memory.recent('b')).toBeUndefined();
  });
});
