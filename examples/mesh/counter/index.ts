// The counter cell: not started by `cell up` (autostart: false); the first Synapse.grow spawns it.
import { Membrane } from '../../../src/index.js';
import { Counter } from '../contracts.js';

let value = Number(process.env.COUNTER_START ?? 0);
await Membrane.bind(Counter, {
  add: (n) => {
    value += n;
    return value;
  },
  value: () => value,
});
console.log(`counter ready at ${value} (pid ${process.pid})`);
