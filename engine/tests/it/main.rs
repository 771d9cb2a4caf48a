//! Engine integration tests: the audit chain against every single-record tampering of a 100-record
//! log, and the journal's lease.

mod backend;
mod driver;

use drover_engine::audit::{AuditRecord, GENESIS, verify};
use drover_engine::journal::{JournalError, RunRow};
use drover_engine::scheduler::Event;

fn run_row(id: &str) -> RunRow {
    RunRow {
        run_id: id.into(),
        runbook: "t".into(),
        plan: "{}".into(),
        mode: drover_dsl::Mode::Drill,
        initiator: "alice".into(),
        declared_at: 0,
        created_at: 0,
        status: drover_engine::journal::RunStatus::Running,
        record: None,
        audit_head: GENESIS.into(),
        audit_count: 0,
    }
}

fn record(i: u64) -> AuditRecord {
    AuditRecord {
        seq: 0,
        ts: format!("2026-11-23T03:{:02}:{:02}Z", i / 60, i % 60),
        run_id: "r".into(),
        operator: if i.is_multiple_of(7) {
            "bob".into()
        } else {
            "alice".into()
        },
        step: Some(format!("s{i}")),
        action: "backup.rehydrate".into(),
        backup_id: Some(format!("{i:032x}")),
        key_id: Some("file:sha256:abcd".into()),
        outcome: "ok".into(),
        error: None,
        prev: String::new(),
        signed: None,
    }
}

/// A journal holding a 100-record audit log for run `r`, and the stored rows and head.
fn hundred() -> (tempfile::TempDir, Vec<(u64, String, String)>, String, u64) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut j = crate::backend::journal(dir.path());
    j.create_run(&run_row("r"), &Default::default())
        .expect("run");
    let lease = j.acquire("r", "alice@h pid 1", 0, 30_000).expect("lease");
    for chunk in (1..=100u64).collect::<Vec<_>>().chunks(10) {
        let recs: Vec<AuditRecord> = chunk.iter().map(|&i| record(i)).collect();
        j.append(&lease, 1, 30_000, &Event::Started, &[], &recs)
            .expect("append");
    }
    let rows = j.audit("r").expect("rows");
    let row = j.run("r").expect("row");
    assert_eq!(rows.len(), 100);
    (dir, rows, row.audit_head, row.audit_count)
}

#[test]
fn the_untouched_log_verifies() {
    let (_d, rows, head, count) = hundred();
    assert_eq!(verify("r", &rows, &head, count), Ok(100));
}

#[test]
fn every_single_record_edit_is_detected_at_that_record() {
    let (_d, rows, head, count) = hundred();
    for k in 0..rows.len() {
        for (field, from, to) in [
            ("outcome", "\"outcome\":\"ok\"", "\"outcome\":\"failed\""),
            ("operator", "\"operator\":\"", "\"operator\":\"x"),
        ] {
            let mut t = rows.clone();
            t[k].1 = t[k].1.replacen(from, to, 1);
            let f = verify("r", &t, &head, count).expect_err("edit detected");
            assert_eq!(f.seq, k as u64 + 1, "{field} edit of record {}", k + 1);
        }
        // An edit whose stored hash is recomputed too is caught by the next record's link (or the head).
        let mut t = rows.clone();
        t[k].1 = t[k]
            .1
            .replacen("\"outcome\":\"ok\"", "\"outcome\":\"failed\"", 1);
        let prev = if k == 0 {
            GENESIS.to_owned()
        } else {
            t[k - 1].2.clone()
        };
        t[k].2 = drover_engine::audit::chain_hash(&prev, &t[k].1);
        let f = verify("r", &t, &head, count).expect_err("rehashed edit detected");
        assert_eq!(f.seq, k as u64 + 2, "rehashed edit of record {}", k + 1);
    }
}

#[test]
fn every_deletion_insertion_and_swap_is_detected() {
    let (_d, rows, head, count) = hundred();
    for k in 0..rows.len() {
        let mut t = rows.clone();
        t.remove(k);
        let f = verify("r", &t, &head, count).expect_err("deletion detected");
        assert_eq!(f.seq, k as u64 + 1, "deletion of record {}", k + 1);

        let mut t = rows.clone();
        let forged = (k as u64 + 1, rows[k].1.clone(), rows[k].2.clone());
        t.insert(k, forged);
        assert!(
            verify("r", &t, &head, count).is_err(),
            "insertion before record {}",
            k + 1
        );

        if k + 1 < rows.len() {
            let mut t = rows.clone();
            t.swap(k, k + 1);
            let f = verify("r", &t, &head, count).expect_err("swap detected");
            assert_eq!(
                f.seq,
                k as u64 + 1,
                "swap of records {} and {}",
                k + 1,
                k + 2
            );
            // Swapped contents with renumbered positions.
            let mut t = rows.clone();
            let (a, b) = (t[k].1.clone(), t[k + 1].1.clone());
            t[k].1 = b;
            t[k + 1].1 = a;
            assert!(
                verify("r", &t, &head, count).is_err(),
                "content swap at {}",
                k + 1
            );
        }
    }
}

#[test]
fn every_tail_truncation_is_detected_against_the_head() {
    let (_d, rows, head, count) = hundred();
    for keep in 0..rows.len() {
        let f = verify("r", &rows[..keep], &head, count).expect_err("truncation detected");
        assert_eq!(f.seq, keep as u64 + 1, "truncated to {keep}");
    }
}

