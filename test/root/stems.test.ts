import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCellError } from '../../src/errors/index.js';
import { STEM_CELLS_DEFAULT, stemCellsWanted } from '../../src/root/stems.js';

test('the stem-cell pool size: the option, else CELL_STEM_CELLS, else the default; 0 turns it off', () => {
  assert.equal(stemCellsWanted(undefined, undefined), STEM_CELLS_DEFAULT);
  assert.equal(stemCellsWanted(undefined, ''), STEM_CELLS_DEFAULT);
  assert.equal(stemCellsWanted(undefined, '0'), 0);
  assert.equal(stemCellsWanted(undefined, '5'), 5);
  assert.equal(stemCellsWanted(3, '0'), 3);
  for (const bad of ['-1', '1.5', 'two', '65']) {
    assert.throws(
      () => stemCellsWanted(undefined, bad),
      (err) => isCellError(err, 'E_INVALID_ARGUMENT') && /CELL_STEM_CELLS/.test(String(err.fix)),
      bad,
    );
  }
});
