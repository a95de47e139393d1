//! A scripted upstream SMTP server: each command line gets the reply a test's script returns,
//! and every line it read is kept, per connection, for the test to check.
//!
//! A PROXY v1 header is read and kept without a reply (v2's binary header is not understood).
//! It answers the start-up relay probe (`relay-check.invalid`) with a definite 554, so
//! relayguard starts in front of it; a script sees that connection too.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the server does after a command line.
pub enum Answer {
    /// Write these reply lines (CRLF added to each) and read on.
    Reply(Vec<String>),
    /// Write these reply lines, then close the connection.
    ReplyAndClose(Vec<String>),
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
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedUpstream {
    /// Serves every connection with `script(connection index, upper-cased line)`; the EHLO
    /// answer offers `extensions` (e.g. `["PIPELINING", "AUTH PLAIN", "XCLIENT ADDR LOGIN"]`).
    pub async fn start(
        extensions: &[&str],
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
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let index = {
                    let mut all = seen.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let (script, seen, ehlo) = (script.clone(), seen.clone(), ehlo.clone());
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
                        } else if upper.starts_with("QUIT") {
                            Answer::close_with("221 2.0.0 Bye")
                        } else {
                            script(index, &upper)
                        };
                        let (lines, close) = match answer {
                            Answer::Reply(l) => (l, false),
                            Answer::ReplyAndClose(l) => (l, true),
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
            task,
        }
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
