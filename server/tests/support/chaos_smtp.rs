//! A chaotic SMTP peer on raw TCP for the crash and shutdown tests. It speaks enough ESMTP for
//! lettre and, at each step, with a chance drawn from a seeded RNG, answers 421 and closes,
//! answers 451, goes silent or drops the connection — in the middle of DATA and right after the
//! final dot too, both before and after it has taken the message. It records every message it
//! took by Message-ID, so a test can count what arrived, twice or not at all. It can also hold
//! every message at the end of DATA without answering, for the shutdown test. It binds once,
//! on 127.0.0.1:0, and serves on that port until the test's runtime ends: the server keeps the
//! port in its saved settings across restarts.

use rand::{Rng, SeedableRng, rngs::StdRng};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// What the peer did instead of going on normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// `421` and the connection closed, as a server that is shutting down.
    Close421,
    /// `451`, and the session goes on.
    Reply451,
    /// The connection closed without a word, between commands.
    Drop,
    /// The connection closed after some lines of the message, before its final dot.
    DropMidData,
    /// The connection closed right after the final dot, the message not taken.
    DropAfterDot,
    /// The message taken (recorded), then the connection closed before the `250`: the sender
    /// cannot know, and sends it again.
    TakeThenDrop,
    /// No answer to the final dot until the sender gives up.
    Silent,
}

/// Where in the session a fault can happen.
#[derive(Clone, Copy)]
enum Step {
    Greeting,
    Ehlo,
    Command,
    Body,
    AfterDot,
}

impl Step {
    fn faults(self) -> &'static [Fault] {
        use Fault::*;
        match self {
            Self::Greeting => &[Close421, Drop],
            Self::Ehlo => &[Close421, Reply451, Drop],
            Self::Command => &[Close421, Reply451, Drop],
            Self::Body => &[DropMidData],
            Self::AfterDot => &[Close421, Reply451, DropAfterDot, TakeThenDrop, TakeThenDrop, Silent],
        }
    }
}

/// A message the peer took.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub message_id: String,
    pub subject: String,
    /// The envelope recipients (RCPT TO).
    pub recipients: Vec<String>,
}

/// One Message-ID with how often it arrived.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub subject: String,
    pub recipients: Vec<String>,
    pub count: usize,
}

struct Shared {
    /// The chance of a fault at each step, in millionths.
    rate: AtomicU32,
    stall: watch::Sender<bool>,
    rng: Mutex<StdRng>,
    accepted: Mutex<Vec<Accepted>>,
    faults: Mutex<BTreeMap<Fault, usize>>,
    connections: AtomicUsize,
    data_commands: AtomicUsize,
    /// Messages held at the end of DATA now, by connection: their recipients.
    stalled: Mutex<HashMap<u64, Vec<String>>>,
    next_connection: AtomicU64,
}

pub struct ChaosSmtp {
    pub port: u16,
    shared: Arc<Shared>,
}

/// How long a silent or stalled peer waits for the sender before it gives up itself.
const PEER_PATIENCE: Duration = Duration::from_secs(120);

