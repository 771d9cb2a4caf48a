-- Drover journal, schema version 2: a transition in one round trip.
--
-- drover_append does, in the caller's (implicit) transaction, what version 1 did in a dozen
-- statements: check the lease token (compare-and-set), check that the audit chain still ends
-- where the caller built on, extend the lease, move the chain's head, insert the audit records
-- and the events (one transition, or several that happened together: a group commit). It writes nothing unless everything matched, and says why:
--   'ok'      written; at_head/at_count are the chain's new end
--   'fenced'  the lease token is no longer the caller's (another replica took the run over)
--   'moved'   the chain ends elsewhere (another writer appended audit records): at_head and
--             at_count say where; the caller links its records again and retries
--   'norun'   no such run
-- The hashes are computed by the caller (the engine's chain_hash), never here: one definition.

-- Each run counts its transitions, so that numbering one reads no index.
ALTER TABLE runs ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;
UPDATE runs SET event_seq = s.n
  FROM (SELECT run_id, MAX(seq) AS n FROM events GROUP BY run_id) s
  WHERE s.run_id = runs.run_id;

CREATE FUNCTION drover_append(
  p_run TEXT, p_token BIGINT, p_until BIGINT,
  p_head TEXT, p_count BIGINT, p_new_head TEXT, p_records TEXT[], p_hashes TEXT[],
  p_events_lock BIGINT, p_ats BIGINT[], p_events TEXT[], p_actions TEXT[]
) RETURNS TABLE (outcome TEXT, at_head TEXT, at_count BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
  n BIGINT := cardinality(p_records);
  m BIGINT := cardinality(p_events);
  seq BIGINT;
  cur_head TEXT;
  cur_count BIGINT;
  cur_token BIGINT;
BEGIN
  -- The common case in one statement: everything as the caller saw it.
  UPDATE runs r SET lease_until = p_until, audit_head = p_new_head, audit_count = p_count + n,
      event_seq = r.event_seq + m
    WHERE r.run_id = p_run AND r.lease_token = p_token
      AND r.audit_head = p_head AND r.audit_count = p_count
    RETURNING r.event_seq INTO seq;
  IF NOT FOUND THEN
    -- Why not.
    SELECT r.audit_head, r.audit_count, r.lease_token INTO cur_head, cur_count, cur_token
      FROM runs r WHERE r.run_id = p_run FOR UPDATE;
    IF NOT FOUND THEN
      RETURN QUERY SELECT 'norun'::TEXT, NULL::TEXT, NULL::BIGINT;
    ELSIF cur_token <> p_token THEN
      RETURN QUERY SELECT 'fenced'::TEXT, cur_head, cur_count;
    ELSE
      RETURN QUERY SELECT 'moved'::TEXT, cur_head, cur_count;
    END IF;
    RETURN;
  END IF;
  IF n > 0 THEN
    INSERT INTO audit (run_id, seq, record, hash)
      SELECT p_run, p_count + t.o, t.rec, t.h
        FROM unnest(p_records, p_hashes) WITH ORDINALITY AS t(rec, h, o);
  END IF;
  -- Numbered last, under the lock that orders transitions across runs: held for the insert
  -- and the commit only.
  PERFORM pg_advisory_xact_lock(p_events_lock);
  INSERT INTO events (run_id, seq, at, event, actions)
    SELECT p_run, seq - m + t.o, t.at, t.ev, t.act
      FROM unnest(p_ats, p_events, p_actions) WITH ORDINALITY AS t(at, ev, act, o)
      ORDER BY t.o;
  RETURN QUERY SELECT 'ok'::TEXT, p_new_head, p_count + n;
END
$$;
