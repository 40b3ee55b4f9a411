use super::*;

fn row(attempts: i64, created_at: i64) -> OutboxRow {
    let mut row = super::super::NewMail {
        kind: "test",
        to_addr: "a@example.com".parse().unwrap(),
        to_name: None,
        subject: "s".into(),
        text: "t".into(),
        html: "h".into(),
    }
    .queued(&[7; 32]);
    row.attempts = attempts;
    row.created_at = created_at;
    row
}

async fn memory_db() -> crate::state::Db {
    let options = crate::db::DbOptions { url: "mem://", namespace: "test", database: "test", credentials: None };
    crate::db::connect(options).await.unwrap()
}

/// Stores `row` as `outbox:<key>`.
async fn store(db: &crate::state::Db, key: &str, row: OutboxRow) {
    db.query("CREATE type::record('outbox', $key) CONTENT $row")
        .bind(("key", key.to_owned()))
        .bind(("row", row))
        .await
        .unwrap()
        .check()
        .unwrap();
}

/// Stores `outbox:<key>` as node-a's claim left it: sending, leased under `token`.
async fn leased(db: &crate::state::Db, key: &str, token: &str, attempts: i64, now: i64) -> OutboxRow {
    let mut leased = row(attempts, now);
    leased.status = OutboxStatus::Sending;
    leased.lease_owner = Some("node-a".into());
    leased.lease_token = Some(token.into());
    store(db, key, leased.clone()).await;
    leased
}

#[test]
fn each_class_moves_the_message_its_own_way() {
    let policy = OutboxPolicy::default();
    let now = 1_000_000_000;
    let fresh = row(2, now);
    let auth = Err(SmtpFailure::AuthRejected { code: 535, text: "no".into() });
    let greylisted = Err(SmtpFailure::RecipientRejected { code: 451, text: "later".into() });
    let unknown = Err(SmtpFailure::RecipientRejected { code: 550, text: "unknown".into() });
    assert_eq!(next_state(&policy, &fresh, &Ok(()), now).0, OutboxStatus::Sent);
    let (status, attempts, _, _) = next_state(&policy, &fresh, &auth, now);
    assert_eq!((status, attempts), (OutboxStatus::Held, 2), "held keeps its attempts");
    let (status, attempts, next_at, _) = next_state(&policy, &fresh, &greylisted, now);
    assert_eq!((status, attempts), (OutboxStatus::Retrying, 3));
    assert!(next_at > now);
    assert_eq!(next_state(&policy, &fresh, &unknown, now).0, OutboxStatus::Failed);
    let spent = row(policy.max_attempts - 1, now);
    assert_eq!(next_state(&policy, &spent, &greylisted, now).0, OutboxStatus::Failed);
    let old = row(0, now - policy.max_age.as_millis() as i64);
    let (status, _, _, expired) = next_state(&policy, &old, &auth, now);
    assert_eq!((status, expired.as_deref()), (OutboxStatus::Failed, Some("Not delivered within 3 days")));
}

#[tokio::test]
async fn a_settle_changes_the_message_only_with_the_lease_it_claimed() {
    let db = memory_db().await;
    let mut queued = row(0, now_ms());
    queued.status = OutboxStatus::Sending;
    queued.lease_owner = Some("node-a".into());
    queued.lease_token = Some("ours".into());
    db.query("CREATE outbox:m CONTENT $row").bind(("row", queued)).await.unwrap().check().unwrap();
    let settle = |token: &'static str| {
        let db = db.clone();
        async move {
            let sent = Settlement {
                token: Some(token.into()),
                status: OutboxStatus::Sent,
                attempts: 1,
                next_at: 0,
                error: None,
                hint: None,
                failure: None,
                sent_at: Some(1),
                attempt: true,
                ok: true,
            };
            let mine = write_settlements(&db, "node-a", 1, BTreeMap::from([("m".to_owned(), sent)])).await.unwrap();
            Some(mine.len() as i64)
        }
    };
    assert_eq!(settle("theirs").await, Some(0), "a lost lease changes nothing");
    let status: Option<String> = db.query("SELECT VALUE status FROM ONLY outbox:m").await.unwrap().take(0).unwrap();
    assert_eq!(status.as_deref(), Some("sending"));
    assert_eq!(settle("ours").await, Some(1));
    let status: Option<String> = db.query("SELECT VALUE status FROM ONLY outbox:m").await.unwrap().take(0).unwrap();
    assert_eq!(status.as_deref(), Some("sent"));
    let attempts: Vec<i64> = db.query("SELECT VALUE at FROM outbox_attempt").await.unwrap().take(0).unwrap();
    assert_eq!(attempts, vec![1], "one attempt recorded, by the settle that held the lease");
}

