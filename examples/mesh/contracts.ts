// The contracts of the two example cells, shared by the cells and their callers.
import { protein, t } from '../../src/protein/index.js';
import { rpc, service } from '../../src/service/index.js';

export const Greeting = protein('Greeting', { text: t.string, served: t.uint });

export const Greeter = service('greeter', {
  /** Greets a name; `served` counts the greetings of this process. */
  greet: rpc(t.string, Greeting),
});

export const Counter = service('counter', {
  /** Adds to the counter and returns the new value. */
  add: rpc(t.uint, t.uint),
  value: rpc(t.unit, t.uint),
});
