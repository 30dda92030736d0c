import {
  UPSTREAM_OUTCOMES,
  type UpstreamOutcome,
} from '../../metrics/upstream-outcomes';

export type UpstreamFailureOutcome = Exclude<UpstreamOutcome, 'success'>;

/** The outcome an error thrown by a fetch stands for: its own when it carries one. */
export function upstreamOutcomeOf(error: unknown): UpstreamFailureOutcome {
  if (typeof error === 'object' && error !== null && 'outcome' in error) {
    const outcome = error.outcome;
    if (
      typeof outcome === 'string' &&
      outcome !== 'success' &&
      (UPSTREAM_OUTCOMES as readonly string[]).includes(outcome)
    ) {
      return outcome as UpstreamFailureOutcome;
    }
  }
  return 'network_error';
}