#[test]
fn a_message_is_sent_only_while_its_lease_outlasts_the_longest_send() {
    let policy = OutboxPolicy { lease: Duration::from_secs(120), ..OutboxPolicy::default() };
    let mail = crate::mail::ssr::MailConfig { overall_timeout: Duration::from_secs(20), ..Default::default() };
    assert!(lease_outlasts_a_send(Instant::now(), &policy, &mail));
    if let Some(long_ago) = Instant::now().checked_sub(Duration::from_secs(101)) {
        assert!(!lease_outlasts_a_send(long_ago, &policy, &mail), "20 s left of 120: too short for a 20 s send");
    }
    assert_eq!(claim_size(&OutboxPolicy { concurrency: 1, ..policy.clone() }), 16);
    assert_eq!(claim_size(&OutboxPolicy { concurrency: 64, ..policy }), MAX_CLAIM);
}

#[tokio::test]
async fn one_group_settle_changes_each_message_by_its_own_lease() {
    let db = memory_db().await;
    let policy = OutboxPolicy::default();
    let now = now_ms();
    let mut rows = BTreeMap::new();
    for (key, token) in [("sent", "t1"), ("stolen", "t2"), ("released", "t3"), ("refused", "t4"), ("held", "t3")] {
        rows.insert(key, leased(&db, key, token, 1, now).await);
    }
    // Another node took this one after our lease ran out.
    db.query("UPDATE outbox:stolen SET lease_token = 'theirs'").await.unwrap().check().unwrap();
    let unknown = SmtpFailure::RecipientRejected { code: 550, text: "unknown".into() };
    let auth = SmtpFailure::AuthRejected { code: 535, text: "no".into() };
    let outcomes = [
        ("sent", Attempt::Tried(Ok(()))),
        ("stolen", Attempt::Tried(Ok(()))),
        ("released", Attempt::Released(Some(auth.clone()))),
        ("refused", Attempt::Tried(Err(unknown))),
        // Its next state is the released one's, but it was tried: its attempt is recorded.
        ("held", Attempt::Tried(Err(auth))),
    ];
    let settlements = outcomes
        .iter()
        .map(|(key, attempt)| (key.to_string(), settlement(&policy, &rows[key], attempt, now)))
        .collect();
    let mine = write_settlements(&db, "node-a", now, settlements).await.unwrap();
    assert_eq!(mine, ["held", "refused", "released", "sent"], "every message whose lease was ours, and only those");

    let states: Vec<(String, String, i64)> = db
        .query("SELECT VALUE [record::id(id), status, attempts] FROM outbox ORDER BY id")
        .await
        .unwrap()
        .take(0)
        .unwrap();
    let expected = [
        ("held", "held", 1),
        ("refused", "failed", 2),
        ("released", "held", 1),
        ("sent", "sent", 2),
        ("stolen", "sending", 1),
    ];
    let expected: Vec<(String, String, i64)> =
        expected.iter().map(|(k, s, a)| (k.to_string(), s.to_string(), *a)).collect();
    assert_eq!(states, expected, "a released message keeps its attempts; a stolen one is untouched");
    let attempts: Vec<(String, bool)> =
        db.query("SELECT VALUE [outbox, ok] FROM outbox_attempt ORDER BY outbox").await.unwrap().take(0).unwrap();
    let tried = [("held".to_owned(), false), ("refused".to_owned(), false), ("sent".to_owned(), true)];
    assert_eq!(attempts, tried, "an attempt per message tried");
    let sent_at: Option<i64> = db.query("SELECT VALUE sent_at FROM ONLY outbox:sent").await.unwrap().take(0).unwrap();
    assert_eq!(sent_at, Some(now));
}

#[tokio::test]
async fn one_update_for_a_claim_that_settles_alike_still_skips_the_stolen_message() {
    let db = memory_db().await;
    let policy = OutboxPolicy::default();
    let now = now_ms();
    let mut rows = BTreeMap::new();
    // One claim leased all three under one token; every one was sent.
    for key in ["a", "b", "c"] {
        rows.insert(key, leased(&db, key, "claim-1", 0, now).await);
    }
    db.query("UPDATE outbox:b SET lease_owner = 'node-b', lease_token = 'theirs'").await.unwrap().check().unwrap();
    let settlements: BTreeMap<String, Settlement> = rows
        .iter()
        .map(|(key, row)| (key.to_string(), settlement(&policy, row, &Attempt::Tried(Ok(())), now)))
        .collect();
    assert!(settlements["a"].same_as(&settlements["b"]) && settlements["b"].same_as(&settlements["c"]), "one group");
    let mine = write_settlements(&db, "node-a", now, settlements).await.unwrap();
    assert_eq!(mine, ["a", "c"]);
    let states: Vec<(String, String, Option<String>)> = db
        .query("SELECT VALUE [record::id(id), status, lease_token] FROM outbox ORDER BY id")
        .await
        .unwrap()
        .take(0)
        .unwrap();
    let expected = [("a", "sent", None), ("b", "sending", Some("theirs")), ("c", "sent", None)];
    let expected: Vec<(String, String, Option<String>)> =
        expected.iter().map(|(k, s, t)| (k.to_string(), s.to_string(), t.map(str::to_owned))).collect();
    assert_eq!(states, expected, "the other node's message keeps its lease and its state");
    let attempts: Vec<String> =
        db.query("SELECT VALUE outbox FROM outbox_attempt ORDER BY outbox").await.unwrap().take(0).unwrap();
    assert_eq!(attempts, ["a", "c"], "no attempt recorded for the message this node no longer held");
    // Keyed [message, time, claim]: the attempts of "a" are a range of keys.
    let keys: Vec<(String, i64, String)> = db
        .query("SELECT VALUE record::id(id) FROM outbox_attempt:['a', NONE]..=['a', ..]")
        .await
        .unwrap()
        .take(0)
        .unwrap();
    assert_eq!(keys, [("a".to_owned(), now, "claim-1".to_owned())]);
}

