//! A scriptable SMTP server on raw TCP for the fault matrix: a [`Script`] says what it answers
//! at each step — a reply, silence or a closed connection — and [`FaultSmtp`] records what
//! arrived. It serves until the test (its runtime) ends.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

/// What the server does at one step.
#[derive(Clone, Debug)]
pub enum Answer {
    /// These reply lines (without line ends), then go on reading.
    Reply(Vec<String>),
    /// These reply lines, then close the connection.
    ReplyThenClose(Vec<String>),
    /// Nothing, ever: the connection stays open and unanswered.
    Silent,
    /// Close the connection without a word.
    Close,
    /// This reply to STARTTLS, then an answer to the ClientHello that is not TLS.
    ReplyThenNotTls(String),
}

impl Answer {
    pub fn reply(line: &str) -> Self {
        Self::Reply(vec![line.to_owned()])
    }

    pub fn reply_then_close(line: &str) -> Self {
        Self::ReplyThenClose(vec![line.to_owned()])
    }
}

/// What the server answers at each step. The default is a well-behaved server that offers
/// neither STARTTLS nor AUTH and accepts every message.
#[derive(Clone, Debug)]
pub struct Script {
    pub greeting: Answer,
    /// `None`: the EHLO reply lists [`Script::capabilities`].
    pub ehlo: Option<Answer>,
    pub capabilities: Vec<&'static str>,
    pub starttls: Answer,
    pub auth: Answer,
    /// The answers of a transaction (MAIL to the reply to the final dot) apply from a
    /// connection's [`Script::faulty_from`]th transaction on (counted from 0); earlier
    /// transactions on that connection are accepted.
    pub mail: Answer,
    pub rcpt: Answer,
    pub data: Answer,
    /// Close the connection after the first line of the message, before its final dot.
    pub close_before_dot: bool,
    /// The reply to the final dot.
    pub after_dot: Answer,
    pub faulty_from: usize,
    /// Close a connection that stays idle this long after a message.
    pub close_when_idle: Option<Duration>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            greeting: Answer::reply("220 fault.test ESMTP ready"),
            ehlo: None,
            capabilities: vec!["8BITMIME", "PIPELINING"],
            starttls: Answer::reply("220 2.0.0 Ready to start TLS"),
            auth: Answer::reply("235 2.7.0 Authentication successful"),
            mail: Answer::reply("250 2.1.0 OK"),
            rcpt: Answer::reply("250 2.1.5 OK"),
            data: Answer::reply("354 End data with <CR><LF>.<CR><LF>"),
            close_before_dot: false,
            after_dot: Answer::reply("250 2.0.0 OK queued"),
            faulty_from: 0,
            close_when_idle: None,
        }
    }
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub connections: usize,
    /// Every command line, in order (message bodies not included).
    pub commands: Vec<String>,
    /// The body of every message whose final dot arrived, whatever the answer to it.
    pub messages: Vec<String>,
}

pub struct FaultSmtp {
    pub port: u16,
    seen: Arc<Mutex<Seen>>,
}

impl FaultSmtp {
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let script = Arc::new(script);
        let shared = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.lock().unwrap().connections += 1;
                tokio::spawn(serve(stream, script.clone(), shared.clone()));
            }
        });
        Self { port, seen }
    }

    pub fn connections(&self) -> usize {
        self.seen.lock().unwrap().connections
    }

    pub fn commands(&self) -> Vec<String> {
        self.seen.lock().unwrap().commands.clone()
    }

    /// How many final dots arrived for messages whose body contains `marker`.
    pub fn messages_containing(&self, marker: &str) -> usize {
        self.seen.lock().unwrap().messages.iter().filter(|m| m.contains(marker)).count()
    }

    pub fn messages(&self) -> usize {
        self.seen.lock().unwrap().messages.len()
    }
}

/// How a connection goes on after an answer.
enum Next {
    Continue,
    Stop,
}

