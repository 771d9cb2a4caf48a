import * as fs from 'fs';
import * as path from 'path';

/** The repository's root (this file is editors/vscode/out/test/paths.js once compiled). */
export const repo = path.resolve(__dirname, '..', '..', '..', '..');

/** The drover binary the tests start: $DROVER_BIN, else the workspace's debug build. */
export function droverBin(): string {
  const bin = process.env.DROVER_BIN ?? path.join(repo, 'target', 'debug', 'drover');
  if (!fs.existsSync(bin)) {
    throw new Error(`no drover binary at ${bin}: build it (cargo build --workspace) or set DROVER_BIN`);
  }
  return bin;
}

/** Every example runbook (runbooks/ and its libraries). */
export function exampleRunbooks(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.drover')) out.push(p);
    }
  };
  walk(path.join(repo, 'runbooks'));
  return out.sort();
}
