//! Transactional outbox against a real Postgres, with the in-process queue as the target.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use calseta::{
    queue::{
        memory::{InProcessQueue, QueueSettings},
        outbox::{self, NewMessage, Outbox, OUTBOX_ID_ATTRIBUTE},
        OutgoingMessage, Queue, QueueDepth, QueueError, QueueName, SendOutcome,
    },
    sweep,
    testing::TestDb,
};

fn msg(i: usize) -> NewMessage {
    NewMessage::json(QueueName::Enrich, &serde_json::json!({"alert": i})).expect("json")
}

async fn unsent(db: &TestDb) -> i64 {
    let c = db.pool.get().await.expect("client");
    c.query_one("SELECT count(*) FROM outbox WHERE sent_at IS NULL", &[])
        .await
        .expect("count")
        .get(0)
}

/// A queue whose sends fail while `down` is set: a queue outage.
struct Outage {
    inner: InProcessQueue,
    down: AtomicBool,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Queue for Outage {
    async fn send_batch(&self, q: QueueName, m: &[OutgoingMessage]) -> Result<SendOutcome, QueueError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(QueueError::Unavailable("connection refused".into()));
        }
        self.inner.send_batch(q, m).await
    }
    async fn change_visibility(&self, q: QueueName, r: &str, s: u32) -> Result<(), QueueError> {
        self.inner.change_visibility(q, r, s).await
    }
    async fn depth(&self, q: QueueName) -> Result<QueueDepth, QueueError> {
        self.inner.depth(q).await
    }
    fn kind(&self) -> &'static str {
        "outage"
    }
}

