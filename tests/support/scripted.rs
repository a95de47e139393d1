//! A scripted upstream SMTP server: each command line gets the reply a test's script returns,
//! and every line it read is kept, per connection, for the test to check.
//!
//! A PROXY v1 header is read and kept without a reply (v2's binary header is not understood).
//! QUIT is answered with 221 and a close, unless the test asks to script it too.
//! It answers the start-up relay probe (`relay-check.invalid`) with a definite 554, so
//! relayguard starts in front of it; a script sees that connection too.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the server does after a command line.
pub enum Answer {
    /// Write these reply lines (CRLF added to each) and read on.
    Reply(Vec<String>),
    /// Write these reply lines, then close the connection.
    ReplyAndClose(Vec<String>),
    /// Write nothing and read on.
    Silence,
}

impl Answer {
    pub fn reply(line: &str) -> Answer {
        Answer::Reply(vec![line.to_owned()])
    }
    pub fn close_with(line: &str) -> Answer {
        Answer::ReplyAndClose(vec![line.to_owned()])
    }
}

/// The lines each connection sent, in order of connection.
pub type Transcripts = Arc<Mutex<Vec<Vec<String>>>>;

pub struct ScriptedUpstream {
    pub addr: SocketAddr,
    pub transcripts: Transcripts,
    /// The connections the client closed (read returned end of file), by index.
    closed: Arc<Mutex<Vec<usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedUpstream {
    /// Serves every connection with `script(connection index, upper-cased line)`; the EHLO
    /// answer offers `extensions` (e.g. `["PIPELINING", "AUTH PLAIN", "XCLIENT ADDR LOGIN"]`).
    pub async fn start(
        extensions: &[&str],
        script: impl Fn(usize, &str) -> Answer + Send + Sync + 'static,
    ) -> ScriptedUpstream {
        Self::start_with(extensions, false, script).await
    }

    /// [`ScriptedUpstream::start`], the script answering QUIT as well.
    pub async fn start_scripting_quit(
        extensions: &[&str],
        script: impl Fn(usize, &str) -> Answer + Send + Sync + 'static,
    ) -> ScriptedUpstream {
        Self::start_with(extensions, true, script).await
    }

    async fn start_with(
        extensions: &[&str],
        scripts_quit: bool,
        script: impl Fn(usize, &str) -> Answer + Send + Sync + 'static,
    ) -> ScriptedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let transcripts: Transcripts = Arc::default();
        let mut ehlo = String::from("250-fake.upstream\r\n");
        for (i, ext) in extensions.iter().enumerate() {
            let sep = if i + 1 == extensions.len() { ' ' } else { '-' };
            ehlo.push_str(&format!("250{sep}{ext}\r\n"));
        }
        if extensions.is_empty() {
            ehlo = "250 fake.upstream\r\n".into();
        }
        let script = Arc::new(script);
        let seen = transcripts.clone();
        let closed: Arc<Mutex<Vec<usize>>> = Arc::default();
        let ended = closed.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let index = {
                    let mut all = seen.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let (script, seen, ehlo) = (script.clone(), seen.clone(), ehlo.clone());
                let ended = ended.clone();
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut r = BufReader::new(r);
                    if w.write_all(b"220 fake.upstream ESMTP\r\n").await.is_err() {
                        return;
                    }
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            ended.lock().unwrap().push(index);
                            return;
                        }
                        let text = line.trim_end().to_owned();
                        seen.lock().unwrap()[index].push(text.clone());
                        let upper = text.to_ascii_uppercase();
                        if upper.starts_with("PROXY ") {
                            // A PROXY v1 header has no reply.
                            continue;
                        }
                        let answer = if upper.starts_with("EHLO") {
                            Answer::Reply(vec![ehlo.trim_end().replace("\r\n", "\n")])
                        } else if upper.contains("RELAY-CHECK.INVALID") {
                            Answer::reply("554 5.7.1 Relay access denied")
                        } else if upper.starts_with("QUIT") && !scripts_quit {
                            Answer::close_with("221 2.0.0 Bye")
                        } else {
                            script(index, &upper)
                        };
                        let (lines, close) = match answer {
                            Answer::Reply(l) => (l, false),
                            Answer::ReplyAndClose(l) => (l, true),
                            Answer::Silence => continue,
                        };
                        let mut out = String::new();
                        for l in lines {
                            for part in l.split('\n') {
                                out.push_str(part);
                                out.push_str("\r\n");
                            }
                        }
                        if w.write_all(out.as_bytes()).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        ScriptedUpstream {
            addr,
            transcripts,
            closed,
            task,
        }
    }

    /// Waits up to `limit` for the client to close connection `index`; true if it did.
    pub async fn wait_closed(&self, index: usize, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.closed.lock().unwrap().contains(&index) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.closed.lock().unwrap().contains(&index)
    }

    /// The lines connection `index` sent so far.
    pub fn lines(&self, index: usize) -> Vec<String> {
        self.transcripts
            .lock()
            .unwrap()
            .get(index)
            .cloned()
            .unwrap_or_default()
    }

    pub fn connections(&self) -> usize {
        self.transcripts.lock().unwrap().len()
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
