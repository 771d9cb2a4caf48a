// The extension's client side, tested with a real LSP client library (vscode-jsonrpc, what
// vscode-languageclient is built on) against the real `drover lsp`, started the way the
// extension starts it. (@vscode/test-electron downloads VS Code itself, which this machine's
// closed network does not allow.)
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as cp from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter, MessageConnection } from 'vscode-jsonrpc/node';
import { initializationOptions, serverCommand } from '../server';
import { droverBin, repo } from './paths';

interface Published {
  uri: string;
  version?: number;
  diagnostics: { code: string; message: string; range: { start: { line: number; character: number } } }[];
}

async function start(): Promise<{ conn: MessageConnection; proc: cp.ChildProcess; published: Published[]; next: (uri: string) => Promise<Published> }> {
  const cmd = serverCommand({}, { ...process.env, DROVER_BIN: droverBin() });
  const proc = cp.spawn(cmd.command, cmd.args, { env: cmd.options.env, stdio: ['pipe', 'pipe', 'inherit'] });
  const conn = createMessageConnection(new StreamMessageReader(proc.stdout!), new StreamMessageWriter(proc.stdin!));
  const published: Published[] = [];
  const waiters: { uri: string; resolve: (p: Published) => void }[] = [];
  conn.onNotification('textDocument/publishDiagnostics', (p: Published) => {
    const w = waiters.findIndex((x) => x.uri === p.uri);
    if (w >= 0) waiters.splice(w, 1)[0].resolve(p);
    else published.push(p);
  });
  conn.listen();
  const init: any = await conn.sendRequest('initialize', {
    processId: process.pid,
    rootUri: null,
    capabilities: {},
    initializationOptions: initializationOptions({ debounceMs: 20 }),
  });
  assert.ok(init.capabilities.completionProvider, 'completion is offered');
  assert.equal(init.serverInfo.name, 'drover');
  conn.sendNotification('initialized', {});
  const next = (uri: string) =>
    new Promise<Published>((resolve, reject) => {
      const i = published.findIndex((p) => p.uri === uri);
      if (i >= 0) return resolve(published.splice(i, 1)[0]);
      const timer = setTimeout(() => reject(new Error(`no diagnostics for ${uri}`)), 30000);
      waiters.push({ uri, resolve: (p) => { clearTimeout(timer); resolve(p); } });
    });
  return { conn, proc, published, next };
}

async function stop(conn: MessageConnection, proc: cp.ChildProcess): Promise<void> {
  await conn.sendRequest('shutdown');
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  conn.sendNotification('exit');
  assert.equal(await exited, 0, 'drover lsp exits cleanly');
  conn.dispose();
}

test('an editor session: diagnostics, completion, hover and formatting', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-vscode-'));
  const file = path.join(dir, 'failover.drover');
  const uri = `file://${file}`;
  const text = fs
    .readFileSync(path.join(repo, 'runbooks', 'ehr-failover.drover'), 'utf8')
    .replace('after       = [check_immutable_copy]', 'after       = [check_imutable_copy]');
  const { conn, proc, next } = await start();
  try {
    conn.sendNotification('textDocument/didOpen', { textDocument: { uri, languageId: 'drover', version: 1, text } });
    const first = await next(uri);
    assert.deepEqual(first.diagnostics.map((d) => d.code), ['DR0011']);
    assert.equal(first.diagnostics[0].message, 'no step is called `check_imutable_copy`');
    const line = text.split('\n').findIndex((l) => l.includes('check_imutable_copy'));
    assert.equal(first.diagnostics[0].range.start.line, line);

    // Typing a new step: `action = aws_` completes to the AWS actions.
    const typed = text.replace('step declare {', 'step reroute {\n  action = aws_\n}\n\nstep declare {');
    conn.sendNotification('textDocument/didChange', { textDocument: { uri, version: 2 }, contentChanges: [{ text: typed }] });
    const lines = typed.split('\n');
    const at = lines.findIndex((l) => l === '  action = aws_');
    const list: any = await conn.sendRequest('textDocument/completion', {
      textDocument: { uri },
      position: { line: at, character: '  action = aws_'.length },
    });
    const labels: string[] = list.items.map((i: any) => i.label);
    assert.ok(labels.includes('aws_route53.set_failover'), labels.join(', '));
    assert.ok(labels.every((l) => l.startsWith('aws_')), labels.join(', '));

    const hover: any = await conn.sendRequest('textDocument/hover', {
      textDocument: { uri },
      position: { line: lines.findIndex((l) => l.includes('aws_route53.set_failover')), character: 20 },
    });
    assert.match(hover.contents.value, /\*\*aws_route53\.set_failover\*\*/);

    const edits: any[] = await conn.sendRequest('textDocument/formatting', {
      textDocument: { uri },
      options: { tabSize: 2, insertSpaces: true },
    });
    assert.ok(Array.isArray(edits), 'formatting answers with edits');
  } finally {
    await stop(conn, proc);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
