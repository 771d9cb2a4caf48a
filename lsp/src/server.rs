//! The protocol loop: documents in, requests answered, diagnostics published after a quiet
//! moment, compilations on a worker thread.

use crate::features::{self, Docs};
use crate::text::{name_to_uri, uri_to_name};
use crossbeam_channel::{Receiver, Sender, select};
use drover_dsl::{Compilation, CompileOptions, FsLoader, SourceLoader};
use drover_schema::{Catalogue, Clock, SystemClock};
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types::notification::Notification as _;
use lsp_types::request::Request as _;
use lsp_types::{
    CodeActionKind, CodeActionOptions, CodeActionProviderCapability, CompletionOptions,
    DiagnosticSeverity, HoverProviderCapability, InitializeParams, NumberOrString, OneOf,
    PublishDiagnosticsParams, RenameOptions, ServerCapabilities, ServerInfo,
    TextDocumentSyncCapability, TextDocumentSyncKind, notification, request,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// How the server behaves; the client may set these in `initializationOptions`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Quiet time after the last change before a file is compiled again (ms).
    pub debounce_ms: u64,
    /// Where each code's documentation lives; the code is appended as a fragment
    /// (`…/diagnostics.md#dr0011`).
    pub docs_url: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            debounce_ms: 150,
            docs_url: "https://github.com/drover-dr/drover/blob/main/docs/diagnostics.md"
                .to_owned(),
        }
    }
}

/// Serves the protocol on stdin and stdout until the client says `exit`.
///
/// # Errors
/// A broken connection or a protocol error, as text.
pub fn run_stdio(catalogue: Arc<dyn Catalogue>) -> Result<(), String> {
    let (connection, io) = Connection::stdio();
    run(&connection, catalogue, Options::default())?;
    drop(connection);
    io.join().map_err(|e| e.to_string())
}

/// Serves the protocol on a connection (stdio, or memory in tests and benchmarks).
///
/// # Errors
/// A broken connection or a protocol error, as text.
pub fn run(
    connection: &Connection,
    catalogue: Arc<dyn Catalogue>,
    mut options: Options,
) -> Result<(), String> {
    let caps = serde_json::to_value(capabilities()).map_err(|e| e.to_string())?;
    let init = connection.initialize_start().map_err(|e| e.to_string())?;
    let params: InitializeParams = serde_json::from_value(init.1).map_err(|e| e.to_string())?;
    if let Some(o) = &params.initialization_options {
        if let Some(ms) = o.get("debounceMs").and_then(serde_json::Value::as_u64) {
            options.debounce_ms = ms;
        }
        if let Some(url) = o.get("docsUrl").and_then(serde_json::Value::as_str) {
            url.clone_into(&mut options.docs_url);
        }
    }
    connection
        .initialize_finish(
            init.0,
            serde_json::json!({
                "capabilities": caps,
                "serverInfo": ServerInfo { name: "drover".to_owned(), version: Some(env!("CARGO_PKG_VERSION").to_owned()) },
            }),
        )
        .map_err(|e| e.to_string())?;
    let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Job>();
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Done>();
    let worker_catalogue = Arc::clone(&catalogue);
    let worker = std::thread::Builder::new()
        .name("drover-lsp-compile".to_owned())
        .spawn(move || compile_worker(&jobs_rx, &done_tx, worker_catalogue.as_ref()))
        .map_err(|e| e.to_string())?;
    let mut server = Server {
        connection,
        catalogue,
        options,
        docs: Docs::default(),
        dirty: BTreeMap::new(),
        jobs: jobs_tx,
        published: HashMap::new(),
    };
    let result = server.serve(&done_rx);
    drop(server);
    worker
        .join()
        .map_err(|_| "the compile worker panicked".to_owned())?;
    result
}

fn capabilities() -> ServerCapabilities {
    ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Kind(
            TextDocumentSyncKind::INCREMENTAL,
        )),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec![".".into(), "[".into(), "\"".into(), " ".into()]),
            ..CompletionOptions::default()
        }),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        rename_provider: Some(OneOf::Right(RenameOptions {
            prepare_provider: Some(true),
            work_done_progress_options: lsp_types::WorkDoneProgressOptions::default(),
        })),
        document_formatting_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        code_action_provider: Some(CodeActionProviderCapability::Options(CodeActionOptions {
            code_action_kinds: Some(vec![CodeActionKind::QUICKFIX]),
            ..CodeActionOptions::default()
        })),
        ..ServerCapabilities::default()
    }
}

