//! The catalogue against both of its databases: SQLite in a temporary directory, and the
//! PostgreSQL server `FLUMEN_TEST_POSTGRES_URL` names (`scripts/test.sh` starts one from
//! Debian's packages; CI requires it). Tests on PostgreSQL share its database, so each works
//! in a tenant and with ids of its own.

use std::collections::HashMap;
use std::sync::Arc;

use flumen_deploy::{
    Catalogue, CatalogueError, Deployment, EventCounts, ListFilter, NewDeployment, PageCursor,
    Status,
};

const POSTGRES_URL: &str = "FLUMEN_TEST_POSTGRES_URL";

/// Each database to test, with a guard keeping the SQLite directory.
fn databases() -> Vec<(Catalogue, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("deployments.db").display()
    );
    let mut all = vec![(Catalogue::open(&sqlite).unwrap(), Some(dir))];
    match std::env::var(POSTGRES_URL) {
        Ok(url) => all.push((Catalogue::open(&url).unwrap(), None)),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{POSTGRES_URL} is not set: CI tests the catalogue on PostgreSQL too")
        }
        Err(_) => eprintln!("{POSTGRES_URL} is not set: PostgreSQL is not tested"),
    }
    all
}

/// A name no other test run uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{:012x}", fastrand::u64(..) >> 16)
}

/// A deployment of `tenant` starting at `now`.
fn new(tenant: &str, id: &str, service: &str, now: u64) -> Deployment {
    NewDeployment {
        id: Some(id.to_owned()),
        service: Some(service.to_owned()),
        environment: Some("staging".into()),
        version: Some("1.4.2".into()),
        metadata: Some(serde_json::json!({"container": "api-7f9", "pr": 12})),
        retention: Some("30d".into()),
        ..Default::default()
    }
    .check(tenant, now)
    .unwrap()
}

#[tokio::test]
async fn a_deployment_starts_finishes_once_and_reads_back() {
    for (catalogue, _dir) in databases() {
        let tenant = unique("t");
        let id = unique("d");
        let started = new(&tenant, &id, "api", 1_000);
        catalogue.create(&started).await.unwrap();
        let again = catalogue.create(&new(&tenant, &id, "api", 2_000)).await;
        assert!(
            matches!(again, Err(CatalogueError::Conflict(_))),
            "{again:?}"
        );

        let read = catalogue.get(&tenant, &id).await.unwrap();
        assert_eq!(read, started, "{}", catalogue.describe());
        assert_eq!(
            read.property("metadata.container").as_deref(),
            Some("api-7f9")
        );
        assert_eq!(read.property("metadata.pr").as_deref(), Some("12"));

        let finished = catalogue
            .finish(&tenant, &id, Status::Failed, Some("exit code 3"), 5_000)
            .await
            .unwrap();
        assert_eq!(finished.status, Status::Failed);
        assert_eq!(finished.finished_at, Some(5_000));
        assert_eq!(finished.message.as_deref(), Some("exit code 3"));
        let twice = catalogue
            .finish(&tenant, &id, Status::Succeeded, None, 6_000)
            .await;
        assert!(
            matches!(twice, Err(CatalogueError::Conflict(_))),
            "{twice:?}"
        );
        assert_eq!(catalogue.get(&tenant, &id).await.unwrap(), finished);

        let retentions = catalogue.retentions().await.unwrap();
        assert_eq!(
            retentions.get(&id),
            Some(&std::time::Duration::from_secs(30 * 86_400))
        );

        catalogue.set_finish_record(&id, 42).await.unwrap();
        assert_eq!(
            catalogue.get(&tenant, &id).await.unwrap().finish_record,
            Some(42)
        );

        let unknown = catalogue
            .finish(&tenant, "no-such", Status::Failed, None, 1)
            .await;
        assert!(
            matches!(unknown, Err(CatalogueError::NotFound(_))),
            "{unknown:?}"
        );
        // Another tenant's deployment is not found.
        let other = catalogue.get("other-tenant", &id).await;
        assert!(
            matches!(other, Err(CatalogueError::NotFound(_))),
            "{other:?}"
        );
    }
}

#[tokio::test]
async fn concurrent_finishes_let_exactly_one_through() {
    for (catalogue, _dir) in databases() {
        let catalogue = Arc::new(catalogue);
        let tenant = unique("t");
        let id = unique("d");
        catalogue
            .create(&new(&tenant, &id, "api", 1))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (catalogue, tenant, id) = (catalogue.clone(), tenant.clone(), id.clone());
                tokio::spawn(async move {
                    catalogue
                        .finish(&tenant, &id, Status::Succeeded, None, 10 + i)
                        .await
                })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => ok += 1,
                Err(CatalogueError::Conflict(_)) => {}
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(ok, 1, "{}", catalogue.describe());
    }
}

