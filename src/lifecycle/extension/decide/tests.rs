use super::*;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("p{i}")).collect()
}

fn every_statement() -> [Dropping; 3] {
    [
        Dropping::Extension,
        Dropping::Schema("beacon".into()),
        Dropping::OwnedBy("postgres".into()),
    ]
}

#[test]
fn without_projects_postgresql_goes_on_alone() {
    for dropping in every_statement() {
        for cascade in [false, true] {
            assert_eq!(decide(&dropping, cascade, &[]), Decision::Pass);
        }
    }
}

#[test]
fn cascade_drops_every_project_in_order() {
    for dropping in every_statement() {
        for n in [1, 3, 25] {
            assert_eq!(
                decide(&dropping, true, &names(n)),
                Decision::DropProjects(names(n))
            );
        }
    }
}

#[test]
fn restrict_refuses_naming_the_projects_and_how_to_drop_them() {
    for dropping in every_statement() {
        for n in [1, 2, 10] {
            let Decision::Refuse { message, hint } = decide(&dropping, false, &names(n)) else {
                panic!("{dropping:?} with {n} projects must be refused");
            };
            assert!(message.contains("pg_beacon"), "{message}");
            for p in names(n) {
                assert!(message.contains(&format!("\"{p}\"")), "{message}");
                assert!(
                    hint.contains(&format!("SELECT beacon.drop_project('{p}');")),
                    "{hint}"
                );
            }
            assert!(hint.contains("CASCADE"), "{hint}");
            assert!(!message.contains("more"), "{message}");
        }
    }
}

#[test]
fn the_statement_is_named_as_written() {
    let projects = names(1);
    let refused = |d: Dropping| match decide(&d, false, &projects) {
        Decision::Refuse { message, hint } => (message, hint),
        other => panic!("{other:?}"),
    };
    let (message, hint) = refused(Dropping::Extension);
    assert!(message.starts_with("cannot drop extension pg_beacon because it has a project: "));
    assert!(hint.contains("DROP EXTENSION pg_beacon CASCADE"), "{hint}");
    let (message, hint) = refused(Dropping::Schema("beacon".into()));
    assert!(
        message.starts_with("cannot drop schema \"beacon\""),
        "{message}"
    );
    assert!(hint.contains("DROP SCHEMA \"beacon\" CASCADE"), "{hint}");
    let (message, hint) = refused(Dropping::OwnedBy("ext owner".into()));
    assert!(message.contains("owned by \"ext owner\""), "{message}");
    assert!(
        hint.contains("DROP OWNED BY \"ext owner\" CASCADE"),
        "{hint}"
    );
}

#[test]
fn long_lists_are_cut() {
    let projects = names(25);
    let Decision::Refuse { message, hint } = decide(&Dropping::Extension, false, &projects) else {
        panic!("refused");
    };
    assert!(message.contains("\"p9\""), "{message}");
    assert!(!message.contains("\"p10\""), "{message}");
    assert!(message.ends_with("and 15 more"), "{message}");
    assert!(!hint.contains("'p10'"), "{hint}");
    assert!(hint.contains("beacon.projects"), "{hint}");
}

#[test]
fn names_are_quoted_as_literals_in_the_hint() {
    // catalog rows are whatever a restore or a superuser put there
    let projects = vec!["o'brien".to_string()];
    let Decision::Refuse { hint, .. } = decide(&Dropping::Extension, false, &projects) else {
        panic!("refused");
    };
    assert!(hint.contains("beacon.drop_project('o''brien')"), "{hint}");
}
