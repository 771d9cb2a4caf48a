//! The mode a run executes in: a closed set shared by the compiler, the engine and the adapters.

use serde::{Deserialize, Serialize};

/// The mode a run executes in. Steps can be limited to some modes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A rehearsal in an isolated environment: never touches production (the default: the safe
    /// one).
    #[default]
    Drill,
    /// A real failover to the recovery site.
    Failover,
    /// The return to the primary site.
    Failback,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 3] = [Mode::Drill, Mode::Failover, Mode::Failback];

    /// The mode's name as written.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Drill => "drill",
            Mode::Failover => "failover",
            Mode::Failback => "failback",
        }
    }

    /// Parses a mode name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Mode> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The mode's bit in the compiler's `ModeSet`.
    #[must_use]
    pub fn bit(self) -> u8 {
        match self {
            Mode::Drill => 1,
            Mode::Failover => 2,
            Mode::Failback => 4,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
