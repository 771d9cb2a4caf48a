//! The Drover language server: what the compiler knows, where people type.
//!
//! `drover lsp` speaks the Language Server Protocol over stdio ([`run_stdio`]). It publishes the
//! compiler's diagnostics (the same codes and messages as `drover check`, for a file and the
//! files that import it), completes action names, inputs, step ids, outputs, parameters, fixed-set
//! words, modes and roles, shows hovers, navigates steps, parameters, groups and imports, renames
//! steps, formats with the compiler's formatter, lists document symbols and offers quick fixes.
//!
//! Cost model: completion reads the text of the one top-level item around the cursor
//! ([`context`]) plus the last index of the file ([`index`]), never the whole file, so it answers
//! at once after every keystroke; the full compilation (diagnostics, the plan for hovers) runs on a
//! worker thread, debounced, and only its latest result is published.

pub mod context;
mod features;
pub mod index;
mod server;
pub mod text;

pub use server::{Options, run, run_stdio};