/// A compilation to run: the root file and the text of every open document.
struct Job {
    root: String,
    overlay: Arc<HashMap<String, (i32, String)>>,
}

/// A finished compilation.
struct Done {
    root: String,
    compilation: Compilation,
    /// The root's text indexed, at the version compiled.
    analysis: Option<features::Analysis>,
    /// The version of each open file compiled.
    versions: HashMap<String, i32>,
}

/// Reads open documents from memory, the rest from disk.
struct Overlay<'a>(&'a HashMap<String, (i32, String)>);

impl SourceLoader for Overlay<'_> {
    fn resolve(&self, importer: Option<&str>, path: &str) -> String {
        FsLoader.resolve(importer, path)
    }

    fn read(&self, name: &str) -> Result<String, String> {
        match self.0.get(name) {
            Some((_, t)) => Ok(t.clone()),
            None => FsLoader.read(name),
        }
    }
}

fn compile_worker(jobs: &Receiver<Job>, done: &Sender<Done>, catalogue: &dyn Catalogue) {
    while let Ok(first) = jobs.recv() {
        // Only the latest request per root matters: a burst of edits compiles once.
        let mut latest: BTreeMap<String, Job> = BTreeMap::new();
        latest.insert(first.root.clone(), first);
        while let Ok(more) = jobs.try_recv() {
            latest.insert(more.root.clone(), more);
        }
        for (root, job) in latest {
            let opts = CompileOptions {
                catalogue,
                vars: Vec::new(),
                operators: None,
            };
            let analysis = job
                .overlay
                .get(&root)
                .map(|(version, text)| features::Analysis::new(*version, &root, text));
            let versions = job
                .overlay
                .iter()
                .map(|(n, (v, _))| (n.clone(), *v))
                .collect();
            let compilation = drover_dsl::compile(&root, &Overlay(&job.overlay), &opts);
            if done
                .send(Done {
                    root,
                    compilation,
                    analysis,
                    versions,
                })
                .is_err()
            {
                return;
            }
        }
    }
}

struct Server<'c> {
    connection: &'c Connection,
    catalogue: Arc<dyn Catalogue>,
    options: Options,
    docs: Docs,
    /// Roots to compile, with the time (ms) after which to do it.
    dirty: BTreeMap<String, u64>,
    jobs: Sender<Job>,
    /// Files each root's last compilation published diagnostics for.
    published: HashMap<String, HashSet<String>>,
}

