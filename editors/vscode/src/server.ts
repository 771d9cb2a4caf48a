// How the extension starts `drover lsp`: kept free of the `vscode` module so that it is tested
// outside VS Code, against the real server.

/** The settings the extension reads (`drover.*`). */
export interface Settings {
  /** The drover binary: a name on PATH or a full path. */
  path?: string;
  /** Quiet time after typing before a runbook is checked again (ms). */
  debounceMs?: number;
}

/** The process to start and how to talk to it. */
export interface ServerCommand {
  command: string;
  args: string[];
  options: { env: NodeJS.ProcessEnv };
}

/** The command that serves the protocol: `<path> lsp` on stdio. */
export function serverCommand(settings: Settings, env: NodeJS.ProcessEnv = process.env): ServerCommand {
  const configured = (settings.path ?? '').trim();
  const command = configured !== '' ? configured : env.DROVER_BIN?.trim() || 'drover';
  // The server logs nothing to stdout (it is the protocol's channel); colour codes would only
  // clutter the output panel.
  return { command, args: ['lsp'], options: { env: { ...env, NO_COLOR: '1' } } };
}

/** What the server reads from `initializationOptions`. */
export function initializationOptions(settings: Settings): { debounceMs?: number } {
  const ms = settings.debounceMs;
  return typeof ms === 'number' && Number.isFinite(ms) && ms >= 0 ? { debounceMs: Math.round(ms) } : {};
}

/** The documents the client hands to the server: Drover runbooks, on disk or unsaved. */
export const documentSelector = [
  { scheme: 'file', language: 'drover' },
  { scheme: 'untitled', language: 'drover' },
];
