// The VS Code side: start `drover lsp` for `.drover` files and hand it the documents.

import * as vscode from 'vscode';
import { LanguageClient, LanguageClientOptions, ServerOptions, TransportKind } from 'vscode-languageclient/node';
import { Settings, documentSelector, initializationOptions, serverCommand } from './server';

let client: LanguageClient | undefined;

function settings(): Settings {
  const c = vscode.workspace.getConfiguration('drover');
  return { path: c.get<string>('path'), debounceMs: c.get<number>('debounceMs') };
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const s = settings();
  const cmd = serverCommand(s);
  const serverOptions: ServerOptions = {
    run: { command: cmd.command, args: cmd.args, options: cmd.options, transport: TransportKind.stdio },
    debug: { command: cmd.command, args: cmd.args, options: cmd.options, transport: TransportKind.stdio },
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector,
    initializationOptions: initializationOptions(s),
    synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher('**/*.{drover,toml}') },
  };
  client = new LanguageClient('drover', 'Drover', serverOptions, clientOptions);
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (e.affectsConfiguration('drover.path') && client) {
        await client.stop();
        client = new LanguageClient('drover', 'Drover', serverOptions, clientOptions);
        await client.start();
      }
    }),
  );
  await client.start();
}

export async function deactivate(): Promise<void> {
  if (client) {
    await client.stop();
  }
}
