// jstat ships no types; only what the tests use.
declare module 'jstat' {
  export const jStat: { chisquare: { cdf(x: number, degreesOfFreedom: number): number } };
}
