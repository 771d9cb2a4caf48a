-- Drover journal, schema version 1: the same tables as the SQLite journal, with
-- BIGSERIAL numbers where SQLite used rowids.
CREATE TABLE runs (
  run_id TEXT PRIMARY KEY, runbook TEXT NOT NULL, mode TEXT NOT NULL,
  initiator TEXT NOT NULL, declared_at BIGINT NOT NULL, created_at BIGINT NOT NULL,
  status TEXT NOT NULL, record TEXT, audit_head TEXT NOT NULL, audit_count BIGINT NOT NULL,
  lease_holder TEXT, lease_token BIGINT NOT NULL DEFAULT 0, lease_until BIGINT NOT NULL DEFAULT 0,
  created_seq BIGSERIAL NOT NULL
);
CREATE INDEX runs_by_status ON runs (status);
CREATE INDEX runs_by_runbook ON runs (runbook, created_at);
CREATE TABLE plans (run_id TEXT PRIMARY KEY, plan TEXT NOT NULL);
CREATE TABLE events (
  id BIGSERIAL NOT NULL UNIQUE,
  run_id TEXT NOT NULL, seq BIGINT NOT NULL, at BIGINT NOT NULL, event TEXT NOT NULL, actions TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)
);
CREATE TABLE approvals (
  id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, step TEXT NOT NULL,
  operator TEXT NOT NULL, roles TEXT NOT NULL, at BIGINT NOT NULL,
  decision TEXT NOT NULL DEFAULT 'approve', reason TEXT
);
CREATE INDEX approvals_by_run ON approvals (run_id, id);
CREATE TABLE statements (
  id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, approval_id BIGINT,
  statement TEXT NOT NULL, signature TEXT NOT NULL, at BIGINT NOT NULL
);
CREATE INDEX statements_by_run ON statements (run_id, approval_id);
CREATE TABLE anchors (run_id TEXT PRIMARY KEY, location TEXT NOT NULL);
CREATE TABLE totp_used (
  operator TEXT NOT NULL, counter BIGINT NOT NULL, at BIGINT NOT NULL,
  PRIMARY KEY (operator, counter)
);
CREATE TABLE sources (
  run_id TEXT NOT NULL, seq BIGINT NOT NULL, name TEXT NOT NULL, text TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)
);
CREATE TABLE simulations (
  id BIGSERIAL PRIMARY KEY, runbook TEXT NOT NULL, source_sha256 TEXT NOT NULL,
  mode TEXT NOT NULL, at BIGINT NOT NULL, summary TEXT NOT NULL
);
CREATE TABLE progress (
  run_id TEXT NOT NULL, step TEXT NOT NULL, text TEXT NOT NULL, at BIGINT NOT NULL,
  PRIMARY KEY (run_id, step)
);
CREATE TABLE claims (run_id TEXT NOT NULL, claim TEXT NOT NULL, PRIMARY KEY (run_id, claim));
CREATE INDEX claims_by_name ON claims (claim);
CREATE TABLE logs (log_id TEXT PRIMARY KEY, audit_head TEXT NOT NULL, audit_count BIGINT NOT NULL);
CREATE TABLE fires (
  runbook TEXT NOT NULL, schedule TEXT NOT NULL, slot_ms BIGINT NOT NULL,
  decision TEXT NOT NULL, state TEXT NOT NULL, run_id TEXT, count BIGINT NOT NULL,
  detail TEXT, decided_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
  PRIMARY KEY (runbook, schedule, slot_ms, decision)
);
CREATE TABLE alerts (
  key TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, alert TEXT NOT NULL,
  first_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, resolved_at BIGINT
);
CREATE TABLE alert_sinks (
  key TEXT NOT NULL, sink TEXT NOT NULL, delivered TEXT NOT NULL, attempts BIGINT NOT NULL,
  last_error TEXT, gave_up TEXT, updated_at BIGINT NOT NULL, PRIMARY KEY (key, sink)
);
CREATE TABLE audit (
  run_id TEXT NOT NULL, seq BIGINT NOT NULL, record TEXT NOT NULL, hash TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)
);
