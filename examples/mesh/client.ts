// `node dist/examples/mesh/client.js` after `cell up examples/mesh`: greets through the running
// greeter and grows the counter on demand (the Root builds and starts it on the first call).
import { Synapse } from '../../src/index.js';
import { Counter, Greeter } from './contracts.js';

const greeter = await Synapse.grow(Greeter);
const counter = await Synapse.grow(Counter, { waitMs: 30_000 });
const g = await greeter.greet('mesh');
console.log(`${g.text} (greeting #${g.served})`);
console.log(`counter: ${await counter.add(5)}`);
await Promise.all([greeter.$close(), counter.$close()]);
