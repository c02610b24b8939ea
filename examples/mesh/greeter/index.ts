// The greeter cell. Grown by the Root from this folder (its DNA): `cell up examples/mesh`.
import { Membrane } from '../../../src/index.js';
import { Greeter } from '../contracts.js';

let served = 0;
await Membrane.bind(Greeter, {
  greet: (name) => ({ text: `hello, ${name}`, served: ++served }),
});
console.log(`greeter ready (pid ${process.pid})`);
