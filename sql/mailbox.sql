-- Mailbox channel names. PostgreSQL does not control who may LISTEN on a channel, so a
-- channel's name is its only protection: it is derived from a per-project secret that
-- only the extension owner can read, and handed out by beacon.mailbox_channel to roles
-- with read access to the project.

CREATE TABLE beacon.channel_secret (
    project text PRIMARY KEY REFERENCES beacon.project (name) ON DELETE CASCADE,
    secret  text NOT NULL
);
-- dumped so that channel names survive a dump and restore
SELECT pg_catalog.pg_extension_config_dump('beacon.channel_secret', '');
REVOKE ALL ON beacon.channel_secret FROM PUBLIC;

-- 'beacon_mb_' and 48 hex digits: a valid, unquoted identifier whatever the user id is.
-- A NULL user_id names the project's all-messages channel.
CREATE FUNCTION beacon._mailbox_channel(project text, user_id text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
    SELECT 'beacon_mb_' || left(encode(sha256(convert_to(
               s.secret || ':' || CASE WHEN user_id IS NULL THEN '*' ELSE 'u:' || user_id END,
               'UTF8')), 'hex'), 48)
      FROM beacon.channel_secret s
     WHERE s.project = _mailbox_channel.project
$$;
REVOKE ALL ON FUNCTION beacon._mailbox_channel(text, text) FROM PUBLIC;
