//! What the outbox worker's statements cost SurrealDB per message, without SMTP or HTTP: a
//! fresh on-disk `surrealkv://` database (migrated as the server's), `--rows` queued messages of
//! the size the server queues, then each variant's claim and settle run batch by batch as the
//! worker runs them. Prints the process's CPU time per message for each phase.
//!
//! `outbox_statements [--rows N] [--batch N] [--repeat N] VARIANTS.surql`: the file holds
//! variants, each headed `-- @variant NAME`, with optional blocks: `-- @schema` (run once after
//! the migrations), `-- @insert` (one message from `$id` and `$row`; `CREATE $id CONTENT $row`
//! when absent), `-- @claim` and `-- @settle` (the worker's own statements when absent, bound as
//! the worker binds them: `$ids` for the claim, group 0's `$ids0`, `$status0`, … for the settle)
//! and `-- @sent` (counts the messages sent). Each round gives each variant a fresh database;
//! the table has the median of the rounds. `bench/outbox_statements.surql` holds the variants
//! measured in BENCHMARKS.md.

use app::outbox::OutboxStatus;
use std::collections::BTreeMap;
use surrealdb::types::RecordId;

#[derive(Default, Debug)]
struct Variant {
    name: String,
    blocks: BTreeMap<String, String>,
}

fn parse(text: &str) -> Vec<Variant> {
    let mut variants: Vec<Variant> = Vec::new();
    let mut block = String::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("-- @variant ") {
            variants.push(Variant { name: name.trim().to_owned(), ..Variant::default() });
        } else if let Some(name) = line.strip_prefix("-- @") {
            block = name.trim().to_owned();
        } else if let Some(variant) = variants.last_mut() {
            let text = variant.blocks.entry(block.clone()).or_default();
            text.push_str(line);
            text.push('\n');
        }
    }
    variants
}

