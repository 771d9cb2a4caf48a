//! Tabletop exercises run live: the plan journaled as a simulated run (the report says so on
//! every page; history keeps it apart; measurements ignore it), driven by the engine on a
//! [`TabletopClock`] the facilitator can pause and speed up, every action simulated — nothing
//! outside is touched — and approvals made and signed by the participants themselves. What the
//! scenario injects, and what the facilitator adds, is kept in the exercise's own audit log
//! (`@tabletop:RUN`).

use crate::runs::{Compiled, Start};
use crate::{OpsError, Workspace};
use drover_engine::clock::Clock;
use drover_engine::driver::{Adapters, Driver, Observer};
use drover_simulator::Scenario;
use drover_simulator::live::{SimulatedAdapter, TabletopClock};
use std::sync::Arc;

/// The audit log of a tabletop's injects and of its facilitator's controls.
#[must_use]
pub fn tabletop_log(run_id: &str) -> String {
    format!("@tabletop:{run_id}")
}

/// A tabletop exercise being driven.
#[derive(Debug, Clone)]
pub struct Tabletop {
    /// Its virtual time (pause, speed).
    pub clock: TabletopClock,
    /// The scenario's injects: virtual ms after the declaration, and what happens.
    pub injects: Vec<(u64, String)>,
    /// Virtual ms of the declaration.
    pub origin: u64,
    /// Who started it (and controls it).
    pub facilitator: String,
}

/// An inject as shown: when (virtual), what, and who added it (`scenario` for the scenario's).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inject {
    /// Virtual time (RFC 3339).
    pub at: String,
    /// What happens.
    pub text: String,
    /// `scenario`, or the facilitator who added it.
    pub by: String,
}

/// What a tabletop starts with, kept in its log so that a restarted server resumes it alike.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Setup {
    scenario: String,
    speed: f64,
    seed: u64,
}

fn simulated(
    plan: &drover_dsl::Plan,
    mode: drover_dsl::Mode,
    scenario: &Scenario,
    origin: u64,
    seed: u64,
) -> (Adapters, Vec<(u64, String)>) {
    use drover_schema::Catalogue as _;
    let prep = Arc::new(drover_simulator::Prepared::new(plan, mode, scenario));
    let catalogue = drover_adapters::builtin_catalogue();
    let mut schemas: Vec<drover_schema::ActionSchema> = Vec::new();
    for s in plan
        .graph
        .node_weights()
        .filter_map(drover_dsl::PlanNode::as_step)
    {
        if let Some(schema) = catalogue.lookup(&s.action)
            && !schemas.iter().any(|x| x.name == schema.name)
        {
            schemas.push(schema.clone());
        }
    }
    let injects = prep.injects().to_vec();
    let adapter = SimulatedAdapter::new(prep, schemas, origin, seed);
    (Adapters::default().with(Arc::new(adapter)), injects)
}

impl Workspace {
    /// Starts a tabletop of `compiled` under `scenario` (its TOML text; empty: none) at `speed`
    /// virtual seconds per real second: journaled as a simulated run, every action simulated.
    ///
    /// # Errors
    /// The scenario does not parse; as [`Workspace::start`].
    pub async fn start_tabletop(
        &self,
        mut compiled: Compiled,
        mut start: Start,
        scenario: &str,
        speed: f64,
        observer: Arc<dyn Observer>,
    ) -> Result<(Driver, Tabletop), OpsError> {
        let parsed =
            Scenario::parse(scenario).map_err(|e| OpsError::Usage(format!("the scenario: {e}")))?;
        compiled.plan.runbook.simulated = true;
        let clock = TabletopClock::system(speed);
        let origin = clock.now_ms();
        start.declared_at = origin;
        // A tabletop touches nothing: it never conflicts with the runs that do.
        start.concurrent = Some("tabletop exercise: simulated, touches nothing".into());
        let seed = origin;
        let (adapters, injects) = simulated(&compiled.plan, compiled.mode, &parsed, origin, seed);
        let facilitator = start.initiator.clone();
        let run_id = start.run_id.clone();
        let driver = self
            .start(compiled, start, Arc::new(clock.clone()), adapters, observer)
            .await?;
        let facilitator = driver_initiator(self, &run_id).unwrap_or(facilitator);
        let setup = Setup {
            scenario: scenario.to_owned(),
            speed,
            seed,
        };
        self.tabletop_record(
            &run_id,
            &facilitator,
            "tabletop.start",
            &serde_json::to_string(&setup).unwrap_or_default(),
            origin,
        )?;
        Ok((
            driver,
            Tabletop {
                clock,
                injects,
                origin,
                facilitator,
            },
        ))
    }