#[tokio::test]
async fn lists_filter_and_page_newest_first() {
    for (catalogue, _dir) in databases() {
        let tenant = unique("t");
        let mut ids = Vec::new();
        for i in 0..7u64 {
            let id = format!("{}-{i}", unique("d"));
            let service = if i % 2 == 0 { "api" } else { "web" };
            catalogue
                .create(&new(&tenant, &id, service, 1_000 + i / 2))
                .await
                .unwrap();
            ids.push((id, service, 1_000 + i / 2));
        }
        catalogue
            .finish(&tenant, &ids[0].0, Status::Succeeded, None, 2_000)
            .await
            .unwrap();
        // Newest first; equal starts by id, descending.
        let mut expected: Vec<_> = ids.clone();
        expected.sort_by(|a, b| (b.2, &b.0).cmp(&(a.2, &a.0)));

        let mut seen = Vec::new();
        let mut after: Option<PageCursor> = None;
        loop {
            let page = catalogue
                .list(&ListFilter {
                    tenant: tenant.clone(),
                    limit: 3,
                    after: after.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
            seen.extend(page.deployments.iter().map(|d| d.id.clone()));
            match page.next {
                Some(next) => after = Some(next.to_string().parse().unwrap()),
                None => break,
            }
        }
        let expected_ids: Vec<_> = expected.iter().map(|e| e.0.clone()).collect();
        assert_eq!(seen, expected_ids, "{}", catalogue.describe());

        let api = catalogue
            .list(&ListFilter {
                tenant: tenant.clone(),
                service: Some("api".into()),
                status: Some(Status::Running),
                started_from: Some(1_001),
                limit: 50,
                ..Default::default()
            })
            .await
            .unwrap();
        let got: Vec<_> = api.deployments.iter().map(|d| d.id.as_str()).collect();
        let want: Vec<_> = expected
            .iter()
            .filter(|e| e.1 == "api" && e.0 != ids[0].0 && e.2 >= 1_001)
            .map(|e| e.0.as_str())
            .collect();
        assert_eq!(got, want);
        assert!(api.next.is_none());

        let nothing = catalogue
            .list(&ListFilter {
                tenant: tenant.clone(),
                environment: Some("' OR 1=1 --".into()),
                limit: 50,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(
            nothing.deployments.is_empty(),
            "values are bound, never SQL"
        );
    }
}

#[tokio::test]
async fn counts_add_up_with_the_position_in_one_transaction() {
    for (catalogue, _dir) in databases() {
        let tenant = unique("t");
        let node = unique("node");
        let (a, b) = (unique("d"), unique("d"));
        catalogue.create(&new(&tenant, &a, "api", 1)).await.unwrap();
        catalogue.create(&new(&tenant, &b, "web", 1)).await.unwrap();
        assert_eq!(catalogue.counted_up_to(&node).await.unwrap(), None);

        let mut first = HashMap::new();
        let mut counts = EventCounts::default();
        counts.add("info", 3, 100, 300);
        counts.add("error", 1, 250, 250);
        first.insert(a.clone(), counts);
        // An id that names no deployment adds nothing and fails nothing.
        let mut stray = EventCounts::default();
        stray.add("info", 1, 1, 1);
        first.insert("never-started".into(), stray);
        catalogue.add_counts(&node, 10, &first).await.unwrap();

        let mut second = HashMap::new();
        let mut more = EventCounts::default();
        more.add("info", 2, 50, 400);
        second.insert(a.clone(), more.clone());
        second.insert(b.clone(), more);
        catalogue.add_counts(&node, 20, &second).await.unwrap();

        assert_eq!(catalogue.counted_up_to(&node).await.unwrap(), Some(20));
        let all = catalogue.counts(&[&a, &b, "never-started"]).await.unwrap();
        let counted_a = &all[&a];
        assert_eq!((counted_a.total(), counted_a.errors()), (6, 1));
        assert_eq!(counted_a.by_level["info"], 5);
        assert_eq!(
            (counted_a.first_event, counted_a.last_event),
            (Some(50), Some(400))
        );
        assert_eq!(all[&b].total(), 2);
        assert!(!all.contains_key("never-started"));
    }
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_not_a_hang() {
    // Nothing listens on port 1.
    let catalogue = Catalogue::open("postgres://flumen@127.0.0.1:1/flumen").unwrap();
    let started = std::time::Instant::now();
    let result = catalogue.get("default", "d-1").await;
    assert!(
        matches!(result, Err(CatalogueError::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