/// User + system CPU time of this process, in seconds (clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |n: usize| fields.get(n).and_then(|v| v.parse::<f64>().ok()).unwrap_or_default();
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let (mut rows, mut batch, mut repeat, mut file) = (4096usize, 256usize, 1usize, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rows" => rows = args.next().and_then(|v| v.parse().ok()).expect("--rows N"),
            "--batch" => batch = args.next().and_then(|v| v.parse().ok()).expect("--batch N"),
            "--repeat" => repeat = args.next().and_then(|v| v.parse().ok()).expect("--repeat N"),
            other => file = Some(other.to_owned()),
        }
    }
    let file = file.expect("usage: outbox_statements [--rows N] [--batch N] [--repeat N] VARIANTS.surql");
    let variants = parse(&std::fs::read_to_string(&file).expect("read the variants file"));
    let key = [7u8; 32];
    let text = "Hello,\n\nYou have been invited to Mailroom. Open the link below to set your password:\n\n".repeat(3);
    let html = format!("<p>{}</p>", text.replace('\n', "<br>")).repeat(2);
    // Per variant, per round: insert, claim, settle, claim + settle (ms of CPU per message).
    let mut results: Vec<Vec<[f64; 4]>> = vec![Vec::new(); variants.len()];
    for round in 0..repeat {
        for (v, variant) in variants.iter().enumerate() {
            let dir = std::env::temp_dir().join(format!("outbox-statements-{}-{round}-{v}", std::process::id()));
            let url = format!("surrealkv://{}", dir.display());
            let db = app::db::connect(app::db::DbOptions {
                url: &url,
                namespace: "bench",
                database: "bench",
                credentials: None,
            })
            .await
            .expect("open the database");
            let block = |name: &str| variant.blocks.get(name).cloned().filter(|sql| !sql.trim().is_empty());
            let (worker_claim, worker_settle) = app::outbox::ssr::statements();
            if let Some(schema) = block("schema") {
                db.query(schema).await.and_then(|r| r.check()).expect("schema");
            }
            let insert_sql = block("insert").unwrap_or_else(|| "CREATE $id CONTENT $row;".to_owned());
            let claim_sql = block("claim").unwrap_or(worker_claim);
            let settle_sql = block("settle").unwrap_or(worker_settle);
            let cpu = cpu_seconds();
            let mut ids = Vec::with_capacity(rows);
            for n in 0..rows {
                let mail = app::outbox::ssr::NewMail {
                    kind: "invitation",
                    to_addr: format!("user{n}@example.com").parse().expect("an address"),
                    to_name: Some(format!("User {n}")),
                    subject: "You are invited to Mailroom".into(),
                    text: text.clone(),
                    html: html.clone(),
                };
                let mut row = mail.queued(&key);
                row.next_attempt_at -= 1000;
                let id = RecordId::new("outbox", format!("m{n:06}"));
                db.query(insert_sql.as_str())
                    .bind(("id", id.clone()))
                    .bind(("row", row))
                    .await
                    .and_then(|r| r.check())
                    .expect("insert");
                ids.push(id);
            }
            let insert = (cpu_seconds() - cpu) / rows as f64 * 1e3;
            let (mut claim, mut settle) = (0.0, 0.0);
            for chunk in ids.chunks(batch) {
                let token = format!("t{}", chunk.len());
                let now = app::db::now_ms();
                let before = cpu_seconds();
                db.query(claim_sql.as_str())
                    .bind(("ids", chunk.to_vec()))
                    .bind(("node", "node-a"))
                    .bind(("claim_token", token.clone()))
                    .bind(("lease_ms", 300_000i64))
                    .bind(("waiting", [OutboxStatus::Queued, OutboxStatus::Retrying, OutboxStatus::Held]))
                    .bind(("now", now))
                    .await
                    .and_then(|r| r.check())
                    .expect("claim");
                let between = cpu_seconds();
                db.query(settle_sql.as_str())
                    .bind(("ids0", chunk.to_vec()))
                    .bind(("node", "node-a"))
                    .bind(("now", now))
                    .bind(("token0", token))
                    .bind(("status0", OutboxStatus::Sent))
                    .bind(("attempts0", 1i64))
                    .bind(("next_at0", now))
                    .bind(("error0", None::<String>))
                    .bind(("hint0", None::<String>))
                    .bind(("failure0", None::<String>))
                    .bind(("sent_at0", Some(now)))
                    .bind(("ok0", true))
                    .await
                    .and_then(app::db::check_transaction)
                    .expect("settle");
                let after = cpu_seconds();
                claim += between - before;
                settle += after - between;
            }
            let per = |s: f64| s / rows as f64 * 1e3;
            let count =
                block("sent").unwrap_or_else(|| "RETURN count(SELECT id FROM outbox WHERE status = 'sent')".to_owned());
            let sent: Option<i64> = db.query(count).await.and_then(|mut r| r.take(0)).expect("count the messages sent");
            assert_eq!(sent, Some(rows as i64), "{}: every message claimed and settled is sent", variant.name);
            results[v].push([insert, per(claim), per(settle), per(claim + settle)]);
            drop(db);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let median = |runs: &[[f64; 4]], n: usize| {
        let mut values: Vec<f64> = runs.iter().map(|run| run[n]).collect();
        values.sort_by(f64::total_cmp);
        (values[values.len() / 2], values[0], values[values.len() - 1])
    };
    println!(
        "CPU time of the process per message, ms: median of {repeat} run(s) ({rows} messages, batches of {batch})"
    );
    println!();
    println!("| variant | insert | claim | settle | claim + settle |");
    println!("|---|---|---|---|---|");
    for (variant, runs) in variants.iter().zip(&results) {
        let [insert, claim, settle, (both, low, high)] = [0, 1, 2, 3].map(|n| median(runs, n));
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {both:.3} ({low:.3}–{high:.3}) |",
            variant.name, insert.0, claim.0, settle.0
        );
    }
}
