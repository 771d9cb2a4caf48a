-- Drover journal, schema version 3: grants every replica sees — sessions (under
-- the SHA-256 of their tokens), login challenges, console links, claims on alert deliveries,
-- passkey registrations (public keys and certificates only).
CREATE TABLE grants (
  kind TEXT NOT NULL, key TEXT NOT NULL, holder TEXT NOT NULL, data TEXT NOT NULL,
  expires_at BIGINT NOT NULL, seq BIGSERIAL NOT NULL, PRIMARY KEY (kind, key)
);
CREATE INDEX grants_by_holder ON grants (kind, holder);
