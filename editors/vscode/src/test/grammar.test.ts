// The TextMate grammar, tokenized by the same engine VS Code uses (vscode-textmate with the
// Oniguruma regex library), on the example runbooks.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import * as oniguruma from 'vscode-oniguruma';
import * as vsctm from 'vscode-textmate';
import { exampleRunbooks, repo } from './paths';

const grammarPath = path.join(repo, 'editors', 'vscode', 'syntaxes', 'drover.tmLanguage.json');

async function loadGrammar(): Promise<vsctm.IGrammar> {
  const wasm = fs.readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm')).buffer;
  await oniguruma.loadWASM(wasm);
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (sources: string[]) => new oniguruma.OnigScanner(sources),
      createOnigString: (s: string) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scope: string) =>
      scope === 'source.drover' ? vsctm.parseRawGrammar(fs.readFileSync(grammarPath, 'utf8'), grammarPath) : null,
  });
  const g = await registry.loadGrammar('source.drover');
  assert.ok(g, 'grammar loads');
  return g;
}

type Token = { text: string; scopes: string[]; line: number };

function tokenize(g: vsctm.IGrammar, text: string): Token[] {
  let state = vsctm.INITIAL;
  const out: Token[] = [];
  text.split('\n').forEach((line, i) => {
    const r = g.tokenizeLine(line, state);
    for (const t of r.tokens) {
      out.push({ text: line.slice(t.startIndex, t.endIndex), scopes: t.scopes, line: i + 1 });
    }
    state = r.ruleStack;
  });
  return out;
}

function scopeOf(tokens: Token[], text: string): string[] {
  const t = tokens.find((x) => x.text.trim() === text);
  assert.ok(t, `a token "${text}"`);
  return t.scopes;
}

test('the failover runbook gets the scopes a theme colours', async () => {
  const g = await loadGrammar();
  const tokens = tokenize(g, fs.readFileSync(path.join(repo, 'runbooks', 'ehr-failover.drover'), 'utf8'));
  const has = (text: string, scope: string) =>
    assert.ok(scopeOf(tokens, text).includes(scope), `${text}: ${scopeOf(tokens, text).join(' ')} lacks ${scope}`);
  has('# EHR database failover to the recovery region (AWS).', 'comment.line.number-sign.drover');
  has('runbook', 'keyword.other.block.drover');
  has('check_immutable_copy', 'entity.name.function.drover');
  has('aws_s3.check_object_lock', 'entity.name.function.action.drover');
  has('COMPLIANCE', 'constant.other.enum.drover');
  has('4h', 'constant.numeric.duration.drover');
  has('max_parallel', 'variable.other.property.drover');
  has('secret', 'support.type.drover');
  has('steps', 'variable.language.steps.drover');
  has('true', 'constant.language.boolean.drover');
  const region = tokens.find((t) => t.text.trim() === 'region' && t.scopes.includes('meta.template.expression.drover'));
  assert.ok(region, 'a template variable inside a string');
  assert.ok(region.scopes.includes('string.quoted.double.drover'));
});

test('no string or template runs past its line in any example runbook', async () => {
  const g = await loadGrammar();
  const files = exampleRunbooks();
  assert.ok(files.length >= 8, `found ${files.length} runbooks`);
  for (const f of files) {
    for (const t of tokenize(g, fs.readFileSync(f, 'utf8'))) {
      const first = t.scopes.includes('string.quoted.double.drover') && /^\s*(step|param|runbook|milestone)\b/.test(t.text);
      assert.ok(!first, `${f}:${t.line}: "${t.text}" is inside a string`);
    }
  }
});
