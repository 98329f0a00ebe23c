//! A database's pg_beacon objects as sorted lines of text, for comparing an upgraded
//! database with a fresh one: the extension's own objects (members, functions with their
//! signatures, volatility, security, settings and ACLs; tables, columns, constraints,
//! indexes, views, comments, dumped configuration) and what pg_beacon generated in the
//! project schemas (trigger functions and their text, triggers, views, default privileges).
//! Objects in schema `tests` exist only in test builds and are left out. Channel names are
//! random per subscription, so they are replaced with their rank in creation order.

use postgres::Client;

const DESCRIBE: &str = r#"
WITH ext AS (SELECT oid, extconfig, extcondition FROM pg_catalog.pg_extension WHERE extname = 'pg_beacon'),
     ns AS (SELECT oid, nspname FROM pg_catalog.pg_namespace
             WHERE nspname = 'beacon' OR nspname IN (SELECT name FROM beacon.project))
SELECT 'member ' || pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_catalog.pg_depend d, ext
 WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
   AND pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) !~ '(^| )tests\.'
   AND pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) <> 'schema tests'
UNION ALL
SELECT 'config ' || c::regclass::text || ' where ' || coalesce(w, '')
  FROM ext, LATERAL unnest(ext.extconfig, ext.extcondition) AS u (c, w)
UNION ALL
SELECT 'schema ' || n.nspname || ' owner=' || pg_catalog.pg_get_userbyid(s.nspowner)
       || ' acl=' || coalesce(s.nspacl::text, '')
  FROM ns n JOIN pg_catalog.pg_namespace s ON s.oid = n.oid
UNION ALL
SELECT 'function ' || n.nspname || '.' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid)
       || ') returns ' || pg_catalog.pg_get_function_result(p.oid)
       || ' kind=' || p.prokind::text || ' volatile=' || p.provolatile::text || ' strict=' || p.proisstrict
       || ' secdef=' || p.prosecdef || ' parallel=' || p.proparallel::text || ' lang=' || l.lanname
       || ' owner=' || pg_catalog.pg_get_userbyid(p.proowner)
       || ' config=' || coalesce(p.proconfig::text, '') || ' acl=' || coalesce(p.proacl::text, '')
       || ' defaults=' || coalesce(pg_catalog.pg_get_expr(p.proargdefaults, 0), '')
       || ' comment=' || coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '')
       || ' src=' || p.prosrc || ' bin=' || coalesce(p.probin, '')
  FROM pg_catalog.pg_proc p JOIN ns n ON n.oid = p.pronamespace
  JOIN pg_catalog.pg_language l ON l.oid = p.prolang
UNION ALL
SELECT 'relation ' || n.nspname || '.' || c.relname || ' kind=' || c.relkind::text
       || ' persistence=' || c.relpersistence::text || ' owner=' || pg_catalog.pg_get_userbyid(c.relowner)
       || ' acl=' || coalesce(c.relacl::text, '') || ' options=' || coalesce(c.reloptions::text, '')
       || ' comment=' || coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '')
       || CASE WHEN c.relkind IN ('v', 'm') THEN ' def=' || pg_catalog.pg_get_viewdef(c.oid) ELSE '' END
       || CASE WHEN c.relkind = 'i' THEN ' def=' || pg_catalog.pg_get_indexdef(c.oid) ELSE '' END
  FROM pg_catalog.pg_class c JOIN ns n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'i', 'S')
UNION ALL
SELECT 'column ' || n.nspname || '.' || c.relname || ' #'
       || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum) || ' ' || a.attname || ' '
       || pg_catalog.format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull
       || ' identity=' || a.attidentity::text || ' generated=' || a.attgenerated::text
       || ' default=' || coalesce(pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '')
       || ' collation=' || coalesce(co.collname, '')
       || ' acl=' || coalesce(a.attacl::text, '')
       || ' comment=' || coalesce(pg_catalog.col_description(c.oid, a.attnum), '')
  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN ns n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
  LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 100
 WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm')
UNION ALL
SELECT 'constraint ' || n.nspname || '.' || c.relname || ' ' || k.conname || ' '
       || pg_catalog.pg_get_constraintdef(k.oid)
  FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
  JOIN ns n ON n.oid = c.relnamespace
UNION ALL
SELECT 'trigger ' || pg_catalog.pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
  FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
  JOIN ns n ON n.oid = c.relnamespace
 WHERE NOT t.tgisinternal
UNION ALL
SELECT 'default acl ' || coalesce(n.nspname, '') || ' ' || pg_catalog.pg_get_userbyid(d.defaclrole)
       || ' ' || d.defaclobjtype::text || ' ' || d.defaclacl::text
  FROM pg_catalog.pg_default_acl d JOIN ns n ON n.oid = d.defaclnamespace
UNION ALL
SELECT 'event trigger ' || e.evtname || ' on ' || e.evtevent
       || ' function=' || e.evtfoid::pg_catalog.regprocedure::text
       || ' tags=' || coalesce(e.evttags::text, '') || ' enabled=' || e.evtenabled::text
       || ' owner=' || pg_catalog.pg_get_userbyid(e.evtowner)
  FROM pg_catalog.pg_event_trigger e
UNION ALL
SELECT 'generated ' || kind || ' ' || project || '.' || name || ' ' || version
  FROM beacon.generated_object
"#;

/// The sorted description of `client`'s database (see the module comment).
pub fn describe(client: &mut Client) -> Vec<String> {
    let channels: Vec<String> = client
        .query(
            "SELECT channel FROM beacon.subscription ORDER BY created_at, channel",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut lines: Vec<String> = client
        .query(DESCRIBE, &[])
        .unwrap()
        .iter()
        .map(|row| {
            let mut line: String = row.get(0);
            for (rank, channel) in channels.iter().enumerate() {
                line = line.replace(channel, &format!("<channel {rank}>"));
            }
            line
        })
        .collect();
    lines.sort();
    lines
}

/// Lines only in `left` and lines only in `right`, for a readable failure.
pub fn difference(left: &[String], right: &[String]) -> (Vec<String>, Vec<String>) {
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        a.iter().filter(|line| !b.contains(line)).cloned().collect()
    };
    (only(left, right), only(right, left))
}
