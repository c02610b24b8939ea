import assert from 'node:assert/strict';
import { availableParallelism, totalmem } from 'node:os';
import { test } from 'node:test';
import { DEFAULT_LIMITS, parseLimits, parseMemory } from '../../src/capsid/index.js';
import { isCellError } from '../../src/errors/index.js';

test('parseLimits reads the manifest fields with binary units', () => {
  assert.deepEqual(parseLimits({ memory: '256M', cpu: 0.5, pids: 128 }), {
    memoryBytes: 256 * 1024 * 1024,
    cpu: 0.5,
    pids: 128,
  });
  assert.deepEqual(parseLimits({ memory: '1G' }), { memoryBytes: 1024 ** 3 });
  assert.deepEqual(parseLimits({ memory: '1.5GiB' }), { memoryBytes: 1.5 * 1024 ** 3 });
  assert.deepEqual(parseLimits({ memory: '64mb' }), { memoryBytes: 64 * 1024 ** 2 });
  assert.deepEqual(parseLimits({ memory: 100_000_000 }), { memoryBytes: 100_000_000 });
  assert.deepEqual(parseLimits(undefined), {});
  assert.deepEqual(parseLimits({}), {});
  assert.equal(parseMemory('32768K'), 32 * 1024 * 1024);
});

test('parseLimits rejects bad values with an error naming the field and the expected form', () => {
  const cases: [unknown, RegExp][] = [
    [{ memory: 'lots' }, /limits\.memory is "lots"; expected a size/],
    [{ memory: '1M' }, /at least 16M/],
    [{ memory: -5 }, /limits\.memory/],
    [{ cpu: 0 }, /limits\.cpu is 0; expected a number of CPU cores/],
    [{ cpu: '1' }, /limits\.cpu/],
    [{ pids: 3.5 }, /limits\.pids is 3\.5; expected an integer/],
    [{ pids: 2 }, /limits\.pids/],
    [{ memroy: '256M' }, /unknown field limits\.memroy/],
    ['256M', /limits is "256M"; expected an object/],
    [[1], /expected an object/],
  ];
  for (const [input, message] of cases) {
    assert.throws(
      () => parseLimits(input),
      (err: unknown) => isCellError(err, 'E_INVALID_ARGUMENT') && message.test(err.message),
      JSON.stringify(input),
    );
  }
});

test('the defaults are sane', () => {
  assert.equal(DEFAULT_LIMITS.memoryBytes, 512 * 1024 * 1024);
  assert.equal(DEFAULT_LIMITS.cpu, 1);
  assert.equal(DEFAULT_LIMITS.pids, 256);
  assert.ok(Object.isFrozen(DEFAULT_LIMITS));
});

test('limits are bounded by the host: memory by its RAM, cpu by its cores, pids by 65536', () => {
  const cores = availableParallelism();
  const ram = totalmem();
  // The bounds themselves are accepted.
  assert.deepEqual(parseLimits({ memory: ram, cpu: cores, pids: 65_536 }), {
    memoryBytes: ram,
    cpu: cores,
    pids: 65_536,
  });
  const cases: [unknown, RegExp][] = [
    [
      { memory: '99999999T' },
      /limits\.memory is "99999999T"; expected at most [\d.]+[KMGT] \(\d+ bytes, this host's total memory\)/,
    ],
    [{ memory: `${'9'.repeat(400)}G` }, /limits\.memory .*expected at most .*this host's total memory/],
    [{ memory: ram + 1 }, new RegExp(`expected at most .*\\(${ram} bytes, this host's total memory\\)`)],
    [{ memory: 1e300 }, /this host's total memory/],
    [
      { cpu: cores + 0.5 },
      new RegExp(`limits\\.cpu is ${cores + 0.5}; expected a number of CPU cores between 0\\.01 and ${cores}`),
    ],
    [{ cpu: 1e9 }, /the cores this host offers/],
    [{ cpu: Number.POSITIVE_INFINITY }, /limits\.cpu/],
    [{ pids: 65_537 }, /limits\.pids is 65537; expected an integer between 8 and 65536/],
    [{ pids: 4_194_304 }, /between 8 and 65536/],
  ];
  for (const [input, message] of cases) {
    assert.throws(
      () => parseLimits(input),
      (err: unknown) => isCellError(err, 'E_INVALID_ARGUMENT') && message.test(err.message),
      JSON.stringify(input),
    );
  }
});