#[tokio::test]
async fn a_settle_gathers_what_arrives_within_its_linger_and_no_longer() {
    let (outcomes, mut settling) = tokio::sync::mpsc::unbounded_channel();
    outcomes.send(1).unwrap();
    let late = outcomes.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        late.send(2).unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        late.send(3).unwrap();
    });
    let mut group = Vec::new();
    assert_eq!(gather(&mut settling, &mut group, Duration::from_millis(200)).await, 2, "one commit for both");
    assert_eq!(group, [1, 2]);
    group.clear();
    drop(outcomes);
    // The senders have ended: the last group is written at once, not after another linger.
    let started = Instant::now();
    assert_eq!(gather(&mut settling, &mut group, Duration::from_secs(30)).await, 1);
    assert_eq!(group, [3]);
    assert!(started.elapsed() < Duration::from_secs(5));
    group.clear();
    assert_eq!(gather(&mut settling, &mut group, Duration::from_secs(30)).await, 0);
}

#[tokio::test]
async fn due_messages_are_expired_leases_then_the_waiting_oldest_first_across_statuses() {
    let db = memory_db().await;
    let now = now_ms();
    // As a claim leaves a message: due again when its lease runs out.
    let sending = |lease_until: i64, next_attempt_at: i64| OutboxRow {
        status: OutboxStatus::Sending,
        lease_until: Some(lease_until),
        next_attempt_at,
        ..row(1, now)
    };
    let (expired, leased) = (sending(0, 0), sending(now + 600_000, now + 600_000));
    // Claimed by an earlier release, which left next_attempt_at as it was: lease_until decides.
    let (expired_before, leased_before) =
        (sending(now - 100_000, now - 700_000), sending(now + 600_000, now - 700_000));
    let at = |status, next_attempt_at| OutboxRow { status, next_attempt_at, ..row(0, now) };
    let rows = [
        ("queued-new", at(OutboxStatus::Queued, now - 10)),
        ("retrying-old", at(OutboxStatus::Retrying, now - 300)),
        ("held-mid", at(OutboxStatus::Held, now - 200)),
        ("queued-old", at(OutboxStatus::Queued, now - 250)),
        ("retrying-later", at(OutboxStatus::Retrying, now + 600_000)),
        ("sent", at(OutboxStatus::Sent, now - 1_000)),
        ("expired", expired),
        ("leased", leased),
        ("expired-before", expired_before),
        ("leased-before", leased_before),
    ];
    for (key, row) in rows {
        store(&db, key, row).await;
    }
    let all = due_ids(&db, 10).await.unwrap();
    assert_eq!(all, ["expired", "expired-before", "retrying-old", "queued-old", "held-mid", "queued-new"]);
    assert_eq!(
        due_ids(&db, 3).await.unwrap(),
        ["expired", "expired-before", "retrying-old"],
        "the limit keeps the oldest"
    );
}

#[tokio::test]
async fn a_stored_address_that_no_longer_parses_fails_its_message_alone() {
    let db = memory_db().await;
    let good = row(0, now_ms());
    let bad = OutboxRow { to_addr: "not an address".into(), ..row(0, now_ms()) };
    for (key, row) in [("good", good), ("bad", bad)] {
        store(&db, key, row).await;
    }
    // Read as a claim reads its batch: both rows come back.
    let claimed: Vec<claim::Claimed> =
        db.query("SELECT record::id(id) AS key, $this AS row FROM outbox ORDER BY key").await.unwrap().take(0).unwrap();
    let keys: Vec<&str> = claimed.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["bad", "good"]);
    match settle::recipient(&claimed[0].row) {
        Err(SmtpFailure::BadMessage { detail }) => assert!(detail.contains("recipient address"), "{detail}"),
        other => panic!("the bad row: {other:?}"),
    }
    assert_eq!(settle::recipient(&claimed[1].row).unwrap().email.to_string(), "a@example.com");
}
