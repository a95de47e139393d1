//! Runs real third-party clients, swaks(1) and Python's smtplib, and returns their transcript
//! and exit status: what the proxy must interoperate with, beyond our own client.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use super::netns::NetNs;

/// What an external client printed and how it ended.
#[derive(Debug)]
pub struct Transcript {
    /// Exit status code (None if killed by a signal).
    pub code: Option<i32>,
    /// stdout then stderr.
    pub output: String,
}

impl Transcript {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Server reply lines as swaks prints them (`<- 250 ...`, `<~ ` under TLS), without the arrow.
    pub fn server_lines(&self) -> Vec<&str> {
        self.output
            .lines()
            .filter_map(|l| l.strip_prefix("<- ").or_else(|| l.strip_prefix("<~ ")))
            .map(|l| l.trim_start())
            .collect()
    }
}

/// swaks(1) with a fixed envelope (`s@sender.example` -> `u@local.test`, HELO `client.example`).
#[derive(Clone, Debug)]
pub struct Swaks {
    args: Vec<String>,
}

impl Swaks {
    pub fn new(server: SocketAddr) -> Swaks {
        let args = [
            "--server",
            &server.to_string(),
            "--timeout",
            "15",
            "--from",
            "s@sender.example",
            "--to",
            "u@local.test",
            "--helo",
            "client.example",
            "--hide-informational",
        ];
        Swaks {
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `--tls`: STARTTLS, required.
    pub fn tls(self) -> Swaks {
        self.arg("--tls")
    }

    /// `--tlsc`: TLS on connect (implicit TLS).
    pub fn tlsc(self) -> Swaks {
        self.arg("--tlsc")
    }

    /// `--auth PLAIN --auth-user U --auth-password P`.
    pub fn auth(self, user: &str, pass: &str) -> Swaks {
        self.arg("--auth")
            .arg("PLAIN")
            .arg("--auth-user")
            .arg(user)
            .arg("--auth-password")
            .arg(pass)
    }

    /// `--pipeline`: send MAIL, RCPT and DATA in one write (RFC 2920).
    pub fn pipeline(self) -> Swaks {
        self.arg("--pipeline")
    }

    pub fn arg(mut self, a: &str) -> Swaks {
        self.args.push(a.to_owned());
        self
    }

    /// Runs swaks to completion (its own `--timeout` bounds each step).
    pub fn run(&self) -> Transcript {
        run_captured(Command::new("swaks").args(&self.args))
    }

    /// [`Self::run`] from inside the network namespace `ns` (a client on a host of its own).
    pub fn run_in(&self, ns: &NetNs) -> Transcript {
        run_captured(ns.command("swaks").args(&self.args))
    }
}

/// How the smtplib script connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtplibMode {
    Plain,
    Starttls,
    /// `smtplib.SMTP_SSL` (implicit TLS).
    Ssl,
}

/// Python's smtplib sending one message; its debug transcript goes into the output.
#[derive(Clone, Debug)]
pub struct Smtplib {
    server: SocketAddr,
    mode: SmtplibMode,
    auth: Option<(String, String)>,
    from: String,
    to: Vec<String>,
    message: String,
}

const SMTPLIB_SCRIPT: &str = r#"
import smtplib, ssl, sys
host, port, mode, user, password, sender, rcpts, message = sys.argv[1:9]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
try:
    if mode == "ssl":
        s = smtplib.SMTP_SSL(host, int(port), local_hostname="client.example", timeout=15, context=ctx)
    else:
        s = smtplib.SMTP(host, int(port), local_hostname="client.example", timeout=15)
    s.set_debuglevel(1)
    s.ehlo()
    if mode == "starttls":
        print("STARTTLS", s.starttls(context=ctx))
        s.ehlo()
    if user:
        print("AUTH", s.login(user, password))
    refused = s.sendmail(sender, rcpts.split(","), message)
    print("REFUSED", refused)
    print("QUIT", s.quit())
except smtplib.SMTPResponseException as e:
    print("ERROR", type(e).__name__, e.smtp_code, e.smtp_error.decode("latin1"))
    sys.exit(1)
except smtplib.SMTPRecipientsRefused as e:
    print("ERROR SMTPRecipientsRefused", {k: (c, m.decode("latin1")) for k, (c, m) in e.recipients.items()})
    sys.exit(1)
except Exception as e:
    print("ERROR", type(e).__name__, e)
    sys.exit(2)
"#;

impl Smtplib {
    pub fn new(server: SocketAddr) -> Smtplib {
        Smtplib {
            server,
            mode: SmtplibMode::Plain,
            auth: None,
            from: "s@sender.example".into(),
            to: vec!["u@local.test".into()],
            message: "Subject: smtplib test\r\n\r\nhello\r\n".into(),
        }
    }

    pub fn mode(mut self, mode: SmtplibMode) -> Smtplib {
        self.mode = mode;
        self
    }

    pub fn auth(mut self, user: &str, pass: &str) -> Smtplib {
        self.auth = Some((user.into(), pass.into()));
        self
    }

    pub fn envelope(mut self, from: &str, to: &[&str]) -> Smtplib {
        self.from = from.into();
        self.to = to.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn message(mut self, message: &str) -> Smtplib {
        self.message = message.into();
        self
    }

    /// Runs the script; `ERROR <exception> <code> <text>` closes the output on failure.
    pub fn run(&self) -> Transcript {
        let mode = match self.mode {
            SmtplibMode::Plain => "plain",
            SmtplibMode::Starttls => "starttls",
            SmtplibMode::Ssl => "ssl",
        };
        let (user, pass) = self.auth.clone().unwrap_or_default();
        run_captured(
            Command::new("python3")
                .arg("-c")
                .arg(SMTPLIB_SCRIPT)
                .arg(self.server.ip().to_string())
                .arg(self.server.port().to_string())
                .arg(mode)
                .arg(user)
                .arg(pass)
                .arg(&self.from)
                .arg(self.to.join(","))
                .arg(&self.message),
        )
    }
}

fn run_captured(cmd: &mut Command) -> Transcript {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    Transcript {
        code: out.status.code(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