#[tokio::test]
async fn committed_then_crashed_is_sent_by_the_sweeper() {
    let db = TestDb::new().await;
    let queue = InProcessQueue::new(QueueSettings::default());
    let ob = Outbox::new(db.pool.clone(), Arc::new(queue.clone()));
    {
        let mut c = db.pool.get().await.expect("client");
        let tx = c.transaction().await.expect("tx");
        outbox::enqueue(&*tx, &[msg(1), msg(2), msg(3)]).await.expect("enqueue");
        tx.commit().await.expect("commit");
        // The handler "crashes" here: send() is never called.
    }
    assert_eq!(queue.depth(QueueName::Enrich).await.expect("depth").total(), 0);
    let report = sweep::run_once(&ob, Duration::ZERO).await.expect("sweep");
    assert_eq!(report.outbox_sent, 3);
    assert_eq!(unsent(&db).await, 0);
    let got = queue.receive(QueueName::Enrich, 10);
    assert_eq!(got.len(), 3);
    let bodies: Vec<_> = got.iter().map(|m| m.body.clone().expect("body")).collect();
    assert!(bodies.contains(&r#"{"alert":2}"#.to_string()), "{bodies:?}");
    assert!(got
        .iter()
        .all(|m| m.message_attributes.contains_key(OUTBOX_ID_ATTRIBUTE)));
    // A second sweep finds nothing left to send.
    assert_eq!(
        sweep::run_once(&ob, Duration::ZERO).await.expect("sweep").outbox_sent,
        0
    );
}

#[tokio::test]
async fn sweeper_leaves_young_rows_to_their_writer() {
    let db = TestDb::new().await;
    let queue = InProcessQueue::new(QueueSettings::default());
    let ob = Outbox::new(db.pool.clone(), Arc::new(queue.clone()));
    let c = db.pool.get().await.expect("client");
    outbox::enqueue(&**c, &[msg(1)]).await.expect("enqueue");
    assert_eq!(
        sweep::run_once(&ob, Duration::from_secs(60))
            .await
            .expect("sweep")
            .outbox_sent,
        0
    );
    assert_eq!(unsent(&db).await, 1);
}

#[tokio::test]
async fn send_failure_leaves_rows_unsent_and_they_go_later() {
    let db = TestDb::new().await;
    let queue = Arc::new(Outage {
        inner: InProcessQueue::new(QueueSettings::default()),
        down: AtomicBool::new(true),
        calls: AtomicUsize::new(0),
    });
    let ob = Outbox::new(db.pool.clone(), queue.clone());
    let ids = {
        let mut c = db.pool.get().await.expect("client");
        let tx = c.transaction().await.expect("tx");
        let ids = outbox::enqueue(&*tx, &(0..12).map(msg).collect::<Vec<_>>())
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
        ids
    };
    let r = ob.send(&ids).await.expect("send");
    assert_eq!((r.sent, r.failed, r.batches), (0, 12, 2));
    assert_eq!(unsent(&db).await, 12);
    let c = db.pool.get().await.expect("client");
    let row = c
        .query_one("SELECT min(attempts), max(last_error) FROM outbox", &[])
        .await
        .expect("row");
    assert_eq!(row.get::<_, i32>(0), 1);
    assert!(row.get::<_, String>(1).contains("connection refused"));

    // The sweeper also fails while the queue is down, and stops after one pass.
    assert_eq!(
        sweep::run_once(&ob, Duration::ZERO).await.expect("sweep").outbox_failed,
        12
    );
    queue.down.store(false, Ordering::SeqCst);
    let report = sweep::run_once(&ob, Duration::ZERO).await.expect("sweep");
    assert_eq!(report.outbox_sent, 12);
    assert_eq!(unsent(&db).await, 0);
    assert_eq!(queue.inner.depth(QueueName::Enrich).await.expect("depth").visible, 12);
}

#[tokio::test]
async fn rolled_back_transaction_sends_nothing() {
    let db = TestDb::new().await;
    let queue = InProcessQueue::new(QueueSettings::default());
    let ob = Outbox::new(db.pool.clone(), Arc::new(queue.clone()));
    let ids = {
        let mut c = db.pool.get().await.expect("client");
        let tx = c.transaction().await.expect("tx");
        let ids = outbox::enqueue(&*tx, &[msg(1), msg(2)]).await.expect("enqueue");
        tx.rollback().await.expect("rollback");
        ids
    };
    assert_eq!(ob.send(&ids).await.expect("send").sent, 0);
    assert_eq!(
        sweep::run_once(&ob, Duration::ZERO).await.expect("sweep").outbox_sent,
        0
    );
    assert_eq!(queue.depth(QueueName::Enrich).await.expect("depth").total(), 0);
}

#[tokio::test]
async fn sent_rows_are_not_sent_again_and_concurrent_senders_do_not_double_send() {
    let db = TestDb::new().await;
    let queue = InProcessQueue::new(QueueSettings::default());
    let ob = Outbox::new(db.pool.clone(), Arc::new(queue.clone()));
    let c = db.pool.get().await.expect("client");
    let ids = outbox::enqueue(&**c, &(0..200).map(msg).collect::<Vec<_>>())
        .await
        .expect("enqueue");
    // The writer sends its rows while two sweepers run at the same moment.
    let (a, b, w) = tokio::join!(
        sweep::run_once(&ob, Duration::ZERO),
        sweep::run_once(&ob, Duration::ZERO),
        ob.send(&ids)
    );
    let total = a.expect("a").outbox_sent + b.expect("b").outbox_sent + w.expect("w").sent;
    assert_eq!(total, 200);
    assert_eq!(queue.depth(QueueName::Enrich).await.expect("depth").visible, 200);
    assert_eq!(ob.send(&ids).await.expect("resend").sent, 0);
}

#[tokio::test]
async fn delay_and_attributes_reach_the_queue() {
    let db = TestDb::new().await;
    let queue = InProcessQueue::new(QueueSettings::default());
    let ob = Outbox::new(db.pool.clone(), Arc::new(queue.clone()));
    let c = db.pool.get().await.expect("client");
    let m = msg(1).with_attribute("alert_id", "42").with_delay(30);
    let ids = outbox::enqueue(&**c, &[m, msg(2)]).await.expect("enqueue");
    ob.send(&ids).await.expect("send");
    let d = queue.depth(QueueName::Enrich).await.expect("depth");
    assert_eq!((d.visible, d.delayed), (1, 1));
    let got = queue.receive(QueueName::Enrich, 10);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body.as_deref(), Some(r#"{"alert":2}"#));
    let backlog = ob.backlog().await.expect("backlog");
    assert_eq!(backlog.unsent, 0);
}
