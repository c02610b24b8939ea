// schemas/cell.schema.json: the JSON Schema editors use through a manifest's "$schema". It must accept
// every manifest the Root accepts, refuse typos at every level, and list the fields docs/CLI.md lists.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { ENTRY_KEYS, loadManifest } from '../../src/root/manifest.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const schema = JSON.parse(readFileSync(join(repo, 'schemas', 'cell.schema.json'), 'utf8')) as {
  definitions: { cell: { properties: Record<string, unknown> } };
};
const validate = new Ajv({ strict: true, allErrors: true }).compile(schema);
/** Fields the schema describes that the Root does not accept yet (none today). */
const PENDING: string[] = [];

const EVERY_FIELD = {
  $schema: './node_modules/cell-runtime/schemas/cell.schema.json',
  cells: {
    market: {
      dna: './market',
      entry: 'main.ts',
      limits: { memory: '256M', cpu: 0.5, pids: 128 },
      network: true,
      lan: false,
      autostart: false,
      env: { LEVEL: 'debug' },
      calls: ['ledger'],
      contracts: ['./contracts'],
      restart: { backoffMs: 50, maxBackoffMs: 2000, windowMs: 5000, failures: 3, stableMs: 3000 },
      nats: { servers: ['nats://127.0.0.1:4222'], credsFile: '/etc/cell/nats.creds', tls: { caFile: '/etc/ca.pem' } },
    },
    ledger: { dna: './ledger', limits: { memory: 268435456 }, nats: 'nats://127.0.0.1:4222' },
  },
};

test('the schema accepts the shipped example and a manifest using every field', () => {
  for (const manifest of [JSON.parse(readFileSync(join(repo, 'examples', 'mesh', 'cell.json'), 'utf8')), EVERY_FIELD]) {
    assert.ok(validate(manifest), JSON.stringify(validate.errors));
  }
  assert.deepEqual(
    Object.keys(schema.definitions.cell.properties).sort(),
    Object.keys(EVERY_FIELD.cells.market).sort(),
  );
});

test("the schema's entry fields are the Root's (src/root/manifest.ts ENTRY_KEYS)", () => {
  const fields = Object.keys(schema.definitions.cell.properties);
  for (const key of ENTRY_KEYS) assert.ok(fields.includes(key), `the schema describes ${key}`);
  for (const key of fields) {
    assert.ok(ENTRY_KEYS.includes(key) || PENDING.includes(key), `the Root accepts ${key} (or it is pending)`);
  }
});

test('the Root loads a manifest using every field of the schema it knows (and "$schema")', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-schema-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const accepted = structuredClone(EVERY_FIELD) as { cells: Record<string, Record<string, unknown>> };
  for (const entry of Object.values(accepted.cells)) {
    for (const key of Object.keys(entry)) if (!ENTRY_KEYS.includes(key)) delete entry[key];
  }
  writeFileSync(join(dir, 'cell.json'), JSON.stringify(accepted));
  const specs = loadManifest(join(dir, 'cell.json'));
  assert.deepEqual(
    specs.map((s) => s.name),
    ['market', 'ledger'],
  );
});

test('typos are refused at every level, naming the key', () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ cell: {} }, /additionalProperty.*cell/],
    [{ cells: { a: { dna: './a', autoStart: false } } }, /autoStart/],
    [{ cells: { a: { dna: './a', enviroment: {} } } }, /enviroment/],
    [{ cells: { a: { dna: './a', limit: {} } } }, /limit"/],
    [{ cells: { a: { dna: './a', limits: { memroy: '1G' } } } }, /memroy/],
    [{ cells: { a: { dna: './a', nats: { server: 'nats://x' } } } }, /server/],
    [{ cells: { a: { dna: './a', env: { A: 1 } } } }, /must be string/],
    [{ cells: { A: { dna: './a' } } }, /property name/],
    [{ cells: { a: { entry: 'x.ts' } } }, /dna/],
    [{ cells: { a: { dna: './a', limits: { pids: 2 } } } }, />= 8/],
    [{ cells: { a: { dna: './a', restart: { failure: 3 } } } }, /failure/],
    [{ cells: { a: { dna: './a', restart: { failures: 0 } } } }, />= 1/],
    [{ cells: { a: { dna: './a', restart: { windowMs: '10s' } } } }, /must be integer/],
  ];
  for (const [manifest, re] of cases) {
    assert.equal(validate(manifest), false, JSON.stringify(manifest));
    assert.match(JSON.stringify(validate.errors), re, JSON.stringify(manifest));
  }
});

test('docs/CLI.md documents every field of the schema, and the package ships it', () => {
  const docs = readFileSync(join(repo, 'docs', 'CLI.md'), 'utf8');
  for (const field of Object.keys(schema.definitions.cell.properties)) {
    assert.match(docs, new RegExp(`^\\| \`${field}\` \\|`, 'm'), `docs/CLI.md has a row for ${field}`);
  }
  assert.match(docs, /\$schema/);
  const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as {
    files: string[];
    exports: Record<string, unknown>;
  };
  assert.ok(pkg.files.includes('schemas'));
  assert.equal(pkg.exports['./schemas/cell.schema.json'], './schemas/cell.schema.json');
});
