// Hot swap by generations: a new generation binds beside the old one, is published over the cell's
// name once healthy, and the old one drains.
export * from './generations.js';
export { waitHealthy } from './probe.js';
export type { ChildGeneration } from './process.js';
export { childProcessSwapSteps, stopGeneration } from './process.js';
