import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CellError, isCellError } from '../../src/errors/index.js';
import { validateCellName } from '../../src/paths/index.js';

test('CellError names the cell, the cause and the fix', () => {
  const err = new CellError('E_CELL_NOT_FOUND', 'no socket at /x.sock.', { cell: 'exchange', fix: 'run `cell up`.' });
  assert.equal(err.code, 'E_CELL_NOT_FOUND');
  assert.equal(err.message, "cell 'exchange': no socket at /x.sock. Fix: run `cell up`.");
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