#[test]
fn a_second_holder_is_refused_and_a_fenced_writer_cannot_append() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut j = crate::backend::journal(dir.path());
    j.create_run(&run_row("r"), &Default::default())
        .expect("run");
    let me = format!(
        "alice@{} pid {}",
        drover_engine::journal::hostname(),
        std::process::id()
    );
    let first = j.acquire("r", &me, 1_000, 30_000).expect("lease");
    let again = j.acquire("r", "bob@elsewhere pid 7", 2_000, 30_000);
    assert!(
        matches!(again, Err(JournalError::LeaseHeld { ref holder, .. }) if *holder == me),
        "{again:?}"
    );
    // After expiry a new holder takes over, and the old one is fenced out.
    let second = j
        .acquire("r", "bob@elsewhere pid 7", 40_000, 30_000)
        .expect("takeover after expiry");
    assert!(second.token > first.token);
    let stale = j.append(&first, 41_000, 30_000, &Event::Started, &[], &[]);
    assert!(matches!(stale, Err(JournalError::Fenced(_))), "{stale:?}");
    j.append(&second, 41_000, 30_000, &Event::Started, &[], &[])
        .expect("the holder appends");
}

#[test]
fn appends_interleaved_with_another_writers_audit_records_keep_one_chain() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut driver = crate::backend::journal(dir.path());
    // A second handle on the same journal: an approval taken by another process (or replica).
    let mut other = crate::backend::journal(dir.path());
    driver
        .create_run(&run_row("r"), &Default::default())
        .expect("run");
    let lease = driver
        .acquire("r", "alice@h pid 1", 0, 30_000)
        .expect("lease");
    let mut n = 0u64;
    for round in 0..5u64 {
        let recs: Vec<AuditRecord> = (0..3).map(|k| record(round * 10 + k)).collect();
        driver
            .append(&lease, 1, 30_000, &Event::Started, &[], &recs)
            .expect("append");
        // An append with no audit record in between, too.
        driver
            .append(&lease, 2, 30_000, &Event::Started, &[], &[])
            .expect("append");
        other
            .append_audit("r", &[record(round * 10 + 5), record(round * 10 + 6)])
            .expect("another writer's records");
        n += 5;
    }
    driver
        .append(&lease, 3, 30_000, &Event::Started, &[], &[record(99)])
        .expect("an append after the chain moved under it");
    n += 1;
    let rows = driver.audit("r").expect("rows");
    let row = driver.run("r").expect("row");
    assert_eq!(row.audit_count, n);
    assert_eq!(verify("r", &rows, &row.audit_head, row.audit_count), Ok(n));
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    assert_eq!(driver.events("r").expect("events").len(), 11);
}

#[test]
fn grants_are_claimed_once_extended_by_their_holder_taken_once_and_lapse() {
    use drover_engine::journal::Grant;
    let dir = tempfile::tempdir().expect("tmp");
    let mut a = crate::backend::journal(dir.path());
    let mut b = crate::backend::journal(dir.path());
    let g = |holder: &str, until: u64| Grant {
        holder: holder.into(),
        data: String::new(),
        expires_at: until,
    };
    // A claim: the first holder gets it, another does not while it is live.
    assert_eq!(
        a.put_grant("claim", "k", &g("r1", 1_000), 0).ok(),
        Some(true)
    );
    assert_eq!(
        b.put_grant("claim", "k", &g("r2", 1_000), 10).ok(),
        Some(false)
    );
    assert_eq!(
        b.grant("claim", "k", 10).expect("read").map(|g| g.holder),
        Some("r1".into())
    );
    // Its holder extends it; once lapsed, another takes it.
    assert_eq!(
        a.put_grant("claim", "k", &g("r1", 2_000), 500).ok(),
        Some(true)
    );
    assert_eq!(
        b.put_grant("claim", "k", &g("r2", 3_000), 1_500).ok(),
        Some(false)
    );
    assert_eq!(b.grant("claim", "k", 2_000).expect("read"), None);
    assert_eq!(
        b.put_grant("claim", "k", &g("r2", 3_000), 2_000).ok(),
        Some(true)
    );
    // A one-time code is taken once, by one of two callers; a lapsed one not at all.
    a.put_grant("link", "c", &g("alice", 5_000), 0)
        .expect("link");
    assert_eq!(
        b.take_grant("link", "c", 10)
            .expect("take")
            .map(|g| g.holder),
        Some("alice".into())
    );
    assert_eq!(a.take_grant("link", "c", 10).expect("take again"), None);
    a.put_grant("link", "old", &g("alice", 50), 0)
        .expect("link");
    assert_eq!(a.take_grant("link", "old", 60).expect("lapsed"), None);
    // Revoking one holder's grants of a kind leaves the rest.
    for (k, who) in [("s1", "alice"), ("s2", "alice"), ("s3", "bob")] {
        a.put_grant("session", k, &g(who, 9_000), 0)
            .expect("session");
    }
    assert_eq!(
        b.grants_of("session", "alice", 1)
            .expect("list")
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>(),
        ["s1", "s2"]
    );
    assert_eq!(b.revoke_grants("session", "alice").ok(), Some(2));
    assert_eq!(a.grant("session", "s1", 1).expect("read"), None);
    assert!(a.grant("session", "s3", 1).expect("read").is_some());
}

#[test]
fn a_dead_local_holder_does_not_block_resume() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut j = crate::backend::journal(dir.path());
    j.create_run(&run_row("r"), &Default::default())
        .expect("run");
    // A pid that cannot exist on this host.
    let dead = format!(
        "alice@{} pid 4294967295",
        drover_engine::journal::hostname()
    );
    j.acquire("r", &dead, 1_000, 30_000).expect("lease");
    j.acquire("r", "carol@here pid 1", 2_000, 30_000)
        .expect("a crashed holder's lease is taken over");
}
