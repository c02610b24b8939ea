import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CellError, formatCellError, isCellError } from '../../src/errors/index.js';
import { validateCellName } from '../../src/paths/index.js';

test('CellError keeps the cause as its message and the cell, method and fix as fields; one formatter', () => {
  const err = new CellError('E_CELL_NOT_FOUND', 'no socket at /x.sock.', { cell: 'exchange', fix: 'run `cell up`.' });
  assert.equal(err.code, 'E_CELL_NOT_FOUND');
  assert.equal(err.message, 'no socket at /x.sock.');
  assert.equal(err.cell, 'exchange');
  assert.equal(err.fix, 'run `cell up`.');
  assert.equal(formatCellError(err), "cell 'exchange': no socket at /x.sock.\n  fix: run `cell up`.");
  assert.equal(String(err), "CellError E_CELL_NOT_FOUND: cell 'exchange': no socket at /x.sock. (fix: run `cell up`.)");
  const m = new CellError('E_REMOTE', 'boom', { cell: 'counter', method: 'add' });
  assert.equal(formatCellError(m), "cell 'counter', method 'add': boom");
  assert.deepEqual(JSON.parse(JSON.stringify(m)), {
    name: 'CellError',
    code: 'E_REMOTE',
    message: 'boom',
    cell: 'counter',
    method: 'add',
  });
  assert.equal(formatCellError(new CellError('E_TIMEOUT', 'late.')), 'late.');
  assert.ok(isCellError(err, 'E_CELL_NOT_FOUND'));
  assert.ok(!isCellError(err, 'E_TIMEOUT'));
  assert.ok(!isCellError(new Error('x')));
});

test('cell names cannot traverse paths', () => {
  assert.equal(validateCellName('exchange-2'), 'exchange-2');
  for (const bad of ['', '../etc', 'a/b', 'A', '.hidden', 'x'.repeat(64), 'a b']) {
    assert.throws(
      () => validateCellName(bad),
      (e: unknown) => isCellError(e, 'E_NAME_INVALID'),
    );
  }
});