impl ChaosSmtp {
    /// Starts the peer with faults at `rate` (0.0 to 1.0) per step, drawn from `seed`.
    pub async fn start(seed: u64, rate: f64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            rate: AtomicU32::new(0),
            stall: watch::Sender::new(false),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            accepted: Mutex::new(Vec::new()),
            faults: Mutex::new(BTreeMap::new()),
            connections: AtomicUsize::new(0),
            data_commands: AtomicUsize::new(0),
            stalled: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(0),
        });
        let peer = Self { port, shared: shared.clone() };
        peer.set_rate(rate);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        peer
    }

    /// The chance of a fault at each step from now on; 0.0 turns the chaos off.
    pub fn set_rate(&self, rate: f64) {
        self.shared.rate.store((rate.clamp(0.0, 1.0) * 1_000_000.0) as u32, Ordering::Relaxed);
    }

    /// While on, every message is held at the end of DATA: no answer to its final dot until the
    /// mode is turned off (then it is taken) or the sender closes the connection (then it is not).
    pub fn set_stall(&self, on: bool) {
        self.shared.stall.send_replace(on);
    }

    /// The recipients of the messages held at the end of DATA now.
    pub fn stalled_recipients(&self) -> Vec<String> {
        self.shared.stalled.lock().unwrap().values().flatten().cloned().collect()
    }

    /// Every message taken, in order, duplicates included.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.shared.accepted.lock().unwrap().clone()
    }

    /// The messages taken, by Message-ID, with how often each arrived.
    pub fn by_message_id(&self) -> BTreeMap<String, Delivered> {
        let mut by_id = BTreeMap::<String, Delivered>::new();
        for message in self.shared.accepted.lock().unwrap().iter() {
            by_id
                .entry(message.message_id.clone())
                .or_insert_with(|| Delivered {
                    subject: message.subject.clone(),
                    recipients: message.recipients.clone(),
                    count: 0,
                })
                .count += 1;
        }
        by_id
    }

    /// How often each fault was played.
    pub fn faults(&self) -> BTreeMap<Fault, usize> {
        self.shared.faults.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// DATA commands received (answered with 354 or not).
    pub fn data_commands(&self) -> usize {
        self.shared.data_commands.load(Ordering::Relaxed)
    }
}

impl Shared {
    /// The fault to play at `step`, if the dice say so.
    fn roll(&self, step: Step) -> Option<Fault> {
        let rate = self.rate.load(Ordering::Relaxed);
        if rate == 0 {
            return None;
        }
        let mut rng = self.rng.lock().unwrap();
        if rng.random_range(0..1_000_000) >= rate {
            return None;
        }
        let faults = step.faults();
        let fault = faults[rng.random_range(0..faults.len())];
        drop(rng);
        *self.faults.lock().unwrap().entry(fault).or_default() += 1;
        Some(fault)
    }

    /// A line number in the message after which [`Fault::DropMidData`] closes the connection.
    fn cut_after(&self) -> usize {
        self.rng.lock().unwrap().random_range(1..=12)
    }
}

async fn read_line(stream: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = Vec::new();
    match stream.read_until(b'\n', &mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned()),
    }
}

async fn reply(stream: &mut BufReader<TcpStream>, text: &str) -> Option<()> {
    stream.get_mut().write_all(format!("{text}\r\n").as_bytes()).await.ok()
}

/// Waits until the sender closes the connection (or sends anything), at most [`PEER_PATIENCE`].
async fn until_closed(stream: &mut BufReader<TcpStream>) {
    let mut byte = [0u8; 1];
    let _ = tokio::time::timeout(PEER_PATIENCE, stream.read(&mut byte)).await;
}

/// Plays a fault that ends or answers a command; `None` when the connection is over.
async fn play(stream: &mut BufReader<TcpStream>, fault: Fault) -> Option<()> {
    match fault {
        Fault::Close421 => {
            let _ = reply(stream, "421 4.3.2 chaos.test closing the channel").await;
            None
        }
        Fault::Reply451 => reply(stream, "451 4.3.0 chaos.test: try again later").await,
        Fault::Silent => {
            until_closed(stream).await;
            None
        }
        Fault::Drop | Fault::DropMidData | Fault::DropAfterDot | Fault::TakeThenDrop => None,
    }
}