impl Server<'_> {
    fn serve(&mut self, done: &Receiver<Done>) -> Result<(), String> {
        loop {
            let now = SystemClock.now_ms();
            let wait = self
                .dirty
                .values()
                .min()
                .map(|&at| std::time::Duration::from_millis(at.saturating_sub(now)));
            let timeout = wait.map_or_else(crossbeam_channel::never, crossbeam_channel::after);
            select! {
                recv(self.connection.receiver) -> msg => {
                    let Ok(msg) = msg else { return Ok(()) };
                    match msg {
                        Message::Request(req) => {
                            if self.connection.handle_shutdown(&req).map_err(|e| e.to_string())? {
                                return Ok(());
                            }
                            let resp = self.request(req);
                            self.send(Message::Response(resp));
                        }
                        Message::Notification(n) => {
                            if n.method == notification::Exit::METHOD {
                                return Ok(());
                            }
                            self.notification(n);
                        }
                        Message::Response(_) => {}
                    }
                }
                recv(done) -> d => {
                    if let Ok(d) = d {
                        self.publish(d);
                    }
                }
                recv(timeout) -> _ => self.flush(),
            }
        }
    }

    fn send(&self, m: Message) {
        // A closed connection ends the loop on the next receive.
        let _ = self.connection.sender.send(m);
    }

    /// Sends every root whose quiet time has passed to the worker.
    fn flush(&mut self) {
        let now = SystemClock.now_ms();
        let due: Vec<String> = self
            .dirty
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(r, _)| r.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let overlay = Arc::new(self.docs.overlay());
        for root in due {
            self.dirty.remove(&root);
            let _ = self.jobs.send(Job {
                root,
                overlay: Arc::clone(&overlay),
            });
        }
    }

    /// Schedules the compilations a change to `name` affects: the file itself (unless it is
    /// a library of groups) and every open file that imports it.
    fn changed(&mut self, name: &str, delay_ms: u64) {
        let at = SystemClock.now_ms() + delay_ms;
        for root in self.docs.roots_for(name) {
            self.dirty.insert(root, at);
        }
        if delay_ms == 0 {
            self.flush();
        }
    }

    fn notification(&mut self, n: Notification) {
        match n.method.as_str() {
            notification::DidOpenTextDocument::METHOD => {
                if let Ok(p) =
                    serde_json::from_value::<lsp_types::DidOpenTextDocumentParams>(n.params)
                {
                    let name = uri_to_name(&p.text_document.uri);
                    self.docs.open(
                        p.text_document.uri,
                        p.text_document.version,
                        p.text_document.text,
                    );
                    self.changed(&name, 0);
                }
            }
            notification::DidChangeTextDocument::METHOD => {
                if let Ok(p) =
                    serde_json::from_value::<lsp_types::DidChangeTextDocumentParams>(n.params)
                {
                    let name = uri_to_name(&p.text_document.uri);
                    self.docs
                        .change(&name, p.text_document.version, p.content_changes);
                    let delay = self.options.debounce_ms;
                    self.changed(&name, delay);
                }
            }
            notification::DidSaveTextDocument::METHOD => {
                if let Ok(p) =
                    serde_json::from_value::<lsp_types::DidSaveTextDocumentParams>(n.params)
                {
                    let name = uri_to_name(&p.text_document.uri);
                    self.changed(&name, 0);
                }
            }
            notification::DidChangeWatchedFiles::METHOD => {
                // A file changed on disk (an imported library, an operator roster): the open
                // files that may read it are checked again. Open files are read from memory.
                let names = self.docs.names();
                let at = SystemClock.now_ms();
                for name in names {
                    if !self.docs.is_library(&name) {
                        self.dirty.insert(name, at);
                    }
                }
                self.flush();
            }
            notification::DidCloseTextDocument::METHOD => {
                if let Ok(p) =
                    serde_json::from_value::<lsp_types::DidCloseTextDocumentParams>(n.params)
                {
                    let name = uri_to_name(&p.text_document.uri);
                    self.docs.close(&name);
                    self.dirty.remove(&name);
                    // A closed file's problems are no longer shown.
                    if let Some(files) = self.published.remove(&name) {
                        for f in files {
                            self.publish_file(&f, Vec::new(), None);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn publish_file(
        &self,
        name: &str,
        diagnostics: Vec<lsp_types::Diagnostic>,
        version: Option<i32>,
    ) {
        let Some(uri) = self.docs.uri(name).cloned().or_else(|| name_to_uri(name)) else {
            return;
        };
        self.send(Message::Notification(Notification::new(
            notification::PublishDiagnostics::METHOD.to_owned(),
            PublishDiagnosticsParams {
                uri,
                diagnostics,
                version,
            },
        )));
    }

    fn publish(&mut self, mut d: Done) {
        if !self.docs.is_open(&d.root) {
            return;
        }
        if let Some(a) = d.analysis.take() {
            self.docs.offer_analysis(&d.root, a);
        }
        let mut texts = HashMap::new();
        let c = &d.compilation;
        let mut per_file: BTreeMap<String, Vec<lsp_types::Diagnostic>> = BTreeMap::new();
        for f in c.sources.files() {
            per_file.entry(f.name.clone()).or_default();
        }
        let library = self.docs.is_library(&d.root);
        for diag in &c.diagnostics {
            if library && diag.code == drover_dsl::Code::MissingHeader {
                // A file of groups has no header of its own.
                continue;
            }
            let file = c.sources.get(diag.primary.span.file);
            let converted =
                features::to_lsp_diagnostic(diag, c, &self.options.docs_url, &mut texts);
            per_file
                .entry(file.name.clone())
                .or_default()
                .push(converted);
        }
        let before = self.published.remove(&d.root).unwrap_or_default();
        let mut now = HashSet::new();
        for (name, diags) in per_file {
            // Every file the runbook read: an imported library or a roster that is not open
            // still shows its problems (the editor lists them in its problems view).
            let version = d.versions.get(&name).copied();
            self.publish_file(&name, diags, version);
            now.insert(name);
        }
        for stale in before.difference(&now) {
            let version = d.versions.get(stale).copied();
            self.publish_file(stale, Vec::new(), version);
        }
        self.published.insert(d.root.clone(), now);
        self.docs.set_compilation(&d.root, d.compilation);
    }

    fn request(&mut self, req: Request) -> Response {
        let id = req.id.clone();
        match self.dispatch(req) {
            Ok(v) => Response::new_ok(id, v),
            Err((code, msg)) => Response::new_err(id, code as i32, msg),
        }
    }

    fn dispatch(&mut self, req: Request) -> Result<serde_json::Value, (ErrorCode, String)> {
        fn params<P: serde::de::DeserializeOwned>(req: Request) -> Result<P, (ErrorCode, String)> {
            serde_json::from_value(req.params)
                .map_err(|e| (ErrorCode::InvalidParams, e.to_string()))
        }
        fn json<T: serde::Serialize>(v: T) -> Result<serde_json::Value, (ErrorCode, String)> {
            serde_json::to_value(v).map_err(|e| (ErrorCode::InternalError, e.to_string()))
        }
        let cat = Arc::clone(&self.catalogue);
        let cat = cat.as_ref();
        match req.method.as_str() {
            request::Completion::METHOD => {
                let p: lsp_types::CompletionParams = params(req)?;
                let pos = p.text_document_position;
                json(features::completion(
                    &mut self.docs,
                    cat,
                    &pos.text_document.uri,
                    pos.position,
                ))
            }
            request::HoverRequest::METHOD => {
                let p: lsp_types::HoverParams = params(req)?;
                let pos = p.text_document_position_params;
                json(features::hover(
                    &mut self.docs,
                    cat,
                    &pos.text_document.uri,
                    pos.position,
                ))
            }
            request::GotoDefinition::METHOD => {
                let p: lsp_types::GotoDefinitionParams = params(req)?;
                let pos = p.text_document_position_params;
                json(features::definition(
                    &mut self.docs,
                    &pos.text_document.uri,
                    pos.position,
                ))
            }
            request::References::METHOD => {
                let p: lsp_types::ReferenceParams = params(req)?;
                let pos = p.text_document_position;
                json(features::references(
                    &mut self.docs,
                    &pos.text_document.uri,
                    pos.position,
                    p.context.include_declaration,
                ))
            }
            request::PrepareRenameRequest::METHOD => {
                let p: lsp_types::TextDocumentPositionParams = params(req)?;
                json(features::prepare_rename(
                    &mut self.docs,
                    &p.text_document.uri,
                    p.position,
                ))
            }
            request::Rename::METHOD => {
                let p: lsp_types::RenameParams = params(req)?;
                let pos = p.text_document_position;
                features::rename(
                    &mut self.docs,
                    &pos.text_document.uri,
                    pos.position,
                    &p.new_name,
                )
                .map_err(|m| (ErrorCode::InvalidParams, m))
                .and_then(json)
            }
            request::Formatting::METHOD => {
                let p: lsp_types::DocumentFormattingParams = params(req)?;
                features::format(&self.docs, &p.text_document.uri)
                    .map_err(|m| (ErrorCode::RequestFailed, m))
                    .and_then(json)
            }
            request::DocumentSymbolRequest::METHOD => {
                let p: lsp_types::DocumentSymbolParams = params(req)?;
                json(features::symbols(&mut self.docs, &p.text_document.uri))
            }
            request::CodeActionRequest::METHOD => {
                let p: lsp_types::CodeActionParams = params(req)?;
                json(features::code_actions(&mut self.docs, cat, &p))
            }
            _ => Err((
                ErrorCode::MethodNotFound,
                format!("drover lsp does not handle `{}`", req.method),
            )),
        }
    }
}

/// The protocol's severity of a compiler severity.
pub(crate) fn severity(s: drover_dsl::Severity) -> DiagnosticSeverity {
    match s {
        drover_dsl::Severity::Error => DiagnosticSeverity::ERROR,
        drover_dsl::Severity::Warning => DiagnosticSeverity::WARNING,
    }
}

/// The diagnostic code as the protocol carries it.
pub(crate) fn code(c: drover_dsl::Code) -> NumberOrString {
    NumberOrString::String(c.as_str().to_owned())
}