    /// Whether `run_id` is a tabletop exercise.
    ///
    /// # Errors
    /// No such run.
    pub fn is_tabletop(&self, run_id: &str) -> Result<bool, OpsError> {
        let j = self.journal_read()?;
        let run_id = self.resolve(&*j, run_id)?;
        Ok(j.run(&run_id)?.simulated())
    }

    /// Reopens a tabletop after an interruption (a restarted server), simulated as it started.
    ///
    /// # Errors
    /// As [`Workspace::reopen`].
    pub async fn reopen_tabletop(
        &self,
        run_id: &str,
        operator: &str,
        observer: Arc<dyn Observer>,
    ) -> Result<(Driver, Tabletop), OpsError> {
        let (run_id, plan) = self.run_plan(run_id)?;
        let j = self.journal_read()?;
        let row = j.run(&run_id)?;
        let setup: Setup = j
            .audit(&tabletop_log(&run_id))?
            .into_iter()
            .find_map(|(_, rec, _)| {
                let v: serde_json::Value = serde_json::from_str(&rec).ok()?;
                (v["action"] == "tabletop.start")
                    .then(|| serde_json::from_str(v["error"].as_str()?).ok())
                    .flatten()
            })
            .unwrap_or(Setup {
                scenario: String::new(),
                speed: 60.0,
                seed: 1,
            });
        let parsed = Scenario::parse(&setup.scenario).unwrap_or_default();
        let clock = TabletopClock::system(setup.speed);
        let (adapters, injects) = simulated(&plan, row.mode, &parsed, row.declared_at, setup.seed);
        let driver = self
            .reopen_with(
                &run_id,
                operator,
                false,
                Arc::new(clock.clone()),
                adapters,
                observer,
            )
            .await?;
        Ok((
            driver,
            Tabletop {
                clock,
                injects,
                origin: row.declared_at,
                facilitator: row.initiator,
            },
        ))
    }

    /// Writes a tabletop event (an inject, a facilitator's control) to its log.
    ///
    /// # Errors
    /// Journal errors.
    pub fn tabletop_record(
        &self,
        run_id: &str,
        operator: &str,
        action: &str,
        detail: &str,
        now: u64,
    ) -> Result<(), OpsError> {
        let mut j = self.journal()?;
        drover_engine::oplog::record(
            &mut *j,
            &tabletop_log(run_id),
            &drover_engine::oplog::Operation {
                action,
                operator,
                subject: Some(run_id),
                backup_id: None,
                key_id: None,
                outcome: "ok",
                detail: Some(detail),
                signed: None,
            },
            now,
            None,
        )
        .map_err(|e| OpsError::Failed(e.to_string()))?;
        Ok(())
    }

    /// The injects of a tabletop so far, in order.
    ///
    /// # Errors
    /// Journal errors.
    pub fn injects(&self, run_id: &str) -> Result<Vec<Inject>, OpsError> {
        let j = self.journal_read()?;
        Ok(j.audit(&tabletop_log(run_id))?
            .into_iter()
            .filter_map(|(_, rec, _)| {
                let v: serde_json::Value = serde_json::from_str(&rec).ok()?;
                (v["action"] == "tabletop.inject").then(|| Inject {
                    at: v["ts"].as_str().unwrap_or_default().to_owned(),
                    text: v["error"].as_str().unwrap_or_default().to_owned(),
                    by: v["operator"].as_str().unwrap_or_default().to_owned(),
                })
            })
            .collect())
    }
}

/// The initiator the engine journaled (the signer of the start statement, with a roster).
fn driver_initiator(ws: &Workspace, run_id: &str) -> Option<String> {
    ws.journal_read()
        .ok()?
        .run(run_id)
        .ok()
        .map(|r| r.initiator)
}