/// The address inside `<...>` of a MAIL or RCPT command.
fn path_of(line: &str) -> String {
    line.split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address.to_owned())
        .unwrap_or_default()
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let mut stream = BufReader::new(stream);
    if let Some(fault) = shared.roll(Step::Greeting) {
        let _ = play(&mut stream, fault).await;
        return;
    }
    if reply(&mut stream, "220 chaos.test ESMTP ready").await.is_none() {
        return;
    }
    let mut recipients = Vec::new();
    while let Some(line) = read_line(&mut stream).await {
        let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        let step = if matches!(verb.as_str(), "EHLO" | "HELO") { Step::Ehlo } else { Step::Command };
        let chaotic = matches!(verb.as_str(), "EHLO" | "HELO" | "MAIL" | "RCPT" | "DATA");
        if chaotic && let Some(fault) = shared.roll(step) {
            if verb == "DATA" {
                shared.data_commands.fetch_add(1, Ordering::Relaxed);
            }
            if play(&mut stream, fault).await.is_none() {
                return;
            }
            continue;
        }
        let answered = match verb.as_str() {
            "EHLO" => reply(&mut stream, "250-chaos.test greets you\r\n250-8BITMIME\r\n250 SIZE 10485760").await,
            "HELO" => reply(&mut stream, "250 chaos.test").await,
            "MAIL" => {
                recipients.clear();
                reply(&mut stream, "250 2.1.0 OK").await
            }
            "RCPT" => {
                recipients.push(path_of(&line));
                reply(&mut stream, "250 2.1.5 OK").await
            }
            "RSET" => {
                recipients.clear();
                reply(&mut stream, "250 2.0.0 OK").await
            }
            "NOOP" => reply(&mut stream, "250 2.0.0 OK").await,
            "QUIT" => {
                let _ = reply(&mut stream, "221 2.0.0 Bye").await;
                return;
            }
            "DATA" => {
                shared.data_commands.fetch_add(1, Ordering::Relaxed);
                if recipients.is_empty() {
                    reply(&mut stream, "503 5.5.1 RCPT first").await
                } else if reply(&mut stream, "354 End data with <CR><LF>.<CR><LF>").await.is_none() {
                    return;
                } else {
                    let fate = receive(&mut stream, &shared, id, &recipients).await;
                    recipients.clear();
                    match fate {
                        Fate::Taken(message) => {
                            shared.accepted.lock().unwrap().push(message);
                            reply(&mut stream, "250 2.0.0 OK queued").await
                        }
                        Fate::Refused => Some(()),
                        Fate::Closed => return,
                    }
                }
            }
            _ => reply(&mut stream, "502 5.5.2 Command not recognized").await,
        };
        if answered.is_none() {
            return;
        }
    }
}

/// What became of a message after its final dot.
enum Fate {
    /// Taken: answer `250`.
    Taken(Accepted),
    /// Refused with a reply; the session goes on.
    Refused,
    /// The connection is over (a fault, or the sender left).
    Closed,
}

/// Reads one message up to its final dot and decides its fate.
async fn receive(stream: &mut BufReader<TcpStream>, shared: &Shared, id: u64, recipients: &[String]) -> Fate {
    let cut = shared.roll(Step::Body).map(|_| shared.cut_after());
    let (mut message_id, mut subject) = (String::new(), String::new());
    let mut in_headers = true;
    let mut lines = 0;
    loop {
        let Some(line) = read_line(stream).await else { return Fate::Closed };
        lines += 1;
        if cut.is_some_and(|cut| lines >= cut) {
            return Fate::Closed;
        }
        if line == "." {
            break;
        }
        let line = line.strip_prefix('.').unwrap_or(&line);
        if line.is_empty() {
            in_headers = false;
        } else if in_headers && let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("message-id") {
                message_id = value.trim().to_owned();
            } else if name.eq_ignore_ascii_case("subject") {
                subject = value.trim().to_owned();
            }
        }
    }
    let message = Accepted { message_id, subject, recipients: recipients.to_vec() };
    let mut stall = shared.stall.subscribe();
    if *stall.borrow() {
        shared.stalled.lock().unwrap().insert(id, recipients.to_vec());
        let released = tokio::select! {
            _ = stall.wait_for(|on| !*on) => true,
            () = until_closed(stream) => false,
        };
        shared.stalled.lock().unwrap().remove(&id);
        if !released {
            return Fate::Closed;
        }
    }
    match shared.roll(Step::AfterDot) {
        None => Fate::Taken(message),
        Some(Fault::TakeThenDrop) => {
            shared.accepted.lock().unwrap().push(message);
            Fate::Closed
        }
        Some(fault) => match play(stream, fault).await {
            Some(()) => Fate::Refused,
            None => Fate::Closed,
        },
    }
}
