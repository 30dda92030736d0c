import { TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import { ShutdownHealthIndicator } from './shutdown.health';

describe(ShutdownHealthIndicator.name, () => {
  it('is up while running and down once shutdown has begun', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [TerminusModule],
      providers: [ShutdownHealthIndicator],
    }).compile();
    const indicator = moduleRef.get(ShutdownHealthIndicator);

    const before = indicator.isHealthy('shutdown');
    await moduleRef.close();
    const after = indicator.isHealthy('shutdown');

    expect(before).toEqual({ shutdown: { status: 'up' } });
    expect(after).toEqual({
      shutdown: { status: 'down', message: 'shutting down' },
    });
  });
});
