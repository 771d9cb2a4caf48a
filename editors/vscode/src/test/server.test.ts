import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { documentSelector, initializationOptions, serverCommand } from '../server';

test('the configured path wins, then $DROVER_BIN, then drover on PATH', () => {
  assert.equal(serverCommand({ path: '/opt/drover/bin/drover' }, { DROVER_BIN: '/x' }).command, '/opt/drover/bin/drover');
  assert.equal(serverCommand({ path: '  ' }, { DROVER_BIN: '/x/drover' }).command, '/x/drover');
  assert.equal(serverCommand({}, {}).command, 'drover');
  assert.deepEqual(serverCommand({}, {}).args, ['lsp']);
  assert.equal(serverCommand({}, { HOME: '/h' }).options.env.NO_COLOR, '1');
  assert.equal(serverCommand({}, { HOME: '/h' }).options.env.HOME, '/h');
});

test('only a usable debounce is passed to the server', () => {
  assert.deepEqual(initializationOptions({ debounceMs: 80.4 }), { debounceMs: 80 });
  assert.deepEqual(initializationOptions({ debounceMs: -1 }), {});
  assert.deepEqual(initializationOptions({ debounceMs: Number.NaN }), {});
  assert.deepEqual(initializationOptions({}), {});
});

test('the client hands over runbooks on disk and unsaved ones', () => {
  assert.deepEqual(
    documentSelector.map((d) => d.scheme),
    ['file', 'untitled'],
  );
  assert.ok(documentSelector.every((d) => d.language === 'drover'));
});