async fn answer(stream: &mut BufReader<TcpStream>, answer: &Answer) -> Next {
    let lines = match answer {
        Answer::Reply(lines) | Answer::ReplyThenClose(lines) => lines,
        Answer::Silent => std::future::pending().await,
        Answer::Close => return Next::Stop,
        Answer::ReplyThenNotTls(line) => {
            if write_lines(stream, std::slice::from_ref(line)).await.is_err() {
                return Next::Stop;
            }
            // Wait for the ClientHello, then answer it with something that is not TLS.
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello).await;
            let _ = stream.get_mut().write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            return Next::Stop;
        }
    };
    if write_lines(stream, lines).await.is_err() || matches!(answer, Answer::ReplyThenClose(_)) {
        return Next::Stop;
    }
    Next::Continue
}

async fn write_lines(stream: &mut BufReader<TcpStream>, lines: &[String]) -> std::io::Result<()> {
    let text: String = lines.iter().map(|line| format!("{line}\r\n")).collect();
    stream.get_mut().write_all(text.as_bytes()).await
}

async fn read_line(stream: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = Vec::new();
    match stream.read_until(b'\n', &mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned()),
    }
}

async fn serve(stream: TcpStream, script: Arc<Script>, seen: Arc<Mutex<Seen>>) {
    let mut stream = BufReader::new(stream);
    if let Next::Stop = answer(&mut stream, &script.greeting).await {
        return;
    }
    let well = Script::default();
    let mut after_message = false;
    let mut transactions = 0;
    let mut faulty = false;
    loop {
        let line = match (after_message, script.close_when_idle) {
            (true, Some(idle)) => match tokio::time::timeout(idle, read_line(&mut stream)).await {
                Ok(line) => line,
                Err(_) => return,
            },
            _ => read_line(&mut stream).await,
        };
        let Some(line) = line else { return };
        seen.lock().unwrap().commands.push(line.clone());
        let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        if verb == "MAIL" {
            faulty = transactions >= script.faulty_from;
            transactions += 1;
        }
        let step = if faulty { &*script } else { &well };
        let next = match verb.as_str() {
            "EHLO" | "HELO" => {
                let ehlo = script.ehlo.clone().unwrap_or_else(|| {
                    let mut lines = vec!["fault.test".to_owned()];
                    lines.extend(script.capabilities.iter().map(|c| (*c).to_owned()));
                    let last = lines.len() - 1;
                    let lines = lines
                        .iter()
                        .enumerate()
                        .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
                        .collect();
                    Answer::Reply(lines)
                });
                answer(&mut stream, &ehlo).await
            }
            "STARTTLS" => answer(&mut stream, &script.starttls).await,
            "AUTH" => answer(&mut stream, &script.auth).await,
            "MAIL" => answer(&mut stream, &step.mail).await,
            "RCPT" => answer(&mut stream, &step.rcpt).await,
            "DATA" => {
                let go_ahead = matches!(&step.data, Answer::Reply(lines) if lines.iter().any(|l| l.starts_with("354")));
                if let Next::Stop = answer(&mut stream, &step.data).await {
                    return;
                }
                if !go_ahead {
                    continue;
                }
                let mut body = String::new();
                loop {
                    let Some(line) = read_line(&mut stream).await else { return };
                    if step.close_before_dot {
                        return;
                    }
                    if line == "." {
                        break;
                    }
                    body.push_str(&line);
                    body.push('\n');
                }
                seen.lock().unwrap().messages.push(body);
                after_message = true;
                answer(&mut stream, &step.after_dot).await
            }
            "RSET" | "NOOP" => answer(&mut stream, &Answer::reply("250 2.0.0 OK")).await,
            "QUIT" => answer(&mut stream, &Answer::reply_then_close("221 2.0.0 Bye")).await,
            _ => answer(&mut stream, &Answer::reply("502 5.5.2 Command not recognized")).await,
        };
        if let Next::Stop = next {
            return;
        }
    }
}
