-- Event stream subscriptions. A channel name is random: PostgreSQL lets any role LISTEN
-- on any channel, so an unguessable name is what keeps a stream to those who were given it.

CREATE TABLE beacon.subscription (
    channel       text PRIMARY KEY,
    project       text NOT NULL,
    collection    text NOT NULL,
    -- as given, and as checked and rewritten (what the trigger evaluates)
    filter        text,
    condition     text,
    temporary     boolean NOT NULL,
    owner_role    text NOT NULL,
    -- the session a temporary subscription belongs to: a pid alone is reused
    owner_pid     integer,
    owner_started timestamptz,
    events_sent   bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (project, collection) REFERENCES beacon.collection (project, name) ON DELETE CASCADE
);
CREATE INDEX ON beacon.subscription (project, collection);
-- a temporary subscription does not outlive its session, so it is not dumped
SELECT pg_catalog.pg_extension_config_dump('beacon.subscription', 'WHERE NOT temporary');
REVOKE ALL ON beacon.subscription FROM PUBLIC;

-- Counts of sent events, appended by the stream triggers: concurrent writers would
-- queue on a counter row, but never on inserts. The worker folds them into events_sent.
CREATE UNLOGGED TABLE beacon.subscription_sent (
    channel text NOT NULL,
    sent    bigint NOT NULL
);
REVOKE ALL ON beacon.subscription_sent FROM PUBLIC;

-- Events a subscription's filter failed on (an error evaluating it): they are not sent on
-- that subscription, and the writer's insert goes on (see src/stream/trigger.rs).
CREATE UNLOGGED TABLE beacon.subscription_failure (
    channel text NOT NULL,
    failed  bigint NOT NULL,
    error   text,
    at      timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON beacon.subscription_failure FROM PUBLIC;

CREATE VIEW beacon.subscriptions WITH (security_barrier) AS
SELECT s.project, s.collection, s.filter, s.channel, s.temporary,
       s.owner_role, s.owner_pid AS owner_session,
       s.events_sent + coalesce((SELECT sum(x.sent) FROM beacon.subscription_sent x
                            WHERE x.channel = s.channel), 0)::bigint AS events_sent,
       s.created_at,
       coalesce((SELECT sum(f.failed) FROM beacon.subscription_failure f
                  WHERE f.channel = s.channel), 0)::bigint AS events_failed,
       (SELECT f.error FROM beacon.subscription_failure f
         WHERE f.channel = s.channel ORDER BY f.at DESC LIMIT 1) AS last_error
  FROM beacon.subscription s
 -- channel names are the secret that guards a stream: only readers see them
 WHERE pg_catalog.pg_has_role(format('beacon_%s_read', s.project), 'USAGE');
GRANT SELECT ON beacon.subscriptions TO PUBLIC;
COMMENT ON VIEW beacon.subscriptions IS
  'Event stream subscriptions of the projects the current role may read: filter, channel, owning session, events sent, events its filter failed on and the last such error.';
