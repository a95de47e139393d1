//! The admin socket: a Unix socket on which `relayguard bans` lists, adds and lifts bans in
//! the running process's store, and `relayguard reload` asks for a reload.
//!
//! One request line per connection, one JSON reply: `bans list`, `bans add CLIENT DURATION
//! [REASON]`, `bans remove CLIENT`, `reload`. The socket is created mode 0600: whoever can
//! reach it can lift bans.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::config::settings::parse_duration;
use crate::limits::{Ban, ClientKey, Millis};
use crate::state::{self, StateStore};

/// A ban as the admin socket and `relayguard bans list` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanEntry {
    pub client: String,
    pub since_ms: u64,
    pub until_ms: u64,
    pub left_s: u64,
    pub offence: u32,
    pub reason: String,
}

impl BanEntry {
    pub fn new(key: &ClientKey, ban: &Ban, now: Millis) -> BanEntry {
        BanEntry {
            client: key.to_string(),
            since_ms: ban.since.0,
            until_ms: ban.until.0,
            left_s: ban.until.left_from(now).as_secs(),
            offence: ban.offence,
            reason: ban.reason.clone(),
        }
    }
}

/// The answer to one request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminReply {
    Bans(Vec<BanEntry>),
    Added(BanEntry),
    Removed(bool),
    /// The config file the running process reloaded.
    Reloaded(String),
    /// Why the reload was refused, one line each; the running config stays.
    ReloadFailed(Vec<String>),
    Error(String),
}

/// A `reload` request handed to the main loop, which reloads and answers on the channel.
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<(), Vec<String>>>;

/// Runs one request against `store`.
pub async fn answer(store: &StateStore, request: &str) -> AdminReply {
    let now = state::now();
    let prefix = store.settings().ipv6_prefix;
    let mut words = request.split_whitespace();
    let (Some("bans"), Some(verb)) = (words.next(), words.next()) else {
        return AdminReply::Error(format!("unknown request `{}`", request.trim()));
    };
    let client = words.next().map(|c| (c, ClientKey::parse(c, prefix)));
    let result = match (verb, client) {
        ("list", None) => store.bans(now).await.map(|bans| {
            AdminReply::Bans(bans.iter().map(|(k, b)| BanEntry::new(k, b, now)).collect())
        }),
        ("add", Some((_, Some(key)))) => {
            let Some(length) = words
                .next()
                .and_then(parse_duration)
                .filter(|d| !d.is_zero())
            else {
                return AdminReply::Error("add needs a duration like 1h".into());
            };
            let reason: Vec<&str> = words.collect();
            let reason = if reason.is_empty() {
                "added by admin".to_owned()
            } else {
                reason.join(" ")
            };
            let ban = Ban {
                since: now,
                until: now.after(length),
                offence: 1,
                reason,
            };
            let entry = BanEntry::new(&key, &ban, now);
            store.add_ban(key, ban).await.map(|()| {
                tracing::warn!(client = %key, ban_s = length.as_secs(), "ban added by admin");
                AdminReply::Added(entry)
            })
        }
        ("remove", Some((_, Some(key)))) => store.remove_ban(key, now).await.map(|was| {
            tracing::warn!(client = %key, was_banned = was, "ban lifted by admin");
            AdminReply::Removed(was)
        }),
        (_, Some((text, None))) => {
            return AdminReply::Error(format!("`{text}` is not an address or IPv6 prefix"))
        }
        _ => return AdminReply::Error(format!("unknown request `{}`", request.trim())),
    };
    result.unwrap_or_else(|e| AdminReply::Error(e.to_string()))
}

/// Binds `path` (replacing a stale socket file) and serves requests until the task is
/// dropped; `store` is read per request, so a reload that swaps the store is followed.
/// `reload` reaches the main loop; `config` is the file it reloads, named in the answer.
pub fn serve(
    path: &Path,
    store: Arc<arc_swap::ArcSwap<StateStore>>,
    reload: tokio::sync::mpsc::Sender<ReloadRequest>,
    config: &Path,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let shown: PathBuf = path.to_owned();
    tracing::info!("admin socket ready on {}", shown.display());
    let config = Arc::new(config.display().to_string());
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let store = store.load_full();
            let (reload, config) = (reload.clone(), config.clone());
            tokio::spawn(async move {
                let requester = Requester {
                    store: &store,
                    reload,
                    config: &config,
                };
                // A reload opens remote tables, which may take their connect timeouts.
                let _ =
                    tokio::time::timeout(Duration::from_secs(60), requester.handle(stream)).await;
            });
        }
    }))
}

/// One connection's view of the running process.
struct Requester<'a> {
    store: &'a StateStore,
    reload: tokio::sync::mpsc::Sender<ReloadRequest>,
    config: &'a str,
}

impl Requester<'_> {
    async fn handle(self, stream: UnixStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        BufReader::new(read.take(4096)).read_line(&mut line).await?;
        let reply = if line.trim() == "reload" {
            self.reload().await
        } else {
            answer(self.store, &line).await
        };
        let mut text = serde_json::to_string(&reply).unwrap_or_else(|_| "{\"error\":\"\"}".into());
        text.push('\n');
        write.write_all(text.as_bytes()).await?;
        write.shutdown().await
    }

    async fn reload(&self) -> AdminReply {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.reload.send(tx).await.is_err() {
            return AdminReply::Error("relayguard is stopping".into());
        }
        match rx.await {
            Ok(Ok(())) => AdminReply::Reloaded(self.config.to_owned()),
            Ok(Err(errors)) => AdminReply::ReloadFailed(errors),
            Err(_) => AdminReply::Error("relayguard is stopping".into()),
        }
    }
}

/// Sends one request to the admin socket at `path` and returns the reply.
pub async fn request(path: &Path, request: &str) -> std::io::Result<AdminReply> {
    let mut stream = UnixStream::connect(path).await?;
    stream.write_all(format!("{request}\n").as_bytes()).await?;
    let mut text = String::new();
    BufReader::new(stream).read_line(&mut text).await?;
    serde_json::from_str(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
